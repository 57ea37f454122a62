"""Faults: an inference failure injected through a test model fails exactly the callers of that
batch (500 with the reason) and the next batch succeeds; /readyz stays truthful; clients that
disconnect while queued or mid-upload give their queue slots back.

The test model (robustness_helpers.build_fault_model) answers class = pixel sum mod 10, raises
on a batch holding an image whose first row is all POISON, and holds its batch on a SLOW image,
so batches can be composed on purpose: callers queue behind a held batch and then form one batch.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from robustness_helpers import (
    FAILURE_MESSAGE,
    POISON,
    SLOW,
    clean_image,
    fault_class,
    marked_image,
    metric,
    png_l,
    ready_status,
    scrape,
    serving,
)

from bench.load import Connection, RawResponse, http_request, multipart_body
from bench.server import Server

MAX_QUEUE = 16
HOLD_MS = 2500  # how long a SLOW image holds its batch: ample time to queue callers behind it
SETTLE_S = 0.3  # after sending the SLOW request, before relying on it being the running batch
STEP_TIMEOUT_S = 10.0  # only ever reached when something is broken


@pytest.fixture(scope="module")
def fault_server(fault_model_dir: Path) -> Iterator[Server]:
    env = {
        "SORTER_MODEL_DIR": str(fault_model_dir),
        "SORTER_MAX_QUEUE": str(MAX_QUEUE),
        "SORTER_MAX_BATCH_FILES": str(MAX_QUEUE),
        # Long enough that a leaked "incoming" count (the batcher then waits for callers that
        # never come) shows as queue time on a lone request.
        "SORTER_MAX_WAIT_MS": "200",
        "SORTER_REQUEST_TIMEOUT_S": "20",
    }
    with serving(env) as server:
        yield server


def classify_raw(port: int, pixels: np.ndarray) -> bytes:
    return http_request("POST", "/classify", png_l(pixels), {"Content-Type": "image/png"}, port)


async def send(port: int, raw: bytes) -> RawResponse:
    connection = await Connection.open(port)
    try:
        return await asyncio.wait_for(connection.exchange(raw), STEP_TIMEOUT_S + HOLD_MS / 1000)
    finally:
        connection.writer.close()


async def wait_for_metric(server: Server, predicate, what: str) -> dict:
    deadline = time.monotonic() + STEP_TIMEOUT_S
    while time.monotonic() < deadline:
        samples = await asyncio.to_thread(scrape, server)
        if predicate(samples):
            return samples
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def queue_depth(samples: dict) -> float:
    return metric(samples, "garment_sorter_queue_depth")


async def hold_worker(server: Server, seed: int) -> tuple[asyncio.Task, np.ndarray]:
    """Start a SLOW request on an idle service and return once it is the running batch."""
    samples = await asyncio.to_thread(scrape, server)
    assert queue_depth(samples) == 0 and metric(samples, "garment_sorter_inflight_requests") == 0
    slow = marked_image(SLOW, HOLD_MS, seed=seed)
    task = asyncio.create_task(send(server.port, classify_raw(server.port, slow)))
    await wait_for_metric(
        server, lambda s: metric(s, "garment_sorter_inflight_requests") == 1 and queue_depth(s) == 0, "the hold"
    )
    await asyncio.sleep(SETTLE_S)
    return task, slow


def assert_answer(response: RawResponse, pixels: np.ndarray) -> dict:
    assert response.status == 200, response.body
    body = response.json()
    assert body["class_id"] == fault_class(pixels) and body["model"] == {"name": "fault-model", "version": 1}
    return body


def assert_inference_failed(status: int, body: dict, fields: frozenset[str] = frozenset({"request_id"})) -> None:
    """``fields``: beyond detail and code; a batch item's error has no request id of its own."""
    assert status == 500
    assert set(body) == {"detail", "code", *fields} and body["code"] == "inference_failed"
    assert body["detail"].startswith("Inference failed: InvalidArgumentError") and FAILURE_MESSAGE in body["detail"]


def test_a_failing_batch_fails_exactly_its_callers_and_the_next_batch_succeeds(fault_server: Server) -> None:
    port = fault_server.port
    before = scrape(fault_server)

    async def scenario() -> None:
        held, slow = await hold_worker(fault_server, seed=1)
        # Six callers queue behind the held batch: one poisoned image, five clean ones.
        images = [marked_image(POISON, seed=2)] + [clean_image(seed) for seed in range(10, 15)]
        callers = [asyncio.create_task(send(port, classify_raw(port, image))) for image in images]
        await wait_for_metric(fault_server, lambda s: queue_depth(s) == len(images), "six queued callers")
        assert ready_status(fault_server)[0] == 200  # the loop answers while inference is held
        assert_answer(await held, slow)  # the held batch itself was not touched by the failure
        for response in await asyncio.gather(*callers):
            assert_inference_failed(response.status, response.json())
        # /readyz is truthful: the model and the batcher still work, as the next batch shows.
        status, body = ready_status(fault_server)
        assert (status, body["status"]) == (200, "ready")
        clean = [clean_image(seed) for seed in range(20, 26)]
        for image, response in zip(
            clean, await asyncio.gather(*(send(port, classify_raw(port, i)) for i in clean)), strict=False
        ):
            assert_answer(response, image)

    asyncio.run(scenario())
    after = scrape(fault_server)
    delta = {
        status: metric(after, "garment_sorter_requests_total", route="/classify", status=status)
        - metric(before, "garment_sorter_requests_total", route="/classify", status=status)
        for status in ("200", "500")
    }
    assert delta == {"200": 7, "500": 6}
    # Successful batches only: the held one and the clean ones (all six images inferred).
    inferred = metric(after, "garment_sorter_batch_size_sum") - metric(before, "garment_sorter_batch_size_sum")
    assert inferred == 7


def test_a_poisoned_item_fails_its_whole_batch_request_item_by_item(fault_server: Server) -> None:
    import httpx

    images = [clean_image(seed) for seed in range(30, 38)]
    images[3] = marked_image(POISON, seed=3)
    body, content_type = multipart_body([("files", f"{i}.png", png_l(image)) for i, image in enumerate(images)])
    with httpx.Client(base_url=fault_server.url, timeout=STEP_TIMEOUT_S) as client:
        response = client.post("/classify/batch", content=body, headers={"Content-Type": content_type})
        assert response.status_code == 200
        answer = response.json()
        assert (answer["count"], answer["failed"]) == (8, 8)  # one model call: every item shares its fate
        for index, entry in enumerate(answer["results"]):
            assert entry["index"] == index and entry["result"] is None
            error = entry["error"]
            assert_inference_failed(error.pop("status"), error, fields=frozenset())
        clean = images[:3] + images[4:]
        body, content_type = multipart_body([("files", f"{i}.png", png_l(image)) for i, image in enumerate(clean)])
        answer = client.post("/classify/batch", content=body, headers={"Content-Type": content_type}).json()
        assert answer["failed"] == 0
        assert [entry["result"]["class_id"] for entry in answer["results"]] == [fault_class(i) for i in clean]
        assert client.get("/readyz").status_code == 200


def test_clients_that_disconnect_give_back_their_queue_slots(fault_server: Server) -> None:
    port = fault_server.port
    before = scrape(fault_server)
    reject_s: list[float] = []

    async def scenario() -> None:
        held, slow = await hold_worker(fault_server, seed=4)
        # Fill the queue with callers that then vanish (RST) while queued.
        leaving = [await Connection.open(port) for _ in range(MAX_QUEUE)]
        for i, connection in enumerate(leaving):
            connection.writer.write(classify_raw(port, clean_image(100 + i)))
        await wait_for_metric(fault_server, lambda s: queue_depth(s) == MAX_QUEUE, "a full queue")
        # The bound holds: one more is refused at once, with Retry-After.
        extra = await send(port, classify_raw(port, clean_image(99)))
        assert (extra.status, extra.headers.get("retry-after"), extra.json()["code"]) == (503, "1", "queue_full")
        reject_s.append(extra.latency_s)
        for connection in leaving:
            connection.abort()

        def inflight_is(n: int):
            return lambda s: metric(s, "garment_sorter_inflight_requests") == n

        await wait_for_metric(fault_server, inflight_is(1), "the queued callers to be answered 499")
        # Two more leave mid-upload: the head and part of the body, then a reset.
        partial_png = png_l(clean_image(8))[:50]
        partial_part = b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\n' + partial_png
        for content_type, start in (("image/png", partial_png), ("multipart/form-data; boundary=b", partial_part)):
            connection = await Connection.open(port)
            head = {"Content-Type": content_type, "Content-Length": "5000"}
            connection.writer.write(http_request("POST", "/classify", start, head, port))
            await wait_for_metric(fault_server, inflight_is(2), "the upload to start")
            connection.abort()
            await wait_for_metric(fault_server, inflight_is(1), "the upload to be dropped")
        assert_answer(await held, slow)
        settled = await wait_for_metric(
            fault_server,
            lambda s: queue_depth(s) == 0 and metric(s, "garment_sorter_inflight_requests") == 0,
            "the abandoned callers to be dropped",
        )
        gone = metric(settled, "garment_sorter_rejections_total", reason="client_gone")
        assert gone - metric(before, "garment_sorter_rejections_total", reason="client_gone") == MAX_QUEUE + 2
        # Every slot is free again: a second hold, and a full queue of new callers all answered.
        held, slow = await hold_worker(fault_server, seed=5)
        images = [clean_image(200 + i) for i in range(MAX_QUEUE)]
        callers = [asyncio.create_task(send(port, classify_raw(port, image))) for image in images]
        await wait_for_metric(fault_server, lambda s: queue_depth(s) == MAX_QUEUE, "a full queue again")
        assert_answer(await held, slow)
        for image, response in zip(images, await asyncio.gather(*callers), strict=True):
            assert_answer(response, image)
        # A lone request is not held back by callers the batcher still thinks are coming.
        lone = assert_answer(await send(port, classify_raw(port, clean_image(7))), clean_image(7))
        assert lone["timings_ms"]["queue"] < 100, lone["timings_ms"]

    asyncio.run(scenario())
    after = scrape(fault_server)
    inferred = metric(after, "garment_sorter_batch_size_sum") - metric(before, "garment_sorter_batch_size_sum")
    assert inferred == 2 + MAX_QUEUE + 1  # the two holds, the new callers, the lone one: no abandoned image
    print(f"\nqueue full -> 503 in {reject_s[0] * 1000:.1f} ms; {MAX_QUEUE + 2} disconnected callers released")


def test_readyz_stays_503_with_the_reason_when_warm_up_fails(failing_model_dir: Path) -> None:
    with serving({"SORTER_MODEL_DIR": str(failing_model_dir)}, wait_for="/healthz") as server:
        deadline = time.monotonic() + 60
        while (status_body := ready_status(server))[1].get("code") == "not_ready" and time.monotonic() < deadline:
            time.sleep(0.1)
        status, body = status_body
        assert status == 503 and body["code"] == "warmup_failed" and FAILURE_MESSAGE in body["detail"]
        import httpx

        response = httpx.post(
            server.url + "/classify", content=png_l(clean_image(1)), headers={"Content-Type": "image/png"}, timeout=10
        )
        assert (response.status_code, response.json()["code"]) == (503, "not_ready")
        assert httpx.get(server.url + "/healthz", timeout=10).status_code == 200  # alive, just not ready
        assert metric(scrape(server), "garment_sorter_ready") == 0
