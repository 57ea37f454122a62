"""The shadow candidate: it sees a copy of each live batch after the live answers were sent, and
its answers are compared with the live ones (and recorded beside the live decisions).

Shadow work never delays a live answer: it is handed over after the answers are built and
recorded, and it is dropped, not queued, when the live version has work waiting or the candidate
is still busy with earlier copies (counted by reason). The comparison is by sorting outcome:
the same class, the same bin, and the case that matters most: the candidate would have sent the
item to a different bin without review.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from app.inference.batcher import Outcome, QueueFull
from app.metrics import Metrics
from app.reasons import Reason, before_policy
from app.records.log import DecisionLog
from app.records.schema import shadow_decisions
from app.rollout.serving import Serving

log = logging.getLogger(__name__)


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


class Shadow:
    def __init__(self, rollout: Candidate, metrics: Metrics, decisions: DecisionLog | None):
        self.rollout = rollout
        self.metrics = metrics
        self.decisions = decisions
        self._tasks: set[asyncio.Task[None]] = set()

    def follow(self, live: Serving, answered: Sequence[Followed], on: dt.date) -> None:
        """Hand copies of live answers' images to the candidate, or drop them (never wait)."""
        candidate = self.rollout.shadow
        if candidate is None or not answered or live is not self.rollout.live:
            return  # no candidate; or a canary's answer: the shadow compares with the live version only
        version = str(candidate.version)
        if not candidate.ready:
            self.metrics.shadow_dropped_work(version, "candidate_not_ready", len(answered))
            return
        if live.batcher.queue_depth > 0:  # live work waiting: the cores are the live version's
            self.metrics.shadow_dropped_work(version, "live_busy", len(answered))
            return
        if not candidate.batcher.idle:  # still on earlier copies: drop rather than queue behind them
            self.metrics.shadow_dropped_work(version, "candidate_busy", len(answered))
            return
        try:
            futures = candidate.batcher.submit_many([item.seen for item in answered])
        except QueueFull:
            self.metrics.shadow_dropped_work(version, "candidate_busy", len(answered))
            return
        task = asyncio.get_running_loop().create_task(self._compare(candidate, live, answered, futures, on))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

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

    async def drain(self) -> None:
        """Wait for the comparisons under way (tests and shutdown)."""
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


def _insert(decisions: DecisionLog, rows: list[dict[str, Any]]) -> None:
    engine = decisions.engine
    assert engine is not None
    with engine.begin() as connection:
        connection.execute(shadow_decisions.insert(), rows)
