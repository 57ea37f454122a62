"""Log lines and request ids: the caller's X-Request-ID echoed when safe (a new one otherwise) on
every answer; JSON lines carry it; a keyed run's log holds no key, cookie or photo bytes."""

from __future__ import annotations

import io
import json
import logging
import re

import httpx
import pytest
from service_helpers import png

from app.logs import REQUEST_ID, configure_logging
from bench.server import running_server

REVIEWER_SECRET = "reviewer-secret-" + "q" * 16
SCANNER_SECRET = "scanner-secret-" + "w" * 16


@pytest.fixture
def root_logging():
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    yield
    root.handlers[:], _ = saved[0], root.setLevel(saved[1])


def test_the_request_id_is_echoed_when_safe_and_made_otherwise(make_client, test_set):
    client = make_client()
    image = {"content": png(test_set[0][0]), "headers": {"Content-Type": "image/png"}}
    ok = client.post("/classify", content=image["content"], headers={**image["headers"], "X-Request-ID": "scan-42.a:b"})
    assert ok.status_code == 200 and ok.headers["x-request-id"] == "scan-42.a:b"
    refused = client.post("/classify", content=b"", headers={**image["headers"], "X-Request-ID": "scan-43"})
    assert refused.status_code == 400 and refused.headers["x-request-id"] == "scan-43"
    unsafe = client.get("/healthz", headers={"X-Request-ID": "bad id\twith space"})
    assert re.fullmatch(r"[0-9a-f]{32}", unsafe.headers["x-request-id"])
    assert client.get("/v1/nothing").headers["x-request-id"] != client.get("/v1/nothing").headers["x-request-id"]


def test_json_lines_carry_the_request_id(root_logging):
    stream = io.StringIO()
    configure_logging("info", "json", stream)
    token = REQUEST_ID.set("scan-7")
    try:
        logging.getLogger("app.test").warning("belt %d stopped", 3)
    finally:
        REQUEST_ID.reset(token)
    logging.getLogger("app.test").info("outside a request")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert {k: first[k] for k in ("level", "logger", "message", "request_id")} == {
        "level": "WARNING",
        "logger": "app.test",
        "message": "belt 3 stopped",
        "request_id": "scan-7",
    }
    assert "time" in first and second["request_id"] is None


def test_a_keyed_json_run_logs_no_secret(model_dir, test_set):
    env = {
        "SORTER_MODEL_DIR": str(model_dir),
        "SORTER_LOG_FORMAT": "json",
        "SORTER_LOG_LEVEL": "debug",
        "SORTER_API_KEYS": f"belt:scanner:{SCANNER_SECRET},kim:reviewer:{REVIEWER_SECRET}",
    }
    photo = png(test_set[0][0])
    with running_server(env) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        answer = client.post("/classify", files={"file": ("a.png", photo)}, headers={"X-API-Key": SCANNER_SECRET})
        assert answer.status_code == 200
        client.post("/classify", content=b"", headers={"Content-Type": "image/png", "X-API-Key": "wrong-" + "k" * 20})
        page = client.get("/review")
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
        client.post("/review/sign-in", data={"key": REVIEWER_SECRET, "csrf": csrf})
        cookie = client.cookies.get("sorter_review")
        assert cookie and "kim" in client.get("/review").text
        log = server.log()
    lines = [line for line in log.splitlines() if line.strip()]
    # Every line of Python's logging is one JSON object; TensorFlow's C++ runtime writes its own few.
    native = re.compile(r"^([IWE]\d{4} |WARNING: All log messages before absl)")
    records = [json.loads(line) for line in lines if not native.match(line)]
    assert len(records) >= 5 and all(isinstance(record, dict) for record in records)
    assert {"time", "level", "logger", "message", "request_id"} <= set(records[0])
    for secret in (SCANNER_SECRET, REVIEWER_SECRET, "wrong-" + "k" * 20, cookie, csrf):
        assert secret not in log
    assert photo[:16].decode("latin-1") not in log
