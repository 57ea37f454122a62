"""Log lines and request ids: the caller's X-Request-ID echoed when safe (a new one otherwise) on
every answer and in every error body, a 500 included; JSON lines carry it; access lines name the
route, status, duration, caller, decision and model; a keyed run's log holds no key, cookie or
photo bytes."""

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


def test_an_unexpected_error_is_a_json_500_with_the_request_id_in_body_header_and_log(make_client, root_logging):
    client = make_client(model_backend="null")
    stream = io.StringIO()
    configure_logging("info", "json", stream)

    def broken() -> None:
        raise RuntimeError("a bug")

    client.app.add_api_route("/v1/broken", broken)
    answer = client.get("/v1/broken", headers={"X-Request-ID": "scan-500"})
    assert (answer.status_code, answer.headers["x-request-id"]) == (500, "scan-500")
    assert answer.json() == {"detail": "Internal server error.", "code": "internal_error", "request_id": "scan-500"}
    (line,) = [json.loads(line) for line in stream.getvalue().splitlines() if "unhandled error" in line]
    assert (line["message"], line["request_id"], line["logger"]) == (
        "unhandled error",
        "scan-500",
        "app.api.middleware",
    )
    assert "RuntimeError: a bug" in line["exc_info"]


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
        "SORTER_ACCESS_LOG": "true",
    }
    photo = png(test_set[0][0])
    with running_server(env) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        answer = client.post(
            "/classify", files={"file": ("a.png", photo)}, headers={"X-API-Key": SCANNER_SECRET, "X-Request-ID": "s-1"}
        )
        assert answer.status_code == 200
        refused = client.post(
            "/classify", content=b"", headers={"Content-Type": "image/png", "X-API-Key": "wrong-" + "k" * 20}
        )
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
    access = [record for record in records if record["logger"] == "garment_sorter.access"]
    classified = next(record for record in access if record["request_id"] == "s-1")
    assert classified["duration_ms"] > 0
    assert {k: v for k, v in classified.items() if k not in ("time", "duration_ms", "message")} == {
        "level": "INFO",
        "logger": "garment_sorter.access",
        "request_id": "s-1",
        "method": "POST",
        "route": "/classify",
        "status": 200,
        "caller": "belt",
        "decision_id": answer.json()["decision_id"],
        "model_version": answer.json()["model"]["version"],
    }
    unauthorized = next(record for record in access if record["request_id"] == refused.headers["x-request-id"])
    assert (unauthorized["status"], unauthorized["route"], "caller" in unauthorized) == (401, "/classify", False)
    assert refused.json()["request_id"] == refused.headers["x-request-id"]
    for secret in (SCANNER_SECRET, REVIEWER_SECRET, "wrong-" + "k" * 20, cookie, csrf):
        assert secret not in log
    assert photo[:16].decode("latin-1") not in log
