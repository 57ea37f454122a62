"""End to end: Debian's real `prometheus` scrapes a real `garment-sorter serve` process, with the
repository's alert and recording rules loaded; traffic is driven; Prometheus' HTTP API must show
exactly that traffic. The dashboard's queries and the rules run against the real series, so a
metric or label renamed in the app fails here."""

from __future__ import annotations

import http.client
import json
import math
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import yaml
from deploy_helpers import (
    DEPLOY,
    RULES_FILE,
    SERVICE_METRICS,
    load_yaml,
    png,
    require_tool,
    served_model_dir,
    start_served,
)
from prometheus_client.parser import text_string_to_metric_families

from bench.server import free_port, stop_server

pytestmark = pytest.mark.slow

SINGLE = 48  # POST /classify, 200 each
BATCHES = 3  # POST /classify/batch
BATCH_FILES = 20
EMPTY = 2  # POST /classify with an empty body: 400 empty_image
IMAGES = SINGLE + BATCHES * BATCH_FILES


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    # Queued images are released at once when the batcher is idle and otherwise wait up to
    # max_wait_ms for company: 20 ms makes concurrent single requests share batches reliably.
    # A 1 s header timeout: the traffic's stalled heads are refused quickly (the slow-client panel).
    server = start_served(max_wait_ms="20", header_timeout_s="1")
    try:
        yield server
    finally:
        stop_server(server)


@pytest.fixture(scope="module")
def prometheus(server, tmp_path_factory):
    exe = require_tool("prometheus", "apt-get install prometheus (Debian; `make apt-deps` does it)")
    workdir = tmp_path_factory.mktemp("prometheus")
    (workdir / "rules").mkdir()
    (workdir / "rules" / RULES_FILE.name).write_text(RULES_FILE.read_text())
    # The shipped configuration with a 1 s cadence and the test server as the target.
    config = load_yaml(DEPLOY / "prometheus" / "prometheus.yml")
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "garment-sorter")
    job["static_configs"] = [{"targets": [f"127.0.0.1:{server.port}"]}]
    config["scrape_configs"] = [job]
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    with open(workdir / "prometheus.log", "wb") as log:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(
            [
                exe,
                f"--config.file={workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            cwd=workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    api = Prometheus(f"http://127.0.0.1:{port}", process, workdir / "prometheus.log")
    try:
        api.wait_until(lambda: api.ready(), 60, "Prometheus ready")
        api.wait_until(lambda: api.query('up{job="garment-sorter"}') == {(): 1.0}, 30, "first scrape of the service")
        yield api
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Prometheus:
    def __init__(self, url: str, process: subprocess.Popen, log: Path):
        self.url, self.process, self.log = url, process, log

    def ready(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"prometheus exited with {self.process.returncode}:\n{self.log.read_text()[-3000:]}")
        try:
            return httpx.get(self.url + "/-/ready", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def api(self, path: str, **params) -> dict | list:
        response = httpx.get(f"{self.url}/api/v1/{path}", params=params, timeout=10)
        body = response.json()
        assert response.status_code == 200 and body["status"] == "success", body
        return body["data"]

    def query_raw(self, expr: str) -> list[dict]:
        return self.api("query", query=expr)["result"]

    def query(self, expr: str, by: tuple[str, ...] = ()) -> dict[tuple, float]:
        """Instant vector as {(label values in `by` order): value}."""
        return {
            tuple(sample["metric"].get(label, "") for label in by): float(sample["value"][1])
            for sample in self.query_raw(expr)
        }

    @staticmethod
    def wait_until(check, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(0.25)
        raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


@pytest.fixture(scope="module")
def traffic(server, prometheus) -> dict:
    """Drive a known amount of traffic, then wait for the scrape that shows all of it.

    One request of each kind goes first, and its scrape is awaited: labelled series are born at
    their first use, and rate() cannot see the increase that created a series, so without this the
    whole burst would be invisible to rate() (ratios 0/0 = NaN)."""
    singles, batches, empties = [], [], []
    with httpx.Client(base_url=server.url, timeout=30) as client:

        def single(i: int) -> httpx.Response:
            return client.post("/classify", files={"file": (f"{i}.png", png(i), "image/png")})

        def batch(b: int) -> httpx.Response:
            seeds = range(1000 + b * BATCH_FILES, 1000 + (b + 1) * BATCH_FILES)
            files = [("files", (f"{seed}.png", png(seed), "image/png")) for seed in seeds]
            return client.post("/classify/batch", files=files)

        def empty() -> httpx.Response:
            return client.post("/classify", content=b"", headers={"Content-Type": "image/png"})

        def stalled() -> int:
            """Half a request head, then nothing: the service answers 408 after its header timeout."""
            with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
                sock.sendall(b"POST /classify HTTP/1.1\r\nHost: x\r\n")
                response = http.client.HTTPResponse(sock)
                response.begin()
                return response.status

        # The held-out twin in shadow: the roll-out panels have a candidate to show.
        twin = client.put("/v1/admin/shadow", json={"version": 7})
        assert twin.status_code == 200, twin.text
        singles.append(single(0))
        batches.append(batch(0))
        empties.append(empty())
        stalls = [stalled()]
        # A reviewer's verdict on the first answer: the review series are born now too.
        verdict = client.post(f"/v1/decisions/{singles[0].json()['decision_id']}/review", json={"class_id": 0})
        assert verdict.status_code == 201, verdict.text
        prometheus.wait_until(
            lambda: (
                prometheus.query('garment_sorter_requests_total{route=~"/classify.*"}', by=("route", "status"))
                == {("/classify", "200"): 1, ("/classify/batch", "200"): 1, ("/classify", "400"): 1}
                and prometheus.query("sum(garment_sorter_reviews_total)") == {(): 1}
                and prometheus.query('garment_sorter_rejections_total{reason="request_timeout"}') == {(): 1}
            ),
            30,
            "the scrape of the first requests",
        )
        with ThreadPoolExecutor(16) as pool:
            singles += pool.map(single, range(1, SINGLE))
            batches += pool.map(batch, range(1, BATCHES))
        empties += [empty() for _ in range(EMPTY - 1)]
        stalls.append(stalled())
    assert stalls == [408, 408]
    assert [r.status_code for r in singles] == [200] * SINGLE
    assert [r.status_code for r in batches] == [200] * BATCHES
    assert all(r.json()["failed"] == 0 and r.json()["count"] == BATCH_FILES for r in batches)
    assert [(r.status_code, r.json()["code"]) for r in empties] == [(400, "empty_image")] * EMPTY
    prometheus.wait_until(
        lambda: (
            prometheus.query('garment_sorter_requests_total{route="/classify", status="200"}') == {(): SINGLE}
            and prometheus.query('garment_sorter_requests_total{route="/classify", status="400"}') == {(): EMPTY}
            and prometheus.query('garment_sorter_rejections_total{reason="request_timeout"}') == {(): 2}
        ),
        30,
        "a scrape after the traffic",
    )
    return {"singles": singles, "batches": batches}


def test_service_exposes_every_metric_family_with_its_type(server):
    text = httpx.get(server.url + "/metrics", timeout=10).text
    families = {f.name: f.type for f in text_string_to_metric_families(text)}
    for name, kind in SERVICE_METRICS.items():
        # The parser drops the _total suffix from counter family names.
        exposed = name.removesuffix("_total") if kind == "counter" else name
        assert families.get(exposed) == kind, f"{name}: exposed as {families.get(exposed)}"
    # The latency SLO (250 ms) is a bucket boundary, so the p99 alert compares against an edge.
    assert 'garment_sorter_request_duration_seconds_bucket{le="0.25",route="/classify"}' in text


def test_request_counter_arrived_with_exact_counts(prometheus, traffic):
    counts = prometheus.query('garment_sorter_requests_total{route=~"/classify.*"}', by=("route", "status"))
    assert counts == {("/classify", "200"): SINGLE, ("/classify/batch", "200"): BATCHES, ("/classify", "400"): EMPTY}


def test_latency_histogram_arrived_with_exact_counts(prometheus, traffic):
    count = prometheus.query('garment_sorter_request_duration_seconds_count{route=~"/classify.*"}', by=("route",))
    assert count == {("/classify",): SINGLE + EMPTY, ("/classify/batch",): BATCHES}
    buckets = prometheus.query('garment_sorter_request_duration_seconds_bucket{route="/classify"}', by=("le",))
    assert buckets[("+Inf",)] == SINGLE + EMPTY
    ordered = sorted(buckets.items(), key=lambda item: float(item[0][0]))
    assert [v for _, v in ordered] == sorted(v for _, v in ordered), "cumulative buckets"
    total_s = prometheus.query('garment_sorter_request_duration_seconds_sum{route="/classify"}')[()]
    assert 0 < total_s < 30 * (SINGLE + EMPTY)


def test_batch_size_series_arrived_with_exact_counts(prometheus, traffic):
    # Every image that reached a model is in exactly one batch: the sum of batch sizes is the image
    # count plus the copies the shadow candidate answered (warm-up does not go through a batcher),
    # and batching packed them into fewer model calls than images.
    prometheus.wait_until(
        lambda: (
            prometheus.query("garment_sorter_batch_size_sum")[()]
            == IMAGES + prometheus.query("sum(garment_sorter_shadow_answers_total)")[()]
        ),
        20,
        "a scrape after the shadow's last copies",
    )
    shadowed = prometheus.query("sum(garment_sorter_shadow_answers_total)")[()]
    batch_sum = prometheus.query("garment_sorter_batch_size_sum")[()]
    batch_count = prometheus.query("garment_sorter_batch_size_count")[()]
    assert 0 < shadowed <= IMAGES and batch_sum == IMAGES + shadowed
    assert math.ceil(IMAGES / 64) <= batch_count < IMAGES + shadowed
    buckets = prometheus.query("garment_sorter_batch_size_bucket", by=("le",))
    assert buckets[("+Inf",)] == batch_count
    assert buckets[("1.0",)] < batch_count, "some batches carried more than one image"
    assert prometheus.query("garment_sorter_queue_wait_seconds_count")[()] == IMAGES + shadowed
    assert prometheus.query("garment_sorter_inference_duration_seconds_count")[()] == batch_count


def test_predictions_rejections_and_model_info(prometheus, traffic):
    per_bin = prometheus.query("sum by (bin) (garment_sorter_predictions_total)", by=("bin",))
    assert sum(per_bin.values()) == IMAGES
    returned = {}
    for response in traffic["singles"]:
        returned[response.json()["bin"]] = returned.get(response.json()["bin"], 0) + 1
    for response in traffic["batches"]:
        for item in response.json()["results"]:
            returned[item["result"]["bin"]] = returned.get(item["result"]["bin"], 0) + 1
    assert {b: int(v) for (b,), v in per_bin.items()} == returned
    assert prometheus.query('garment_sorter_rejections_total{reason="empty_image"}') == {(): EMPTY}
    assert prometheus.query('garment_sorter_rejections_total{reason="request_timeout"}') == {(): 2}
    newest = max(served_model_dir().glob("[0-9]*/metadata.json"), key=lambda p: int(p.parent.name))
    metadata = json.loads(newest.read_text())
    assert prometheus.query("garment_sorter_model_info", by=("name", "version")) == {
        (metadata["name"], str(metadata["version"])): 1.0
    }
    assert prometheus.query("garment_sorter_ready") == {(): 1.0}
    assert prometheus.query("garment_sorter_draining") == {(): 0.0}


def test_recording_rules_evaluate_on_the_real_series(prometheus, traffic):
    prometheus.wait_until(
        lambda: (
            set(prometheus.query("garment_sorter:requests:rate5m", by=("route",)))
            == {("/classify",), ("/classify/batch",)}
        ),
        20,
        "the recording rules",
    )
    assert prometheus.query("garment_sorter:request_errors:ratio_rate5m") == {(): 0.0}
    p99 = prometheus.query("garment_sorter:request_duration_seconds:p99_rate5m", by=("route",))
    assert set(p99) == {("/classify",), ("/classify/batch",)}
    assert all(0 < value <= 10 for value in p99.values())
    review = prometheus.query("garment_sorter:review:ratio_rate1h")
    assert set(review) == {()} and 0 <= review[()] <= 1
    # Healthy service, fresh traffic: nothing fires. The alerts this burst may start (pending, for
    # their 30 and 10 minutes) are the manual-review share, only if over 25 % of the answers said
    # needs_review, and the latency SLO, only if the recorded p99 of /classify is over its 250 ms:
    # 16 clients at once on a CI machine that runs other tests beside this one can take it there.
    answers = [r.json() for r in traffic["singles"]]
    answers += [item["result"] for r in traffic["batches"] for item in r.json()["results"]]
    review_share = sum(a["needs_review"] for a in answers) / len(answers)
    may_start = {("GarmentSorterReviewRateHigh", "pending")} if review_share > 0.25 else set()
    # The rule is evaluated apart from this query, on a window a few seconds later: a p99 within
    # 20 % of the SLO may be on either side of it there.
    if p99[("/classify",)] > 0.8 * 0.25:
        may_start.add(("GarmentSorterLatencyP99AboveSLO", "pending"))
    alerts = {(a["labels"]["alertname"], a["state"]) for a in prometheus.api("alerts")["alerts"]}
    assert alerts <= may_start
    groups = prometheus.api("rules")["groups"]
    assert sorted(g["name"] for g in groups) == ["garment-sorter.alerts", "garment-sorter.recording"]
    assert all(rule["health"] == "ok" for g in groups for rule in g["rules"])


def test_every_dashboard_query_returns_data(prometheus, traffic):
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "garment-sorter.json").read_text())
    substitutions = {"$__rate_interval": "1m", "$__range": "5m", "$__interval": "1s"}
    prometheus.wait_until(lambda: prometheus.query("garment_sorter:requests:rate5m"), 20, "the recording rules")
    empty = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for variable, value in substitutions.items():
                expr = expr.replace(variable, value)
            if not prometheus.query_raw(expr):
                empty.append(f"{panel['title']}: {expr}")
    assert empty == []
