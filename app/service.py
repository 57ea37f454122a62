"""The running service: model, policy, batcher, metrics, readiness and graceful drain.

One instance per app, created by ``create_app`` and reached by routes through ``ServiceDep``.
Routes stay thin; the classification flow (decode -> batch -> policy -> answer) lives here.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import logging
import signal
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from app import errors, preprocess
from app.batcher import Batcher, BatcherStopped, DeadlineExceeded, InferenceError, Outcome, QueueFull
from app.config import Settings
from app.errors import ApiError, ClientGone
from app.metrics import Metrics
from app.model import Model, find_version, load_model, read_metadata
from app.policy import Policy, load_policy

log = logging.getLogger(__name__)

PREPROCESS_CHUNK = 32  # batch-endpoint images decoded per thread hop; chunks feed the batcher as they finish


@dataclass(slots=True)
class Prepared:
    """One decoded image on its way to the model, or the error that stopped it."""

    image: np.ndarray | None
    error: ApiError | None
    preprocess_s: float


Row = tuple[list[float], list[int], int, float]  # probabilities, class order, season index, season mass


class Service:
    def __init__(self, settings: Settings, model: Model | None = None, metrics: Metrics | None = None):
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.model: Model | None = model
        self.policy: Policy | None = None
        self.batcher: Batcher | None = None
        self.ready = False
        self.draining = False
        self.warmup_error: str | None = None
        self.inflight = 0
        self._idle = asyncio.Event()
        self._ready_flag = threading.Event()  # for callers outside the event loop (tests, CLI)
        self._warmup_task: asyncio.Task | None = None
        self._drain_task: asyncio.Task | None = None
        self._previous_sigterm: Any = None
        self._preprocess_pool: ThreadPoolExecutor | None = None
        self._model_ref: dict[str, Any] = {}

    # --- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        """Load and check everything that can be wrong (fail fast), then warm up in the background."""
        settings = self.settings
        if self.model is None:
            if settings.model_backend == "tensorflow":
                # Policy errors surface before the slow TensorFlow import.
                metadata = read_metadata(find_version(settings.resolved_model_dir()))
                self.policy = self._load_policy(metadata["class_names"], metadata.get("review_threshold"))
            self.model = await asyncio.to_thread(load_model, settings)
        model = self.model
        self.policy = self._load_policy(model.class_names, model.review_threshold)
        self._model_ref = {"name": model.name, "version": model.version}
        self.metrics.model_info.labels(model.name, str(model.version)).set(1)
        self._preprocess_pool = ThreadPoolExecutor(settings.preprocess_threads, thread_name_prefix="preprocess")
        self.batcher = Batcher(
            self._infer,
            max_batch_size=settings.max_batch_size,
            max_wait_s=settings.max_wait_s,
            max_queue=settings.max_queue,
            timeout_s=settings.request_timeout_s,
            observer=self.metrics,
            padded_sizes=model.batch_sizes,
        )
        self.metrics.watch(lambda: self.batcher.queue_depth if self.batcher else 0, lambda: self.inflight)
        self.metrics.queue_capacity.set(settings.max_queue)
        self._idle.set()
        self._install_sigterm()
        self._warmup_task = asyncio.get_running_loop().create_task(self._warm_up(), name="warm-up")

    def _load_policy(self, class_names: Sequence[str], metadata_threshold: float | None) -> Policy:
        return load_policy(
            self.settings.policy_file,
            class_names,
            metadata_review_threshold=metadata_threshold,
            review_threshold_override=self.settings.review_threshold,
            hemisphere_override=self.settings.hemisphere,
        )

    async def _warm_up(self) -> None:
        assert self.model is not None and self.batcher is not None
        started = time.perf_counter()
        try:
            await asyncio.to_thread(self.model.warmup)
            await self.batcher.start()
        except Exception as exc:
            self.warmup_error = f"{type(exc).__name__}: {exc}"
            log.critical("warm-up failed, the service stays unready: %s", self.warmup_error, exc_info=exc)
            return
        # What is loaded by now (TensorFlow, the graph, every module) lives as long as the process.
        # Frozen, it is left out of the cyclic collector, whose full passes over it stalled the
        # event loop for ~185 ms each, several times a minute under load: the p99 tail.
        gc.collect()
        gc.freeze()
        self.ready = True
        self.metrics.ready.set(1)
        self._ready_flag.set()
        log.info(
            "ready: %s v%s warmed at batch sizes %s in %.1f s",
            self.model.name,
            self.model.version,
            list(self.model.batch_sizes),
            time.perf_counter() - started,
        )

    async def stop(self) -> None:
        gc.unfreeze()
        self.ready = False
        self.metrics.ready.set(0)
        if self._warmup_task is not None and not self._warmup_task.done():
            self._warmup_task.cancel()
        if self.batcher is not None:
            await self.batcher.stop(timeout_s=max(1.0, self.settings.drain_timeout_s))
        if self._preprocess_pool is not None:
            self._preprocess_pool.shutdown(wait=False, cancel_futures=True)
        self._restore_sigterm()

    def wait_ready(self, timeout_s: float) -> bool:
        """Block (from another thread) until warmed up; False on timeout."""
        return self._ready_flag.wait(timeout_s)

    @property
    def model_ref(self) -> dict[str, Any]:
        return self._model_ref

    @property
    def is_ready(self) -> bool:
        return self.ready and not self.draining and self.batcher is not None and self.batcher.running

    # --- graceful drain -------------------------------------------------------------------------
    def _install_sigterm(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # in-process test clients run the app off the main thread; no signals there
        loop = asyncio.get_running_loop()
        self._previous_sigterm = signal.getsignal(signal.SIGTERM)

        def on_sigterm(signum: int, frame: Any) -> None:
            if self.draining:  # a second SIGTERM: stop waiting
                self._exit_server(force=True)
                return
            loop.call_soon_threadsafe(self.begin_drain)

        signal.signal(signal.SIGTERM, on_sigterm)

    def _restore_sigterm(self) -> None:
        if self._previous_sigterm is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._previous_sigterm)
            self._previous_sigterm = None

    def begin_drain(self) -> None:
        """Refuse new work (503 draining), finish accepted requests, then ask the server to exit."""
        if self.draining:
            return
        self.draining = True
        self.metrics.draining.set(1)
        self.metrics.ready.set(0)
        log.info(
            "SIGTERM: draining %d in-flight request(s), up to %.0f s", self.inflight, self.settings.drain_timeout_s
        )
        self._drain_task = asyncio.get_running_loop().create_task(self._drain(), name="drain")

    async def _drain(self) -> None:
        started = time.perf_counter()
        timed_out = False
        try:
            await asyncio.wait_for(self._wait_idle(), self.settings.drain_timeout_s)
            log.info("drained in %.2f s", time.perf_counter() - started)
        except TimeoutError:
            timed_out = True
            log.warning(
                "drain timeout (%.0f s): %d request(s) still in flight", self.settings.drain_timeout_s, self.inflight
            )
        # The drain budget is spent: uvicorn must not wait for the stragglers again.
        self._exit_server(force=timed_out)

    async def _wait_idle(self) -> None:
        while True:
            await self._idle.wait()
            if self.inflight == 0 and (self.batcher is None or self.batcher.idle):
                return
            await asyncio.sleep(0.01)  # in-flight is zero but a batch is finishing

    def _exit_server(self, force: bool) -> None:
        # uvicorn's own SIGTERM handler is a bound method of its Server: set its flags directly,
        # so uvicorn shuts down without re-raising SIGTERM at exit (the process exits 0).
        server = getattr(self._previous_sigterm, "__self__", None)
        if server is not None and hasattr(server, "should_exit"):
            server.should_exit = True
            if force:
                server.force_exit = True
        elif callable(self._previous_sigterm):
            self._previous_sigterm(signal.SIGTERM, None)
        else:
            signal.raise_signal(signal.SIGINT)

    def request_started(self) -> None:
        self.inflight += 1
        self._idle.clear()

    def request_finished(self) -> None:
        self.inflight -= 1
        if self.inflight == 0:
            self._idle.set()

    # --- inference (worker thread) --------------------------------------------------------------
    def _infer(self, images: np.ndarray) -> list[Row]:
        assert self.model is not None and self.policy is not None
        probabilities = np.asarray(self.model.predict(images), dtype=np.float64)
        order = np.argsort(-probabilities, axis=1, kind="stable")
        masses = self.policy.season_masses(probabilities)
        season = masses.argmax(axis=1)
        season_mass = masses[np.arange(len(masses)), season]
        return list(zip(probabilities.tolist(), order.tolist(), season.tolist(), season_mass.tolist(), strict=True))

    # --- the request flow (event loop) ----------------------------------------------------------
    def shed_if_full(self) -> None:
        """Refuse at once (503 queue_full) when not even one more image fits: cheaper than reading
        and parsing a body whose images would be refused anyway."""
        try:
            self.check_accepting().check_room(1)
        except QueueFull:
            raise errors.queue_full() from None

    def check_accepting(self) -> Batcher:
        # New work is refused while draining by the middleware, before it counts as accepted;
        # work already accepted is served to the end.
        if not (self.ready and self.batcher is not None and self.batcher.running):
            raise errors.not_ready()
        assert self.batcher is not None
        return self.batcher

    async def prepare(self, data: bytes) -> Prepared:
        """Decode one image: small ones on the loop (a thread hop costs more), large ones in a thread."""
        started = time.perf_counter()
        settings = self.settings
        try:
            opened = preprocess.open_image(data, settings.max_image_pixels)
            if opened.pixels <= settings.inline_decode_max_pixels:
                image = preprocess.finish(opened, settings.resize)
            else:
                loop = asyncio.get_running_loop()
                image = await loop.run_in_executor(self._preprocess_pool, preprocess.finish, opened, settings.resize)
        except ApiError as exc:
            return Prepared(None, exc, time.perf_counter() - started)
        return Prepared(image, None, time.perf_counter() - started)

    def _prepare_chunk(self, blobs: Sequence[bytes | ApiError]) -> list[Prepared]:
        out = []
        for blob in blobs:
            started = time.perf_counter()
            if isinstance(blob, ApiError):
                out.append(Prepared(None, blob, 0.0))
                continue
            try:
                image = preprocess.preprocess(blob, self.settings.max_image_pixels, self.settings.resize)
                out.append(Prepared(image, None, time.perf_counter() - started))
            except ApiError as exc:
                out.append(Prepared(None, exc, time.perf_counter() - started))
        return out

    async def classify(
        self, data: bytes, *, top_k: int, as_of: dt.date | None, item_id: str | None, disconnected: asyncio.Future
    ) -> dict[str, Any]:
        batcher = self.check_accepting()
        try:
            admitted = batcher.admit()  # refused before decoding: shedding load must be cheap
        except QueueFull:
            raise errors.queue_full() from None
        started = time.perf_counter()
        with admitted:
            prepared = await self.prepare(data)
            if prepared.error is not None:
                raise prepared.error
            # The deadline counts from admission, so waiting for a decode thread counts too.
            remaining_s = self.settings.request_timeout_s - (time.perf_counter() - started)
            try:
                future = batcher.submit(prepared.image, timeout_s=max(remaining_s, 0.0))
            except QueueFull:
                raise errors.queue_full() from None
            except BatcherStopped:
                raise errors.shutting_down() from None
        outcome = await self._await(future, disconnected)
        return self.answer(outcome, prepared.preprocess_s, top_k, as_of or dt.date.today(), item_id)

    async def classify_many(
        self,
        blobs: Sequence[bytes | ApiError],
        *,
        top_k: int,
        as_of: dt.date | None,
        item_ids: Sequence[str | None],
        disconnected: asyncio.Future,
    ) -> list[dict[str, Any]]:
        """Every item answered in input order: its result or its own error. The whole request is
        refused (503 queue_full) before any decoding when its images do not fit in the queue."""
        batcher = self.check_accepting()
        loop = asyncio.get_running_loop()
        on = as_of or dt.date.today()
        prepared: list[Prepared] = []
        futures: dict[int, asyncio.Future] = {}
        try:
            admitted = batcher.admit(len(blobs))
        except QueueFull:
            raise errors.queue_full() from None
        with admitted:
            for start in range(0, len(blobs), PREPROCESS_CHUNK):
                chunk = await loop.run_in_executor(
                    self._preprocess_pool, self._prepare_chunk, blobs[start : start + PREPROCESS_CHUNK]
                )
                prepared.extend(chunk)
                indices = [start + i for i, p in enumerate(chunk) if p.image is not None]
                if not indices:
                    continue
                try:
                    submitted = batcher.submit_many([prepared[i].image for i in indices])
                except QueueFull:
                    for i in indices:
                        prepared[i] = Prepared(None, errors.queue_full(), prepared[i].preprocess_s)
                    continue
                except BatcherStopped:
                    raise errors.shutting_down() from None
                futures.update(zip(indices, submitted, strict=True))
                if disconnected.done():
                    break
        if futures:
            pending = list(futures.values())

            def gone(_: asyncio.Future) -> None:
                batcher.abandon(pending)

            disconnected.add_done_callback(gone)
            try:
                await asyncio.wait(pending)
            finally:
                disconnected.remove_done_callback(gone)
        if disconnected.done():
            raise ClientGone()
        results = []
        for index, item in enumerate(prepared):
            error = item.error
            if error is None:
                try:
                    outcome = self._unwrap(futures[index])
                    results.append(
                        {
                            "index": index,
                            "result": self.answer(outcome, item.preprocess_s, top_k, on, item_ids[index]),
                            "error": None,
                        }
                    )
                    continue
                except ApiError as exc:
                    error = exc
            self.count_rejection(error.code)
            results.append({"index": index, "result": None, "error": {"status": error.status, **error.body()}})
        return results

    async def _await(self, future: asyncio.Future, disconnected: asyncio.Future) -> Outcome:
        batcher = self.batcher
        assert batcher is not None

        def gone(_: asyncio.Future) -> None:
            batcher.abandon((future,))

        disconnected.add_done_callback(gone)
        try:
            return await future
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise self._translate(exc) from None
        finally:
            disconnected.remove_done_callback(gone)

    def _unwrap(self, future: asyncio.Future) -> Outcome:
        exc = future.exception()
        if exc is None:
            return future.result()
        raise self._translate(exc)

    def _translate(self, exc: BaseException) -> Exception:
        if isinstance(exc, DeadlineExceeded):
            return errors.deadline_exceeded(self.settings.request_timeout_s)
        if isinstance(exc, InferenceError):
            return errors.inference_failed(str(exc))
        if isinstance(exc, BatcherStopped):
            return errors.shutting_down()
        if isinstance(exc, ClientGone | ApiError):
            return exc
        return errors.inference_failed(f"{type(exc).__name__}: {exc}")

    def answer(
        self, outcome: Outcome, preprocess_s: float, top_k: int, on: dt.date, item_id: str | None
    ) -> dict[str, Any]:
        assert self.model is not None and self.policy is not None
        probabilities, order, season_index, season_mass = outcome.row
        names = self.model.class_names
        class_id = order[0]
        decision = self.policy.decide_index(season_index, season_mass, on)
        self.metrics.predicted(names[class_id], decision.bin)
        return {
            "class_id": class_id,
            "label": names[class_id],
            "confidence": probabilities[class_id],
            "top_k": [{"class_id": c, "label": names[c], "probability": probabilities[c]} for c in order[:top_k]],
            "season": decision.season,
            "bin": decision.bin,
            "zone": decision.zone,
            "needs_review": decision.needs_review,
            "model": self._model_ref,
            "item_id": item_id,
            "timings_ms": {
                "preprocess": round(preprocess_s * 1000.0, 3),
                "queue": round(outcome.queue_s * 1000.0, 3),
                "inference": round(outcome.inference_s * 1000.0, 3),
            },
        }

    # Codes the batcher counts itself, and server-side failures that are not rejections.
    _NOT_REJECTIONS = frozenset(
        {
            "queue_full",
            "deadline_exceeded",
            "inference_failed",
            "shutting_down",
            "not_found",
            "method_not_allowed",
            "internal_error",
            "client_gone",
        }
    )

    def count_rejection(self, code: str) -> None:
        if code not in self._NOT_REJECTIONS:
            self.metrics.reject(code)
