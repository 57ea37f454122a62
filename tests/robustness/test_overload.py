"""Overload: about 4x the measured capacity, open loop (requests do not wait for earlier answers),
for a bounded time, against the real model with real inputs (catalog photos rendered from the
test set). The queue bound holds, excess is refused at once with 503 + Retry-After, accepted
requests are answered within their deadline, nothing hangs, and every request is accounted for:
sent = 200 + 503 + 504, on the client and in the server's own counters.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from robustness_helpers import metric, percentile, ready_status, scrape, serving

from bench.load import Connection, closed_loop, http_request, open_loop
from bench.photos import load_test_set, render_catalog_photo
from bench.server import Server

MAX_QUEUE = 32
DEADLINE_S = 1.0
OVERLOAD = 4.0
MEASURE_S = 2.0
OVERLOAD_S = 3.0
CLIENT_TIMEOUT_S = 15.0  # far beyond deadline + any queueing: reaching it means something hung
MAX_CONNECTIONS = 256  # a fleet of scanners, each with its keep-alive connection
REJECT_P50_LIMIT_S = DEADLINE_S / 4


def run(coroutine):
    """The load generator on uvloop when installed (uvicorn[standard] brings it): it shares two
    cores with the server, so its own cost per request matters."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


@pytest.fixture(scope="module")
def overload_server(model_dir: Path) -> Iterator[Server]:
    env = {
        "SORTER_MODEL_DIR": str(model_dir),
        "SORTER_MAX_QUEUE": str(MAX_QUEUE),
        "SORTER_MAX_BATCH_FILES": str(MAX_QUEUE),
        "SORTER_REQUEST_TIMEOUT_S": str(DEADLINE_S),
    }
    with serving(env) as server:
        yield server


@pytest.fixture(scope="module")
def photo() -> bytes:
    images, _ = load_test_set()
    return render_catalog_photo(images[0], np.random.default_rng(6))


def test_four_times_capacity_is_refused_fast_and_fully_accounted_for(overload_server: Server, photo: bytes) -> None:
    port = overload_server.port
    raw = http_request("POST", "/classify", photo, {"Content-Type": "image/jpeg"}, port)
    answered, elapsed, statuses = run(closed_loop(port, raw, 16, MEASURE_S))
    assert set(statuses) == {200}, statuses
    capacity = answered / elapsed
    before = scrape(overload_server)
    depths: list[float] = []

    async def overload():
        stop = asyncio.Event()

        async def watch_queue() -> None:  # the bound, sampled from the server's own gauge
            while not stop.is_set():
                depths.append(metric(await asyncio.to_thread(scrape, overload_server), "garment_sorter_queue_depth"))
                await asyncio.sleep(0.05)

        watcher = asyncio.create_task(watch_queue())
        try:
            return await open_loop(
                port, raw, OVERLOAD * capacity, OVERLOAD_S, max_connections=MAX_CONNECTIONS, timeout_s=CLIENT_TIMEOUT_S
            )
        finally:
            stop.set()
            await watcher

    result = run(overload())
    after = scrape(overload_server)
    ok, full, late = result.count(200), result.count(503), result.count(504)
    reject_p99_ms = 1000 * percentile(result.latencies_s.get(503, []), 99)
    print(
        f"\noverload: capacity {capacity:.0f} req/s; offered {OVERLOAD * capacity:.0f} req/s for {OVERLOAD_S:g} s: "
        f"sent {result.sent} = 200: {ok} + 503: {full} + 504: {late}; p99 time to reject "
        f"{reject_p99_ms:.1f} ms; p50/p99 accepted {1000 * percentile(result.latencies_s.get(200, []), 50):.0f}/"
        f"{1000 * percentile(result.latencies_s.get(200, []), 99):.0f} ms "
        f"(server side max {max(result.server_ms, default=0):.0f} ms); "
        f"max queue depth seen {max(depths):.0f}; "
        f"{result.connections} connections; {result.late_sends} sends behind schedule; {result.elapsed_s:.1f} s"
    )
    # Nothing lost, nothing else: every request sent got exactly one of the three answers.
    assert result.failures == []
    assert set(result.statuses) <= {200, 503, 504}
    assert result.sent == ok + full + late
    # The overload was real (refusals happened) and the bound held (it covers images being
    # decoded too, so the queue itself may stay shorter).
    assert full > 0 and ok > 0
    assert max(depths) <= MAX_QUEUE
    # Accepted requests were answered within their deadline, counted from admission.
    assert len(result.server_ms) == ok and max(result.server_ms) <= 1000 * DEADLINE_S
    assert result.codes.get(503) == {"queue_full": full} and result.retry_after[503] == {"1"}
    # Refused at once: no decoding, no queueing (p99 is printed; on two shared cores it includes
    # waiting for the event loop behind everything else).
    assert percentile(result.latencies_s[503], 50) < REJECT_P50_LIMIT_S
    if late:
        assert result.codes[504] == {"deadline_exceeded": late}

    # The server counted the same story.
    def delta(name: str, **labels: str) -> float:
        return metric(after, name, **labels) - metric(before, name, **labels)

    for status, count in ((200, ok), (503, full), (504, late)):
        assert delta("garment_sorter_requests_total", route="/classify", status=str(status)) == count
    assert delta("garment_sorter_rejections_total", reason="queue_full") == full
    assert delta("garment_sorter_rejections_total", reason="deadline") == late
    # Every answered image was inferred; beyond those only images whose deadline passed while
    # their batch ran (answered 504 all the same) — never a refused or dropped one.
    assert ok <= delta("garment_sorter_batch_size_sum") <= ok + late
    # Afterwards: idle, ready, answering.
    assert metric(after, "garment_sorter_queue_depth") == 0 and metric(after, "garment_sorter_inflight_requests") == 0
    assert ready_status(overload_server)[0] == 200

    async def one() -> dict:
        connection = await Connection.open(port)
        try:
            return json.loads((await connection.exchange(raw)).body)
        finally:
            connection.writer.close()

    assert run(one())["label"]
