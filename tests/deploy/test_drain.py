"""Graceful drain on SIGTERM, against a real `garment-sorter serve` process (the image's command):
/readyz turns 503, new work gets 503, every accepted request is finished, and the process exits 0
within SORTER_DRAIN_TIMEOUT_S.

Two runs, each a module-scoped fixture that several tests read:
- `load_run`: SIGTERM in the middle of concurrent single and batch traffic;
- `timeout_run`: SIGTERM while a client never finishes its upload, so the drain hits its timeout.
"""

from __future__ import annotations

import http.client
import json
import signal
import threading
import time
from dataclasses import dataclass, field

import httpx
import pytest
from deploy_helpers import photo, png, start_served

from bench.server import stop_server

pytestmark = pytest.mark.slow

DRAIN_TIMEOUT_S = 10.0
SHORT_DRAIN_TIMEOUT_S = 2.0
SINGLE_WORKERS = 8
BATCH_WORKERS = 3
BATCH_FILES = 128  # long enough in flight that SIGTERM lands inside one (32 took only ~0.17 s)
CLIENT_TIMEOUT_S = DRAIN_TIMEOUT_S + 10  # a request still unanswered then has hung
# A batch request in flight this long has certainly been read and admitted (its whole run takes
# several times longer); SIGTERM is sent at such a moment.
ADMITTED_AFTER_S = 0.15


@dataclass
class Outcome:
    kind: str
    sent: float
    done: float = 0.0
    status: int | None = None
    body: dict | None = None
    retry_after: str | None = None
    error: str | None = None


@dataclass
class DrainingAnswers:
    """What a load balancer and new clients got while the drain was in progress."""

    readyz: int
    healthz: int
    classify: tuple[int, str, str | None]
    batch: tuple[int, str]


@dataclass
class Run:
    exit_code: int
    exit_after_s: float
    log: str
    draining: DrainingAnswers
    held: tuple[int, dict] | str  # the held upload's (status, body), or how its connection ended
    port_closed: bool
    sigterm_at: float = 0.0
    outcomes: list[Outcome] = field(default_factory=list)
    chosen: Outcome | None = None


class HeldRequest:
    """A POST /classify whose body arrives in two parts: the server has its headers (the request is
    in flight) but it cannot finish until release() sends the rest."""

    def __init__(self, port: int, body: bytes):
        self.body = body
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=CLIENT_TIMEOUT_S)
        self.conn.putrequest("POST", "/classify")
        self.conn.putheader("Content-Type", "image/png")
        self.conn.putheader("Content-Length", str(len(body)))
        self.conn.endheaders()
        self.conn.send(body[: len(body) // 2])

    def release(self) -> None:
        self.conn.send(self.body[len(self.body) // 2 :])

    def answer(self) -> tuple[int, dict] | str:
        try:
            response = self.conn.getresponse()
            raw = response.read()
        except (http.client.HTTPException, OSError) as exc:
            return f"connection ended without an answer: {exc!r}"
        try:
            return response.status, json.loads(raw)
        except ValueError:
            return response.status, {"raw": raw.decode(errors="replace")}


class LoadWorker(threading.Thread):
    def __init__(self, kind: str, url: str, stop: threading.Event, out: list[Outcome]):
        super().__init__(daemon=True)
        self.kind, self.url, self.stop, self.out = kind, url, stop, out
        self.current: Outcome | None = None

    def run(self) -> None:
        if self.kind == "batch":
            files = [("files", (f"{i}.jpg", photo(5000 + i), "image/jpeg")) for i in range(BATCH_FILES)]
            request = {"url": "/classify/batch", "files": files}
        else:
            request = {"url": "/classify", "files": {"file": ("item.png", png(7), "image/png")}}
        with httpx.Client(base_url=self.url, timeout=CLIENT_TIMEOUT_S) as client:
            while not self.stop.is_set():
                outcome = self.current = Outcome(self.kind, sent=time.monotonic())
                try:
                    response = client.post(**request)
                    outcome.status, outcome.body = response.status_code, response.json()
                    outcome.retry_after = response.headers.get("retry-after")
                except httpx.HTTPError as exc:
                    outcome.error = repr(exc)
                outcome.done = time.monotonic()
                self.current = None
                self.out.append(outcome)
                if outcome.error:
                    return


def ask_while_draining(url: str) -> DrainingAnswers:
    with httpx.Client(base_url=url, timeout=5) as client:
        readyz = client.get("/readyz").status_code
        healthz = client.get("/healthz").status_code
        one = client.post("/classify", files={"file": ("new.png", png(3), "image/png")})
        many = client.post("/classify/batch", files=[("files", ("a.png", png(4), "image/png"))])
    return DrainingAnswers(
        readyz=readyz,
        healthz=healthz,
        classify=(one.status_code, one.json().get("code"), one.headers.get("retry-after")),
        batch=(many.status_code, many.json().get("code")),
    )


def port_closed(port: int) -> bool:
    try:
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
    except httpx.ConnectError:
        return True
    return False


@pytest.fixture(scope="module")
def load_run(tmp_path_factory) -> Run:
    server = start_served(drain_timeout_s=str(DRAIN_TIMEOUT_S))
    stop = threading.Event()
    outcomes: list[Outcome] = []
    workers = [
        LoadWorker(kind, server.url, stop, outcomes) for kind in ["single"] * SINGLE_WORKERS + ["batch"] * BATCH_WORKERS
    ]
    held = None
    try:
        for worker in workers:
            worker.start()
        deadline = time.monotonic() + 120
        while sum(o.kind == "batch" for o in outcomes) < 2 * BATCH_WORKERS or len(outcomes) < 60:
            assert time.monotonic() < deadline, f"the load never got going: {outcomes[-3:]}"
            time.sleep(0.05)
        assert not [o for o in outcomes if o.status != 200], "errors before the SIGTERM"
        # The held upload keeps the drain open while we look at the draining service.
        held = HeldRequest(server.port, png(11))
        time.sleep(0.5)
        chosen = None
        while chosen is None:
            assert time.monotonic() < deadline, "no batch request was ever in flight long enough"
            for worker in workers[SINGLE_WORKERS:]:
                current = worker.current
                if current is not None and time.monotonic() - current.sent >= ADMITTED_AFTER_S:
                    chosen = current
                    break
            time.sleep(0.005)
        sigterm_at = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        stop.set()  # load workers send nothing new; their requests in flight finish
        for worker in workers:
            worker.join(timeout=CLIENT_TIMEOUT_S)
            assert not worker.is_alive(), "a load request hung"
        draining = ask_while_draining(server.url)
        held.release()
        held_answer = held.answer()
        exit_code = server.process.wait(timeout=DRAIN_TIMEOUT_S + 20)
        exit_after_s = time.monotonic() - sigterm_at
    finally:
        stop.set()
        if held is not None:
            held.conn.close()
        stop_server(server)
    return Run(
        exit_code=exit_code,
        exit_after_s=exit_after_s,
        log=server.log(),
        draining=draining,
        held=held_answer,
        port_closed=port_closed(server.port),
        sigterm_at=sigterm_at,
        outcomes=outcomes,
        chosen=chosen,
    )


@pytest.fixture(scope="module")
def timeout_run(tmp_path_factory) -> Run:
    server = start_served(drain_timeout_s=str(SHORT_DRAIN_TIMEOUT_S))
    held = None
    try:
        held = HeldRequest(server.port, png(12))  # never released
        time.sleep(0.5)
        sigterm_at = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        draining = ask_while_draining(server.url)
        exit_code = server.process.wait(timeout=DRAIN_TIMEOUT_S + 20)
        exit_after_s = time.monotonic() - sigterm_at
        held_answer = held.answer()
    finally:
        if held is not None:
            held.conn.close()
        stop_server(server)
    return Run(
        exit_code=exit_code,
        exit_after_s=exit_after_s,
        log=server.log(),
        draining=draining,
        held=held_answer,
        port_closed=port_closed(server.port),
    )


# --- SIGTERM under load -----------------------------------------------------------------------
def test_process_exits_zero_as_soon_as_the_work_is_done(load_run):
    assert load_run.exit_code == 0, load_run.log[-3000:]
    assert load_run.exit_after_s < DRAIN_TIMEOUT_S
    assert "drained in" in load_run.log and "drain timeout" not in load_run.log
    assert load_run.port_closed


def test_while_draining_readiness_fails_liveness_holds_and_new_work_is_refused(load_run):
    assert load_run.draining == DrainingAnswers(
        readyz=503,
        healthz=200,
        classify=(503, "draining", "1"),
        batch=(503, "draining"),
    )


def test_no_load_request_failed_or_hung(load_run):
    assert [o for o in load_run.outcomes if o.error] == []
    assert {o.status for o in load_run.outcomes} <= {200, 503}
    assert sum(o.status == 200 for o in load_run.outcomes) >= 60


def test_every_answer_is_a_full_result_or_a_draining_refusal(load_run):
    for o in load_run.outcomes:
        if o.status == 200:
            results = [item["result"] for item in o.body["results"]] if o.kind == "batch" else [o.body]
            assert len(results) == (BATCH_FILES if o.kind == "batch" else 1)
            assert all(r["label"] == r["top_k"][0]["label"] for r in results)
        else:
            assert (o.body["code"], o.retry_after) == ("draining", "1")
            assert o.done >= load_run.sigterm_at, "a refusal before the SIGTERM"


def test_requests_in_flight_at_sigterm_were_finished(load_run):
    chosen = load_run.chosen
    assert chosen is not None and chosen.sent < load_run.sigterm_at < chosen.done
    assert chosen.status == 200, chosen.body
    assert chosen.body["count"] == BATCH_FILES and chosen.body["failed"] == 0
    in_flight = [o for o in load_run.outcomes if o.sent < load_run.sigterm_at < o.done]
    assert chosen in in_flight


def test_request_still_uploading_at_sigterm_is_finished(load_run):
    # Admitted before the SIGTERM (headers in), body completed during the drain: served in full.
    status, body = load_run.held
    assert status == 200, body
    assert body["label"] == body["top_k"][0]["label"] and body["model"]["name"]


# --- drain timeout ----------------------------------------------------------------------------
def test_drain_timeout_still_exits_zero_and_refuses_new_work(timeout_run):
    assert timeout_run.exit_code == 0, timeout_run.log[-3000:]
    assert "drain timeout" in timeout_run.log
    assert timeout_run.draining == DrainingAnswers(
        readyz=503,
        healthz=200,
        classify=(503, "draining", "1"),
        batch=(503, "draining"),
    )
    # The stalled client is not left hanging: it gets a server error or its connection is closed,
    # long before its own timeout.
    if isinstance(timeout_run.held, str):
        assert "timed out" not in timeout_run.held, timeout_run.held
    else:
        assert timeout_run.held[0] in (500, 503), timeout_run.held
    assert timeout_run.port_closed
    assert timeout_run.exit_after_s >= SHORT_DRAIN_TIMEOUT_S - 0.1


def test_drain_timeout_bounds_the_exit(timeout_run):
    # The held request is never released: without the timeout the process would not exit at all.
    # The drain and uvicorn's 1 s close end 2.1 s after SIGTERM; the interpreter's teardown
    # (TensorFlow's threads, atexit hooks) then takes 1.1-1.6 s on an idle 2-vCPU machine and more
    # when the other test worker loads both cores (2.5 s of slack failed there), so the bound is
    # what tells "bounded" from "hung", not a speed figure.
    assert timeout_run.exit_after_s <= SHORT_DRAIN_TIMEOUT_S + 6.0
