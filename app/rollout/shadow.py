"""The shadow candidate: it sees a copy of each live batch after the live answers were sent, and
its answers are compared with the live ones (and recorded beside the live decisions).

Shadow work runs on idle time only, so it never delays a live answer: copies are handed over after
the live answers are built and recorded, wait (a bounded backlog) until no live request has been in
flight for a few milliseconds, and run one group at a time; a copy older than STALE_S is dropped
(counted by reason), never run late. On a busy service most copies are dropped; on a warehouse line
with gaps between photos nearly all are compared. The comparison is by sorting outcome: the same
class, the same bin, and the case that matters most: the candidate would have sent the item to a
different bin without review.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from app.inference.batcher import BatcherStopped, Outcome, QueueFull
from app.metrics import Metrics
from app.reasons import Reason, before_policy
from app.records.log import DecisionLog
from app.records.schema import shadow_decisions
from app.rollout.serving import Serving

log = logging.getLogger(__name__)
QUIET_S = 0.003  # no live request in flight for this long: the cores are free for a copy
STALE_S = 2.0  # a copy waiting longer is dropped: the comparison is of now, not of a backlog
MAX_PENDING_IMAGES = 512


class Followed(Protocol):
    """A live answer as the shadow needs it (``app.service.flow.Answered``)."""

    answer: dict[str, Any]
    seen: np.ndarray
    photo_reasons: tuple[Reason, ...]


class Candidate(Protocol):
    @property
    def shadow(self) -> Serving | None: ...

    @property
    def live(self) -> Serving: ...


@dataclass(slots=True)
class _Copy:
    candidate: Serving
    live: Serving
    answered: Sequence[Followed]
    on: dt.date
    queued: float  # time.monotonic()


class Shadow:
    def __init__(
        self, rollout: Candidate, metrics: Metrics, decisions: DecisionLog | None, live_work: Callable[[], int]
    ):
        self.rollout = rollout
        self.metrics = metrics
        self.decisions = decisions
        self.live_work = live_work  # live requests in flight
        self._pending: deque[_Copy] = deque()
        self._pending_images = 0
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    def follow(self, live: Serving, answered: Sequence[Followed], on: dt.date) -> None:
        """Queue copies of live answers' images for the candidate, or drop them (never wait)."""
        candidate = self.rollout.shadow
        if candidate is None or not answered or live is not self.rollout.live:
            return  # no candidate; or a canary's answer: the shadow compares with the live version only
        version = str(candidate.version)
        if not candidate.ready:
            self.metrics.shadow_dropped_work(version, "candidate_not_ready", len(answered))
            return
        if self._pending_images + len(answered) > MAX_PENDING_IMAGES:
            self.metrics.shadow_dropped_work(version, "backlog", len(answered))
            return
        self._pending.append(_Copy(candidate, live, answered, on, time.monotonic()))
        self._pending_images += len(answered)
        if self._task is None:
            self._wake = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run(), name="shadow")
        assert self._wake is not None
        self._wake.set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            if not self._pending:
                self._wake.clear()
                await self._wake.wait()
                continue
            copy = self._pending[0]
            if time.monotonic() - copy.queued > STALE_S:
                self._take()
                self.metrics.shadow_dropped_work(str(copy.candidate.version), "stale", len(copy.answered))
                continue
            if not await self._quiet(copy.live):
                continue
            self._take()
            try:
                futures = copy.candidate.batcher.submit_many([item.seen for item in copy.answered])
            except (QueueFull, BatcherStopped):
                self.metrics.shadow_dropped_work(str(copy.candidate.version), "candidate_busy", len(copy.answered))
                continue
            try:
                await self._compare(copy.candidate, copy.live, copy.answered, futures, copy.on)
            except Exception:  # a comparison must never end the shadow
                log.exception("shadow comparison")

    def _take(self) -> _Copy:
        copy = self._pending.popleft()
        self._pending_images -= len(copy.answered)
        return copy

    async def _quiet(self, live: Serving) -> bool:
        """Whether no live work was in flight for QUIET_S (waits that long; False at the first sign)."""
        deadline = time.monotonic() + QUIET_S
        while time.monotonic() < deadline:
            if self.live_work() > 0 or not live.batcher.idle:
                await asyncio.sleep(QUIET_S)
                return False
            await asyncio.sleep(QUIET_S / 3)
        return True

    async def _compare(
        self,
        candidate: Serving,
        live: Serving,
        answered: Sequence[Followed],
        futures: Sequence[asyncio.Future[Outcome]],
        on: dt.date,
    ) -> None:
        version = str(candidate.version)
        outcomes = await asyncio.gather(*futures, return_exceptions=True)
        now = dt.datetime.now(dt.UTC)
        rows = []
        for item, outcome in zip(answered, outcomes, strict=True):
            if not isinstance(outcome, Outcome):
                self.metrics.shadow_dropped_work(version, "failed", 1)
                continue
            row = outcome.row
            class_id = row.class_order[0]
            decision = candidate.policy.decide_index(
                row.season_index, row.season_mass, on, before_policy(item.photo_reasons, row.unfamiliar)
            )
            answer = item.answer
            same_class = candidate.model.class_names[class_id] == answer["label"]
            same_bin = decision.bin == answer["bin"]
            silent_change = not decision.needs_review and not same_bin
            self.metrics.shadow_compared(version, answer["label"], answer["bin"], same_class, same_bin, silent_change)
            rows.append(
                {
                    "decision_id": answer["decision_id"],
                    "candidate_version": candidate.version,
                    "created_at": now,
                    "class_id": class_id,
                    "label": candidate.model.class_names[class_id],
                    "confidence": row.probabilities[class_id],
                    "season": decision.season,
                    "season_confidence": decision.season_mass,
                    "bin": decision.bin,
                    "needs_review": decision.needs_review,
                    "review_reasons": [str(reason) for reason in decision.reasons],
                    "agrees_on_class": same_class,
                    "agrees_on_bin": same_bin,
                }
            )
        if rows and self.decisions is not None and self.decisions.engine is not None:
            try:
                await asyncio.to_thread(_insert, self.decisions, rows)
            except Exception as exc:  # shadow records are expendable; the live ones are not touched
                self.metrics.shadow_dropped_work(version, "not_recorded", len(rows))
                log.debug("shadow answers not recorded: %s", exc)


def _insert(decisions: DecisionLog, rows: list[dict[str, Any]]) -> None:
    engine = decisions.engine
    assert engine is not None
    with engine.begin() as connection:
        connection.execute(shadow_decisions.insert(), rows)
