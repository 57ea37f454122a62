"""Where the service is in its life, what is in flight, and the graceful drain on SIGTERM.

One notion of readiness: the ``Phase``. STARTING (model loading, warm-up) -> SERVING -> DRAINING
(SIGTERM: new work refused with 503 draining, admitted work finished) -> STOPPED; or STARTING ->
WARMUP_FAILED, where it stays unready. Load balancers and /readyz see ``ready_for_traffic``;
requests admitted before a drain began are served through ``serves_admitted_work``; from the drain
on (``shutting_down``) new work is refused as draining.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from app.metrics import Metrics

log = logging.getLogger(__name__)

ServerExit = Callable[[bool], None]  # force: don't wait for open connections again


class Phase(enum.Enum):
    STARTING = "starting"
    SERVING = "serving"
    WARMUP_FAILED = "warmup_failed"
    DRAINING = "draining"
    STOPPED = "stopped"


class Lifecycle:
    def __init__(self, metrics: Metrics, drain_timeout_s: float, work_idle: Callable[[], bool]):
        """``work_idle``: whether the inference side has nothing queued or running (the batcher)."""
        self.metrics = metrics
        self.drain_timeout_s = drain_timeout_s
        self.work_idle = work_idle
        self.phase = Phase.STARTING
        self.warmup_error: str | None = None
        self.inflight = 0
        # Set by the CLI to end its uvicorn.Server; in-process servers (tests) have none.
        self.server_exit: ServerExit | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self._serving = threading.Event()  # for callers outside the event loop (tests, CLI)
        self._drain_task: asyncio.Task[None] | None = None
        self._previous_sigterm: Any = None

    # --- phase ----------------------------------------------------------------------------------
    @property
    def ready_for_traffic(self) -> bool:
        return self.phase is Phase.SERVING

    @property
    def serves_admitted_work(self) -> bool:
        return self.phase in (Phase.SERVING, Phase.DRAINING)

    @property
    def shutting_down(self) -> bool:
        """New work is refused for good (503 draining: retry on another replica)."""
        return self.phase in (Phase.DRAINING, Phase.STOPPED)

    def _enter(self, phase: Phase) -> None:
        self.phase = phase
        self.metrics.ready.set(1 if phase is Phase.SERVING else 0)
        self.metrics.draining.set(1 if phase is Phase.DRAINING else 0)
        if phase is Phase.SERVING:
            self._serving.set()

    def serving(self) -> None:
        self._enter(Phase.SERVING)

    def warmup_failed(self, reason: str) -> None:
        self.warmup_error = reason
        self._enter(Phase.WARMUP_FAILED)

    def stopped(self) -> None:
        self._enter(Phase.STOPPED)
        self._restore_sigterm()

    def wait_serving(self, timeout_s: float) -> bool:
        """Block (from another thread) until warmed up; False on timeout."""
        return self._serving.wait(timeout_s)

    # --- in-flight accounting (the middleware counts admitted work requests) --------------------
    def request_started(self) -> None:
        self.inflight += 1
        self._idle.clear()

    def request_finished(self) -> None:
        self.inflight -= 1
        if self.inflight == 0:
            self._idle.set()

    # --- SIGTERM and the drain ------------------------------------------------------------------
    def install_sigterm(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # in-process test clients run the app off the main thread; no signals there
        loop = asyncio.get_running_loop()
        self._previous_sigterm = signal.getsignal(signal.SIGTERM)

        def on_sigterm(signum: int, frame: FrameType | None) -> None:
            if self.phase is Phase.DRAINING:  # a second SIGTERM: stop waiting
                self._exit_server(force=True)
                return
            loop.call_soon_threadsafe(self.begin_drain)

        signal.signal(signal.SIGTERM, on_sigterm)

    def _restore_sigterm(self) -> None:
        if self._previous_sigterm is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._previous_sigterm)
            self._previous_sigterm = None

    def begin_drain(self) -> None:
        """Refuse new work (503 draining), finish admitted requests, then ask the server to exit."""
        if self.phase in (Phase.DRAINING, Phase.STOPPED):
            return
        self._enter(Phase.DRAINING)
        log.info("SIGTERM: draining %d in-flight request(s), up to %.0f s", self.inflight, self.drain_timeout_s)
        self._drain_task = asyncio.get_running_loop().create_task(self._drain(), name="drain")

    async def _drain(self) -> None:
        started = time.perf_counter()
        timed_out = False
        try:
            await asyncio.wait_for(self._wait_idle(), self.drain_timeout_s)
            log.info("drained in %.2f s", time.perf_counter() - started)
        except TimeoutError:
            timed_out = True
            log.warning("drain timeout (%.0f s): %d request(s) still in flight", self.drain_timeout_s, self.inflight)
        # The drain budget is spent: the server must not wait for the stragglers again.
        self._exit_server(force=timed_out)

    async def _wait_idle(self) -> None:
        while True:
            await self._idle.wait()
            if self.inflight == 0 and self.work_idle():
                return
            await asyncio.sleep(0.01)  # in-flight is zero but a batch is finishing

    def _exit_server(self, force: bool) -> None:
        if self.server_exit is not None:
            self.server_exit(force)
        elif callable(self._previous_sigterm):  # a server we did not build: its own SIGTERM handling
            self._previous_sigterm(signal.SIGTERM, None)
        else:
            signal.raise_signal(signal.SIGINT)
