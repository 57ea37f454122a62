"""Dynamic micro-batching on asyncio: concurrent requests share one model call.

One background task forms batches and runs them one at a time on a dedicated worker thread, so
TensorFlow never blocks the event loop. The loop sleeps until the first job arrives; it then
waits (at most ``max_wait_s`` after that job was queued) only while the batch is not full and
more jobs are known to be on their way (requests announced through :meth:`Batcher.incoming`
that are still being read or decoded). With nothing else arriving it runs at once, so a lone
request pays no batching delay. Jobs that arrive while a batch runs form the next batch.

Jobs whose future is already done when their batch forms (deadline passed, client gone) are
dropped before inference. An exception in the batch function fails every job of that batch and
the loop carries on; a loop error is logged and the loop carries on too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from app.errors import ClientGone

log = logging.getLogger(__name__)


class QueueFull(Exception):
    """The queue cannot take the job(s); answered 503 at once."""


class DeadlineExceeded(Exception):
    """The job was not answered before its deadline."""


class InferenceError(Exception):
    """The batch function raised or returned the wrong number of results."""


class BatcherStopped(Exception):
    """The batcher stopped (or was not running) before the job was processed."""


@dataclass(slots=True)
class Outcome:
    """What a caller gets back: its row of the batch result plus where the time went."""

    row: Any
    queue_s: float
    inference_s: float
    batch_size: int
    # time.perf_counter() when its batch was handed to the model: with queue_s and inference_s,
    # where the caller's queue wait and model call lie in time (its trace's spans).
    batch_started: float


@dataclass(slots=True, eq=False)
class _Job:
    image: np.ndarray
    future: asyncio.Future[Outcome]
    enqueued: float  # time.perf_counter()
    timer: asyncio.TimerHandle | None = None


class BatchObserver(Protocol):
    def on_batch(self, size: int, queue_waits_s: Sequence[float], inference_s: float) -> None: ...

    def on_drop(self, reason: str, count: int = 1) -> None: ...


class _NullObserver:
    def on_batch(self, size: int, queue_waits_s: Sequence[float], inference_s: float) -> None:
        pass

    def on_drop(self, reason: str, count: int = 1) -> None:
        pass


class _Incoming:
    """Context manager announcing n jobs that are on their way (see Batcher.incoming)."""

    __slots__ = ("_batcher", "_n")

    def __init__(self, batcher: Batcher, n: int):
        self._batcher = batcher
        self._n = n

    def __enter__(self) -> None:
        self._batcher._expected += self._n

    def __exit__(self, *exc: object) -> None:
        batcher = self._batcher
        batcher._expected -= self._n
        if batcher._expected <= 0 and batcher._waiting == "fill":
            batcher._wake()


class Batcher:
    """Run ``fn(images) -> sequence of rows`` on batches of concurrently submitted images."""

    def __init__(
        self,
        fn: Callable[[np.ndarray], Sequence[Any]],
        *,
        max_batch_size: int = 64,
        max_wait_s: float = 0.002,
        max_queue: int = 1024,
        timeout_s: float = 5.0,
        observer: BatchObserver | None = None,
        name: str = "batcher",
        padded_sizes: Sequence[int] | None = None,
    ):
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        if max_wait_s < 0:
            raise ValueError(f"max_wait_s must be >= 0, got {max_wait_s}")
        if max_queue < 1:
            raise ValueError(f"max_queue must be >= 1, got {max_queue}")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        self.fn = fn
        self.max_batch_size = max_batch_size
        # The sizes the model runs at (padding up to the next one). A batch that would waste more
        # padded rows than it would leave queued is cut to the size below; the rest leads the next.
        sizes = sorted(set(padded_sizes or ())) or [1 << i for i in range(max_batch_size.bit_length())]
        if sizes[-1] < max_batch_size:
            sizes.append(max_batch_size)
        self.padded_sizes = tuple(sizes)
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self.timeout_s = timeout_s
        self.observer: BatchObserver = observer or _NullObserver()
        self.name = name
        self._queue: deque[_Job] = deque()
        self._expected = 0
        self._busy = False
        self._current: list[_Job] = []
        self._stopping = False
        self._waiting: str | None = None  # "first" | "fill" while the loop sleeps
        self._waiter: asyncio.Future[bool] | None = None
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._executor: ThreadPoolExecutor | None = None

    # --- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        if self._task is not None:
            raise RuntimeError(f"{self.name} already started")
        self._loop = asyncio.get_running_loop()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{self.name}-inference")
        self._stopping = False
        self._task = self._loop.create_task(self._run_forever(), name=self.name)
        self._task.add_done_callback(self._on_task_done)

    async def stop(self, timeout_s: float = 10.0) -> None:
        """Finish what is queued (up to timeout_s), then fail anything left with BatcherStopped."""
        task = self._task
        if task is None:
            return
        self._stopping = True
        self._wake()
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout_s)
        except (TimeoutError, asyncio.CancelledError):
            task.cancel()
            with contextlib.suppress(BaseException):  # whatever the cancelled loop ends with: it is over
                await task
        except Exception:
            pass  # the loop's own failure was already delivered to its callers
        self._fail_all(BatcherStopped("the batcher stopped"))
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done() and not self._stopping

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    @property
    def idle(self) -> bool:
        return not self._queue and not self._busy

    # --- submitting -----------------------------------------------------------------------------
    def incoming(self, n: int = 1) -> _Incoming:
        """Announce n jobs that are being read or decoded; the loop may wait for them to fill a batch."""
        return _Incoming(self, n)

    def admit(self, n: int = 1) -> _Incoming:
        """Like incoming(n), but refused with QueueFull when the queued jobs plus those already
        announced would pass max_queue: the bound then also covers work still being decoded,
        which otherwise piles up unbounded in front of the queue under overload."""
        self.check_room(n)
        return _Incoming(self, n)

    def check_room(self, n: int = 1) -> None:
        """QueueFull (counted as n dropped) unless n more jobs fit beside those queued or announced."""
        if len(self._queue) + self._expected + n > self.max_queue:
            self.observer.on_drop("queue_full", n)
            raise QueueFull(f"{len(self._queue)} queued and {self._expected} on their way, limit {self.max_queue}")

    def submit(self, image: np.ndarray, timeout_s: float | None = None) -> asyncio.Future[Outcome]:
        return self.submit_many((image,), timeout_s)[0]

    def submit_many(
        self, images: Sequence[np.ndarray], timeout_s: float | None = None
    ) -> list[asyncio.Future[Outcome]]:
        """Queue all images or none (QueueFull); each future resolves to an Outcome or raises
        DeadlineExceeded once timeout_s (default: the batcher's) has passed."""
        if not self.running:
            raise BatcherStopped("the batcher is not running")
        if len(self._queue) + len(images) > self.max_queue:
            self.observer.on_drop("queue_full", len(images))
            raise QueueFull(f"{len(self._queue)} queued, limit {self.max_queue}")
        loop = self._loop
        assert loop is not None
        now = time.perf_counter()
        deadline = loop.time() + (self.timeout_s if timeout_s is None else timeout_s)
        futures = []
        for image in images:
            job = _Job(image, loop.create_future(), now)
            job.timer = loop.call_at(deadline, self._expire, job)
            self._queue.append(job)
            futures.append(job.future)
        if self._waiting == "first" or (self._waiting == "fill" and len(self._queue) >= self.max_batch_size):
            self._wake()
        return futures

    def abandon(self, futures: Sequence[asyncio.Future[Outcome]]) -> None:
        """The client has gone: its jobs still queued are dropped before inference, and their
        queue slots are free at once (not when the batcher would have reached them)."""
        gone = set()
        for future in futures:
            if not future.done():
                future.set_exception(ClientGone())
                gone.add(future)
        if gone:
            dropped = self._remove_queued(lambda job: job.future in gone)
            if dropped:
                self.observer.on_drop("client_gone", dropped)

    def _remove_queued(self, predicate: Callable[[_Job], bool]) -> int:
        kept: deque[_Job] = deque()
        dropped = 0
        for job in self._queue:
            if predicate(job):
                if job.timer is not None:
                    job.timer.cancel()
                dropped += 1
            else:
                kept.append(job)
        if dropped:
            self._queue = kept
        return dropped

    # --- the loop -------------------------------------------------------------------------------
    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(True)

    async def _sleep(self, state: str, until: float | None) -> None:
        loop = self._loop
        assert loop is not None
        self._waiter = waiter = loop.create_future()
        self._waiting = state
        timer = loop.call_at(until, self._wake) if until is not None else None
        try:
            await waiter
        finally:
            self._waiting = None
            self._waiter = None
            if timer is not None:
                timer.cancel()

    async def _run_forever(self) -> None:
        loop = self._loop
        assert loop is not None
        while True:
            try:
                if not self._queue:
                    if self._stopping:
                        return
                    await self._sleep("first", None)
                    continue
                if self.max_wait_s > 0 and not self._stopping:
                    # Time budget counted from when the oldest job was queued.
                    until = loop.time() + self.max_wait_s - (time.perf_counter() - self._queue[0].enqueued)
                    while (
                        len(self._queue) < self.max_batch_size
                        and self._expected > 0
                        and not self._stopping
                        and loop.time() < until
                    ):
                        await self._sleep("fill", until)
                batch = self._take()
                if batch:
                    await self._execute(batch)
            except asyncio.CancelledError:
                raise
            except Exception:  # never die silently: log, and keep serving
                log.exception("%s loop error; continuing", self.name)

    def _take(self) -> list[_Job]:
        batch: list[_Job] = []
        queue = self._queue
        while queue and len(batch) < self.max_batch_size:
            job = queue.popleft()
            if job.future.done():
                if job.timer is not None:
                    job.timer.cancel()
                if (
                    not job.future.cancelled() and isinstance(job.future.exception(), ClientGone)
                ) or job.future.cancelled():
                    self.observer.on_drop("client_gone")
                continue  # deadline drops were counted when they expired
            batch.append(job)
        count = len(batch)
        below = max((size for size in self.padded_sizes if size <= count), default=count)
        above = min((size for size in self.padded_sizes if size >= count), default=count)
        if above - count > count - below:
            for job in reversed(batch[below:]):
                queue.appendleft(job)
            del batch[below:]
        return batch

    async def _execute(self, batch: list[_Job]) -> None:
        loop = self._loop
        assert loop is not None and self._executor is not None
        images = np.stack([job.image for job in batch])
        started = time.perf_counter()
        waits = [started - job.enqueued for job in batch]
        self._busy = True
        self._current = batch
        try:
            rows = await loop.run_in_executor(self._executor, self.fn, images)
            if len(rows) != len(batch):
                raise InferenceError(f"batch function returned {len(rows)} results for {len(batch)} inputs")
        except Exception as exc:
            self._current = []
            log.exception("%s: batch of %d failed", self.name, len(batch))
            error = exc if isinstance(exc, InferenceError) else InferenceError(f"{type(exc).__name__}: {exc}")
            for job in batch:
                if job.timer is not None:
                    job.timer.cancel()
                if not job.future.done():
                    job.future.set_exception(error)
            return
        finally:
            self._busy = False
        # (On cancellation _current keeps the batch, so stop() can fail its jobs.)
        self._current = []
        inference_s = time.perf_counter() - started
        size = len(batch)
        for job, row, wait in zip(batch, rows, waits, strict=True):
            if job.timer is not None:
                job.timer.cancel()
            if not job.future.done():
                job.future.set_result(Outcome(row, wait, inference_s, size, started))
        self.observer.on_batch(size, waits, inference_s)

    def _expire(self, job: _Job) -> None:
        if not job.future.done():
            job.future.set_exception(DeadlineExceeded("not answered before the deadline"))
            self.observer.on_drop("deadline")
            # Its slot is free again. Deadlines mostly expire oldest first: the head, in O(1).
            if self._queue and self._queue[0] is job:
                self._queue.popleft()
            else:
                self._remove_queued(lambda queued: queued is job)

    def _fail_all(self, error: Exception) -> None:
        jobs = [*self._current, *self._queue]
        self._queue.clear()
        for job in jobs:
            if job.timer is not None:
                job.timer.cancel()
            if not job.future.done():
                job.future.set_exception(error)

    def _on_task_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.critical("%s loop died: %r", self.name, exc, exc_info=exc)
        elif not self._stopping:
            log.critical("%s loop exited unexpectedly", self.name)
