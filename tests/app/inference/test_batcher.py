"""The micro-batcher, driven by events: a batch function that reports each batch to the event
loop and blocks on a gate until the test releases it. No test sleeps to let something happen."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable

import numpy as np
import pytest

from app.errors import ClientGone
from app.inference.batcher import Batcher, BatcherStopped, DeadlineExceeded, InferenceError, Outcome, QueueFull

STEP_TIMEOUT_S = 5.0  # only ever reached when the batcher is broken


def image(tag: int) -> np.ndarray:
    return np.full((28, 28), tag, dtype=np.uint8)


class GatedModel:
    """Echoes each image's tag; optionally holds every batch until its gate is opened."""

    def __init__(self, loop: asyncio.AbstractEventLoop, hold: bool = False):
        self.loop = loop
        self.hold = hold
        self.batches: list[list[int]] = []
        self.started: asyncio.Queue[tuple[list[int], threading.Event]] = asyncio.Queue()
        self.error: Exception | None = None
        self.wrong_length = False

    def __call__(self, images: np.ndarray) -> list[int]:
        tags = [int(img[0, 0]) for img in images]
        self.batches.append(tags)
        gate = threading.Event()
        self.loop.call_soon_threadsafe(self.started.put_nowait, (tags, gate))
        if self.hold:
            assert gate.wait(STEP_TIMEOUT_S), "test never opened the gate"
        if self.error is not None:
            raise self.error
        return tags[:-1] if self.wrong_length else tags

    async def next_batch(self) -> tuple[list[int], threading.Event]:
        return await asyncio.wait_for(self.started.get(), STEP_TIMEOUT_S)


class RecordingObserver:
    def __init__(self) -> None:
        self.batches: list[int] = []
        self.drops: dict[str, int] = {}

    def on_batch(self, size, queue_waits_s, inference_s) -> None:
        assert len(queue_waits_s) == size and all(w >= 0 for w in queue_waits_s) and inference_s >= 0
        self.batches.append(size)

    def on_drop(self, reason: str, count: int = 1) -> None:
        self.drops[reason] = self.drops.get(reason, 0) + count


Scenario = Callable[[Batcher, GatedModel, RecordingObserver], Awaitable[None]]


def run(scenario: Scenario, hold: bool = False, **options) -> None:
    async def main() -> None:
        model = GatedModel(asyncio.get_running_loop(), hold=hold)
        observer = RecordingObserver()
        options.setdefault("max_wait_s", 10.0)  # long: a test only passes if waiting ends for a reason
        batcher = Batcher(model, observer=observer, **options)
        await batcher.start()
        try:
            await scenario(batcher, model, observer)
        finally:
            await batcher.stop(timeout_s=STEP_TIMEOUT_S)

    asyncio.run(main())


async def result(future: asyncio.Future) -> Outcome:
    return await asyncio.wait_for(future, STEP_TIMEOUT_S)


async def until(condition: Callable[[], bool]) -> None:
    """Yield to the event loop (no wall-clock sleep) until condition holds."""
    for _ in range(10_000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never became true")


def test_lone_request_runs_at_once_without_waiting():
    async def scenario(batcher, model, observer):
        outcome = await result(batcher.submit(image(7)))  # max_wait is 10 s: any wait would time out
        assert outcome.row == 7 and outcome.batch_size == 1
        assert model.batches == [[7]]
        assert observer.batches == [1]

    run(scenario, max_batch_size=8)


def test_full_batch_runs_without_waiting_for_announced_jobs():
    async def scenario(batcher, model, observer):
        with batcher.incoming(10):  # ten announced, four arrive: a full batch must not wait
            futures = batcher.submit_many([image(i) for i in range(4)])
            outcomes = [await result(f) for f in futures]
        assert [o.row for o in outcomes] == [0, 1, 2, 3]
        assert model.batches == [[0, 1, 2, 3]]
        assert {o.batch_size for o in outcomes} == {4}

    run(scenario, max_batch_size=4)


def test_waits_for_announced_jobs_and_batches_them_together():
    async def scenario(batcher, model, observer):
        with batcher.incoming(3):
            first = batcher.submit(image(1))
            await until(lambda: batcher._waiting == "fill")  # the loop holds the batch open
            assert model.batches == []
            rest = batcher.submit_many([image(2), image(3)])
        outcomes = [await result(f) for f in (first, *rest)]
        assert model.batches == [[1, 2, 3]]
        assert [o.batch_size for o in outcomes] == [3, 3, 3]

    run(scenario, max_batch_size=8)


def test_wait_ends_when_announced_jobs_do_not_come():
    async def scenario(batcher, model, observer):
        with batcher.incoming(2):
            future = batcher.submit(image(5))
            await until(lambda: batcher._waiting == "fill")
        # The second announced job failed before submitting (e.g. a bad image): run now.
        assert (await result(future)).row == 5
        assert model.batches == [[5]]

    run(scenario, max_batch_size=8)


def test_wait_is_bounded_by_max_wait():
    async def scenario(batcher, model, observer):
        with batcher.incoming(2):
            future = batcher.submit(image(9))
            outcome = await result(future)  # the second job never comes; 50 ms budget
        assert outcome.row == 9 and model.batches == [[9]]

    run(scenario, max_batch_size=8, max_wait_s=0.05)


def test_jobs_arriving_during_a_batch_form_the_next_batch():
    async def scenario(batcher, model, observer):
        first = batcher.submit(image(0))
        tags, gate = await model.next_batch()
        assert tags == [0]
        later = batcher.submit_many([image(i) for i in range(1, 5)])
        assert batcher.queue_depth == 4
        gate.set()
        tags, gate = await model.next_batch()
        assert tags == [1, 2, 3, 4]
        gate.set()
        assert [(await result(f)).row for f in (first, *later)] == [0, 1, 2, 3, 4]
        assert observer.batches == [1, 4]

    run(scenario, hold=True, max_batch_size=8)


@pytest.mark.parametrize(
    ("queued", "batches"),
    [
        (3, [3]),  # padded to 4: one wasted row, as many as splitting would leave behind
        (5, [4, 1]),  # padding to 8 would waste 3 rows
        (20, [16, 4]),
        (24, [24]),  # padded to 32 (8 wasted) rather than 16 + 8
        (40, [32, 8]),
        (64, [64]),
    ],
)
def test_batches_are_cut_to_a_padded_size_when_padding_wastes_more(queued, batches):
    async def scenario(batcher, model, observer):
        blocker = batcher.submit(image(0))
        _, gate = await model.next_batch()
        futures = batcher.submit_many([image(i % 256) for i in range(1, queued + 1)])
        gate.set()
        sizes = []
        while sum(sizes) < queued:
            tags, gate = await model.next_batch()
            sizes.append(len(tags))
            gate.set()
        assert sizes == batches
        assert [(await result(f)).row for f in (blocker, *futures)] == [i % 256 for i in range(queued + 1)]

    run(scenario, hold=True, max_batch_size=64)


def test_batches_never_exceed_max_batch_size_and_keep_order():
    async def scenario(batcher, model, observer):
        blocker = batcher.submit(image(0))
        _, gate = await model.next_batch()
        futures = batcher.submit_many([image(i) for i in range(1, 11)])
        gate.set()
        for expected in ([1, 2, 3, 4], [5, 6, 7, 8], [9, 10]):
            tags, gate = await model.next_batch()
            assert tags == expected
            gate.set()
        assert [(await result(f)).row for f in (blocker, *futures)] == list(range(11))

    run(scenario, hold=True, max_batch_size=4)


def test_exception_reaches_every_caller_and_the_loop_keeps_running():
    async def scenario(batcher, model, observer):
        model.error = RuntimeError("GPU fell off")
        futures = batcher.submit_many([image(i) for i in range(3)])
        for future in futures:
            with pytest.raises(InferenceError, match="RuntimeError: GPU fell off"):
                await result(future)
        model.error = None
        assert (await result(batcher.submit(image(4)))).row == 4
        assert batcher.running

    run(scenario, max_batch_size=8)


def test_wrong_number_of_results_fails_the_batch():
    async def scenario(batcher, model, observer):
        model.wrong_length = True
        futures = batcher.submit_many([image(i) for i in range(3)])
        for future in futures:
            with pytest.raises(InferenceError, match="returned 2 results for 3 inputs"):
                await result(future)

    run(scenario, max_batch_size=8)


def test_gone_and_cancelled_jobs_are_dropped_before_inference():
    async def scenario(batcher, model, observer):
        blocker = batcher.submit(image(0))
        _, gate = await model.next_batch()
        gone, cancelled, kept = batcher.submit_many([image(1), image(2), image(3)])
        batcher.abandon([gone])
        assert batcher.queue_depth == 2  # the slot is free at once, before the batcher reaches it
        cancelled.cancel()
        gate.set()
        tags, gate = await model.next_batch()
        gate.set()
        assert tags == [3]
        assert (await result(kept)).row == 3 and (await result(blocker)).row == 0
        with pytest.raises(ClientGone):
            await gone
        assert observer.drops == {"client_gone": 2}

    run(scenario, hold=True, max_batch_size=8)


def test_all_dropped_batch_is_skipped():
    async def scenario(batcher, model, observer):
        blocker = batcher.submit(image(0))
        _, gate = await model.next_batch()
        futures = batcher.submit_many([image(1), image(2)])
        batcher.abandon(futures)
        gate.set()
        await result(blocker)
        after = batcher.submit(image(3))
        tags, gate = await model.next_batch()
        gate.set()
        assert tags == [3] and (await result(after)).row == 3
        assert model.batches == [[0], [3]]

    run(scenario, hold=True, max_batch_size=8)


def test_deadline_answers_on_time_and_expired_jobs_never_run():
    async def scenario(batcher, model, observer):
        running = batcher.submit(image(0))
        _, gate = await model.next_batch()
        queued = batcher.submit(image(1))
        # Both are answered at their deadline while the first batch is still held: no caller
        # waits past its deadline, whatever the model does.
        for future in (running, queued):
            with pytest.raises(DeadlineExceeded, match="not answered before the deadline"):
                await result(future)
        assert observer.drops == {"deadline": 2}
        assert batcher.queue_depth == 0  # the expired job's slot is free before the batch ends
        gate.set()
        after = batcher.submit(image(2), timeout_s=STEP_TIMEOUT_S)
        _tags, gate = await model.next_batch()
        gate.set()
        assert (await result(after)).row == 2
        assert model.batches == [[0], [2]]  # the expired queued job was dropped before inference

    run(scenario, hold=True, max_batch_size=8, timeout_s=0.05)


def test_queue_full_refuses_at_once_and_atomically():
    async def scenario(batcher, model, observer):
        blocker = batcher.submit(image(0))
        _, gate = await model.next_batch()  # the running batch no longer occupies the queue
        queued = batcher.submit_many([image(1), image(2)])
        with pytest.raises(QueueFull):
            batcher.submit(image(3))
        assert batcher.queue_depth == 2
        gate.set()
        tags, gate = await model.next_batch()
        assert tags == [1, 2]
        more = batcher.submit(image(4))
        with pytest.raises(QueueFull):
            batcher.submit_many([image(5), image(6)])  # one slot left for two: neither is queued
        assert batcher.queue_depth == 1
        gate.set()
        tags, gate = await model.next_batch()
        gate.set()
        assert tags == [4]
        for future in (blocker, *queued, more):
            await result(future)
        assert observer.drops == {"queue_full": 3}

    run(scenario, hold=True, max_batch_size=8, max_queue=2)


def test_stop_finishes_queued_work_and_refuses_new_work():
    async def main() -> None:
        model = GatedModel(asyncio.get_running_loop(), hold=True)
        batcher = Batcher(model, max_batch_size=2, max_wait_s=0)
        await batcher.start()
        first = batcher.submit(image(1))
        _, gate = await model.next_batch()
        queued = batcher.submit(image(2))
        stopping = asyncio.ensure_future(batcher.stop(timeout_s=STEP_TIMEOUT_S))
        await until(lambda: not batcher.running)
        with pytest.raises(BatcherStopped):
            batcher.submit(image(3))
        gate.set()
        _, gate = await model.next_batch()
        gate.set()
        await stopping
        assert (await result(first)).row == 1 and (await result(queued)).row == 2

    asyncio.run(main())


def test_stop_timeout_fails_what_is_left():
    async def main() -> None:
        model = GatedModel(asyncio.get_running_loop(), hold=True)
        batcher = Batcher(model, max_batch_size=1, max_wait_s=0)
        await batcher.start()
        running = batcher.submit(image(1))
        _, gate = await model.next_batch()
        queued = batcher.submit(image(2))
        await batcher.stop(timeout_s=0.05)  # the running batch never finishes in time
        for future in (running, queued):
            with pytest.raises(BatcherStopped):
                await result(future)
        gate.set()

    asyncio.run(main())


def test_observer_failure_does_not_kill_the_loop():
    class Exploding(RecordingObserver):
        def on_batch(self, size, queue_waits_s, inference_s) -> None:
            raise ValueError("metrics backend broken")

    async def main() -> None:
        model = GatedModel(asyncio.get_running_loop())
        batcher = Batcher(model, max_batch_size=4, max_wait_s=0, observer=Exploding())
        await batcher.start()
        assert (await result(batcher.submit(image(1)))).row == 1
        assert (await result(batcher.submit(image(2)))).row == 2
        assert batcher.running
        await batcher.stop()

    asyncio.run(main())


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_batch_size": 0}, "max_batch_size must be >= 1, got 0"),
        ({"max_wait_s": -1}, "max_wait_s must be >= 0, got -1"),
        ({"max_queue": 0}, "max_queue must be >= 1, got 0"),
        ({"timeout_s": 0}, "timeout_s must be > 0, got 0"),
    ],
)
def test_invalid_parameters_name_the_bad_value(options, message):
    with pytest.raises(ValueError, match=message):
        Batcher(lambda images: list(images), **options)
