"""The request flow: decode -> admit -> batch -> policy -> answer, with every error translated.

Routes stay thin and call ``classify`` (one image) or ``classify_many`` (a batch request). Load is
shed before any decoding: admission to the batcher's queue is checked first, because refusing must
stay cheap when the service is overloaded.

With traces on, an answered request records its steps as spans once it is on record, from the
times measured on the way (app.tracing); with traces off that is one check of ``spans.on``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from opentelemetry.util.types import AttributeValue

from app import errors
from app.config import Settings
from app.errors import ApiError, ClientGone
from app.inference import preprocess
from app.inference.batcher import Batcher, BatcherStopped, DeadlineExceeded, InferenceError, Outcome, QueueFull
from app.inference.preprocess import ModelInput
from app.metrics import Metrics
from app.reasons import Reason
from app.records.keeper import PhotoKeeper
from app.records.log import DecisionLog, NotRecorded
from app.records.record import decision_row
from app.rollout.rollout import Rollout
from app.rollout.serving import Serving
from app.rollout.shadow import Shadow
from app.service.answers import build_answer
from app.service.lifecycle import Lifecycle
from app.tracing import (
    BATCH_SIZE,
    DECISION_ID,
    DECISION_IDS,
    DECISION_LOG_WRITE,
    DECODE,
    IMAGES,
    INDEX,
    INFERENCE,
    ITEM_ID,
    POLICY,
    QUEUE_WAIT,
    SEGMENTATION,
    SpanRecorder,
    Step,
)

PREPROCESS_CHUNK = 32  # batch-endpoint images decoded per thread hop; chunks feed the batcher as they finish


@dataclass(slots=True)
class Prepared:
    """One decoded image on its way to the model, or the error that stopped it; the times are
    time.perf_counter() readings (decoded: decoding done, segmentation begun)."""

    image: ModelInput | None
    error: ApiError | None
    started: float = 0.0
    decoded: float = 0.0
    ended: float = 0.0

    @property
    def preprocess_s(self) -> float:
        return self.ended - self.started


@dataclass(slots=True)
class Answered:
    """An answer on its way to the record (and the shadow), with the photo it was made from."""

    answer: dict[str, Any]
    photo: bytes
    seen: np.ndarray  # the 28x28 image the model saw
    photo_reasons: tuple[Reason, ...] = ()  # what the photo alone sent to review (segmentation)


class RequestFlow:
    def __init__(
        self,
        *,
        settings: Settings,
        metrics: Metrics,
        lifecycle: Lifecycle,
        rollout: Rollout,
        preprocess_pool: ThreadPoolExecutor,
        decisions: DecisionLog | None,
        photos: PhotoKeeper,
        shadow: Shadow,
        spans: SpanRecorder | None = None,
    ):
        self.settings = settings
        self.metrics = metrics
        self.lifecycle = lifecycle
        self.rollout = rollout  # which version answers a request
        self.preprocess_pool = preprocess_pool
        self.decisions = decisions  # None: recording is off (SORTER_DECISION_LOG=false)
        self.photos = photos
        self.shadow = shadow  # the candidate that sees copies of live batches
        self.spans = spans or SpanRecorder()  # off unless traces are exported

    # --- admission ------------------------------------------------------------------------------
    def serving_for(self, item_id: str | None = None) -> Serving:
        """The version that answers this request (live, or the canary), or 503 not_ready. New work
        is refused while draining by the middleware, before it counts as admitted; work already
        admitted is served to the end, by the version that admitted it."""
        serving = self.rollout.pick(item_id)
        if not (self.lifecycle.serves_admitted_work and serving.batcher.running):
            raise errors.not_ready()
        return serving

    def shed_if_full(self) -> None:
        """Refuse at once (503 queue_full) when not even one more image fits: cheaper than reading
        and parsing a body whose images would be refused anyway."""
        try:
            self.serving_for().batcher.check_room(1)
        except QueueFull:
            raise errors.queue_full() from None

    # --- decoding -------------------------------------------------------------------------------
    async def prepare(self, data: bytes) -> Prepared:
        """Decode one image: small ones on the loop (a thread hop costs more), large ones in a thread."""
        started = time.perf_counter()
        settings = self.settings
        try:
            opened = preprocess.open_image(data, settings.max_image_pixels)
            if opened.pixels <= settings.inline_decode_max_pixels:
                image, decoded = preprocess.finish_timed(opened, settings.resize)
            else:
                loop = asyncio.get_running_loop()
                image, decoded = await loop.run_in_executor(
                    self.preprocess_pool, preprocess.finish_timed, opened, settings.resize
                )
        except ApiError as exc:
            ended = time.perf_counter()
            return Prepared(None, exc, started, ended, ended)
        return Prepared(image, None, started, decoded, time.perf_counter())

    def _prepare_chunk(self, blobs: Sequence[bytes | ApiError]) -> list[Prepared]:
        out = []
        settings = self.settings
        for blob in blobs:
            if isinstance(blob, ApiError):
                out.append(Prepared(None, blob))
                continue
            started = time.perf_counter()
            try:
                opened = preprocess.open_image(blob, settings.max_image_pixels)
                image, decoded = preprocess.finish_timed(opened, settings.resize)
                out.append(Prepared(image, None, started, decoded, time.perf_counter()))
            except ApiError as exc:
                ended = time.perf_counter()
                out.append(Prepared(None, exc, started, ended, ended))
        return out

    # --- one image ------------------------------------------------------------------------------
    async def classify(
        self,
        data: bytes,
        *,
        top_k: int,
        as_of: dt.date | None,
        item_id: str | None,
        caller: str | None,
        disconnected: asyncio.Future[None],
    ) -> dict[str, Any]:
        serving = self.serving_for(item_id)
        batcher = serving.batcher
        try:
            admitted = batcher.admit()  # refused before decoding: shedding load must be cheap
        except QueueFull:
            raise errors.queue_full() from None
        started = time.perf_counter()
        with admitted:
            prepared = await self.prepare(data)
            if prepared.error is not None:
                raise prepared.error
            assert prepared.image is not None
            # The deadline counts from admission, so waiting for a decode thread counts too.
            remaining_s = self.settings.request_timeout_s - (time.perf_counter() - started)
            try:
                future = batcher.submit(prepared.image.pixels, timeout_s=max(remaining_s, 0.0))
            except QueueFull:
                raise errors.queue_full() from None
            except BatcherStopped:
                raise errors.shutting_down() from None
        outcome = await self._await(batcher, future, disconnected)
        on = as_of or dt.date.today()
        answering = time.perf_counter()
        answer = self.answer(serving, outcome, prepared.image, prepared.preprocess_s, top_k, on, item_id)
        answered = [Answered(answer, data, prepared.image.pixels, prepared.image.reasons)]
        recording = time.perf_counter()
        try:
            await self._record(serving, answered, caller)
        except NotRecorded as exc:
            if self.spans.on:
                self._trace_image(prepared, outcome, answering, recording, answer, str(exc))
            raise errors.not_recorded(str(exc)) from None
        if self.spans.on:
            self._trace_image(prepared, outcome, answering, recording, answer, None)
        self.shadow.follow(serving, answered, on)
        return answer

    # --- a batch request ------------------------------------------------------------------------
    async def classify_many(
        self,
        blobs: Sequence[bytes | ApiError],
        *,
        top_k: int,
        as_of: dt.date | None,
        item_ids: Sequence[str | None],
        caller: str | None,
        disconnected: asyncio.Future[None],
    ) -> list[dict[str, Any]]:
        """Every item answered in input order: its result or its own error. The whole request is
        refused (503 queue_full) before any decoding when its images do not fit in the queue."""
        serving = self.serving_for(next((i for i in item_ids if i is not None), None))
        batcher = serving.batcher
        try:
            admitted = batcher.admit(len(blobs))
        except QueueFull:
            raise errors.queue_full() from None
        with admitted:
            prepared, futures = await self._submit_in_chunks(batcher, blobs, disconnected)
        if futures:
            await self._wait_all(batcher, list(futures.values()), disconnected)
        if disconnected.done():
            raise ClientGone()
        on = as_of or dt.date.today()
        answering = time.perf_counter()
        entries = [
            self._item(serving, index, item, futures, top_k, on, item_ids[index]) for index, item in enumerate(prepared)
        ]
        answered_entries = [entry for entry in entries if entry["result"] is not None]
        answered = [self._answered(entry, blobs, prepared) for entry in answered_entries]
        recording = time.perf_counter()
        try:
            await self._record(serving, answered, caller)
        except NotRecorded as exc:
            if self.spans.on:
                self._trace_batch(prepared, futures, answering, recording, answered_entries, str(exc))
            error = errors.not_recorded(str(exc))
            for entry in answered_entries:
                entry["result"], entry["error"] = None, {"status": error.status, **error.body()}
            return entries
        if self.spans.on:
            self._trace_batch(prepared, futures, answering, recording, answered_entries, None)
        self.shadow.follow(serving, answered, on)
        return entries

    # --- the record -----------------------------------------------------------------------------
    @staticmethod
    def _answered(entry: dict[str, Any], blobs: Sequence[bytes | ApiError], prepared: list[Prepared]) -> Answered:
        index = entry["index"]
        data, seen = blobs[index], prepared[index].image
        assert isinstance(data, bytes) and seen is not None  # an entry with a result had both
        return Answered(entry["result"], data, seen.pixels, seen.reasons)

    async def _record(self, serving: Serving, answered: list[Answered], caller: str | None) -> None:
        """Put the answers' decisions on record, with the photos kept for review and audit; the
        answers may be given only once this returns."""
        if self.decisions is None or not answered:
            return
        audit = [not a.answer["needs_review"] and self.photos.audit_draw() for a in answered]
        kept = [a for a, sampled in zip(answered, audit, strict=True) if a.answer["needs_review"] or sampled]
        stored: dict[int, str | None] = {}
        if kept:
            loop = asyncio.get_running_loop()
            references = await loop.run_in_executor(self.preprocess_pool, self.photos.keep, kept)
            stored = {id(a): reference for a, reference in zip(kept, references, strict=True)}
        now = dt.datetime.now(dt.UTC)
        policy = serving.policy
        rows = [
            decision_row(
                a.answer,
                caller=caller,
                policy_version=policy.version,
                review_threshold=policy.review_threshold,
                created_at=now,
                photo_sha256=stored.get(id(a)),
                audit=sampled,
            )
            for a, sampled in zip(answered, audit, strict=True)
        ]
        await self.decisions.record(rows)

    async def _submit_in_chunks(
        self, batcher: Batcher, blobs: Sequence[bytes | ApiError], disconnected: asyncio.Future[None]
    ) -> tuple[list[Prepared], dict[int, asyncio.Future[Outcome]]]:
        """Decode in chunks on the pool; each chunk's images join the queue as soon as it is done."""
        loop = asyncio.get_running_loop()
        prepared: list[Prepared] = []
        futures: dict[int, asyncio.Future[Outcome]] = {}
        for start in range(0, len(blobs), PREPROCESS_CHUNK):
            chunk = await loop.run_in_executor(
                self.preprocess_pool, self._prepare_chunk, blobs[start : start + PREPROCESS_CHUNK]
            )
            prepared.extend(chunk)
            indices = [start + i for i, p in enumerate(chunk) if p.image is not None]
            if not indices:
                continue
            try:
                images = [seen.pixels for i in indices if (seen := prepared[i].image) is not None]
                submitted = batcher.submit_many(images)
            except QueueFull:
                for i in indices:
                    refused = prepared[i]
                    prepared[i] = Prepared(None, errors.queue_full(), refused.started, refused.decoded, refused.ended)
                continue
            except BatcherStopped:
                raise errors.shutting_down() from None
            futures.update(zip(indices, submitted, strict=True))
            if disconnected.done():
                break
        return prepared, futures

    async def _wait_all(
        self, batcher: Batcher, pending: list[asyncio.Future[Outcome]], disconnected: asyncio.Future[None]
    ) -> None:
        def gone(_: asyncio.Future[None]) -> None:
            batcher.abandon(pending)

        disconnected.add_done_callback(gone)
        try:
            await asyncio.wait(pending)
        finally:
            disconnected.remove_done_callback(gone)

    def _item(
        self,
        serving: Serving,
        index: int,
        item: Prepared,
        futures: dict[int, asyncio.Future[Outcome]],
        top_k: int,
        on: dt.date,
        item_id: str | None,
    ) -> dict[str, Any]:
        error = item.error
        if error is None and item.image is not None:
            try:
                outcome = self._unwrap(futures[index])
                return {
                    "index": index,
                    "result": self.answer(serving, outcome, item.image, item.preprocess_s, top_k, on, item_id),
                    "error": None,
                }
            except ApiError as exc:
                error = exc
        if error is None:  # unreachable: a Prepared has an image or an error
            error = errors.inference_failed("no image and no error")
        self.metrics.count_rejection(error.code)
        return {"index": index, "result": None, "error": {"status": error.status, **error.body()}}

    # --- traces ---------------------------------------------------------------------------------
    def _trace_image(
        self,
        prepared: Prepared,
        outcome: Outcome,
        answering: float,
        recording: float,
        answer: dict[str, Any],
        not_recorded: str | None,
    ) -> None:
        decision: dict[str, AttributeValue] = {DECISION_ID: answer["decision_id"]}
        steps = [
            Step(DECODE, prepared.started, prepared.decoded),
            Step(SEGMENTATION, prepared.decoded, prepared.ended),
            *_model_steps([outcome]),
            Step(POLICY, answering, recording, decision),
            *self._log_step(recording, decision, not_recorded),
        ]
        item_id = answer["item_id"]
        self.spans.record(steps, decision if item_id is None else {**decision, ITEM_ID: item_id})

    def _trace_batch(
        self,
        prepared: list[Prepared],
        futures: dict[int, asyncio.Future[Outcome]],
        answering: float,
        recording: float,
        answered: list[dict[str, Any]],
        not_recorded: str | None,
    ) -> None:
        """Decode and segmentation per image (it is decoded alone); queue_wait and inference once
        per wait and model batch the request's images shared; policy and the log write once."""
        decisions: dict[str, AttributeValue] = {
            DECISION_IDS: [entry["result"]["decision_id"] for entry in answered],
            IMAGES: len(answered),
        }
        outcomes = [
            future.result()
            for future in futures.values()
            if future.done() and not future.cancelled() and future.exception() is None
        ]
        steps = [
            Step(name, start, end, {INDEX: index})
            for index, item in enumerate(prepared)
            if item.image is not None
            for name, start, end in ((DECODE, item.started, item.decoded), (SEGMENTATION, item.decoded, item.ended))
        ]
        steps += _model_steps(outcomes)
        steps.append(Step(POLICY, answering, recording, decisions))
        steps += self._log_step(recording, decisions, not_recorded)
        self.spans.record(steps, {IMAGES: len(prepared)})

    def _log_step(
        self, recording: float, attributes: dict[str, AttributeValue], not_recorded: str | None
    ) -> list[Step]:
        if self.decisions is None:
            return []
        return [Step(DECISION_LOG_WRITE, recording, time.perf_counter(), attributes, not_recorded)]

    # --- results and errors ---------------------------------------------------------------------
    async def _await(
        self, batcher: Batcher, future: asyncio.Future[Outcome], disconnected: asyncio.Future[None]
    ) -> Outcome:
        def gone(_: asyncio.Future[None]) -> None:
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

    def _unwrap(self, future: asyncio.Future[Outcome]) -> Outcome:
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
        self,
        serving: Serving,
        outcome: Outcome,
        seen: ModelInput,
        preprocess_s: float,
        top_k: int,
        on: dt.date,
        item_id: str | None,
    ) -> dict[str, Any]:
        return build_answer(
            outcome,
            seen,
            model=serving.model,
            policy=serving.policy,
            metrics=self.metrics,
            model_ref=serving.model_ref,
            preprocess_s=preprocess_s,
            top_k=top_k,
            on=on,
            item_id=item_id,
        )


def _model_steps(outcomes: Sequence[Outcome]) -> list[Step]:
    """One queue_wait per wait the images shared (queued together, batched together) and one
    inference per model batch, each with how many of the request's images it covers."""
    waits: dict[tuple[float, float], int] = {}
    batches: dict[float, tuple[Outcome, int]] = {}
    for outcome in outcomes:
        key = (outcome.batch_started, outcome.queue_s)
        waits[key] = waits.get(key, 0) + 1
        first, count = batches.get(outcome.batch_started, (outcome, 0))
        batches[outcome.batch_started] = (first, count + 1)
    steps = [
        Step(QUEUE_WAIT, started - queue_s, started, {IMAGES: count}) for (started, queue_s), count in waits.items()
    ]
    steps += [
        Step(INFERENCE, started, started + first.inference_s, {BATCH_SIZE: first.batch_size, IMAGES: count})
        for started, (first, count) in batches.items()
    ]
    return steps
