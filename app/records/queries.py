"""Reading the decision log and adding reviews: what the review API and the review station ask.

Plain functions of an Engine, run in a thread by the routes (they block on the database).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, Row, Subquery, and_, exists, func, not_, select
from sqlalchemy.exc import IntegrityError, OperationalError

from app.records.schema import decisions, reviews, shadow_decisions

MAX_PAGE = 100
WRITE_ATTEMPTS = 3


class DecisionNotFound(LookupError):
    pass


class AlreadyReviewed(Exception):
    """The decision has a review the new one does not say it corrects (or another reviewer won)."""

    def __init__(self, latest_review_id: str | None):
        super().__init__(latest_review_id)
        self.latest_review_id = latest_review_id


def _utc(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)  # SQLite keeps no zone: stored as UTC


def _decision(row: Row[Any], reviews_of: list[dict[str, Any]]) -> dict[str, Any]:
    record = dict(row._mapping)
    record["created_at"] = _utc(record["created_at"])
    record["reviews"] = reviews_of
    return record


def _review(row: Row[Any]) -> dict[str, Any]:
    record = dict(row._mapping)
    record["created_at"] = _utc(record["created_at"])
    return record


def _reviews_for(connection: Any, ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
    if ids:
        query = select(reviews).where(reviews.c.decision_id.in_(ids)).order_by(reviews.c.sequence)
        for row in connection.execute(query):
            found[row.decision_id].append(_review(row))
    return found


def get_decision(engine: Engine, decision_id: str) -> dict[str, Any]:
    with engine.connect() as connection:
        row = connection.execute(select(decisions).where(decisions.c.decision_id == decision_id)).one_or_none()
        if row is None:
            raise DecisionNotFound(decision_id)
        return _decision(row, _reviews_for(connection, [decision_id])[decision_id])


def decisions_for_item(engine: Engine, item_id: str, limit: int) -> list[dict[str, Any]]:
    """The item's decisions, newest first."""
    with engine.connect() as connection:
        query = (
            select(decisions)
            .where(decisions.c.item_id == item_id)
            .order_by(decisions.c.decision_id.desc())
            .limit(min(limit, MAX_PAGE))
        )
        rows = list(connection.execute(query))
        found = _reviews_for(connection, [row.decision_id for row in rows])
        return [_decision(row, found[row.decision_id]) for row in rows]


def verdicts() -> Subquery:
    """Each reviewed decision's latest review, its verdict (a correction wins over what it corrects)."""
    latest = (
        select(reviews.c.decision_id, func.max(reviews.c.sequence).label("sequence"))
        .group_by(reviews.c.decision_id)
        .subquery()
    )
    return (
        select(reviews)
        .join(latest, and_(latest.c.decision_id == reviews.c.decision_id, latest.c.sequence == reviews.c.sequence))
        .subquery()
    )


@dataclass(frozen=True)
class Queue:
    items: list[dict[str, Any]]
    pending: int
    oldest_pending_at: dt.datetime | None


def _unreviewed() -> Any:
    return not_(exists().where(reviews.c.decision_id == decisions.c.decision_id))


def review_queue(engine: Engine, *, audit: bool, limit: int, after: str | None = None) -> Queue:
    """Unreviewed decisions, oldest first: those sent to REVIEW, or (``audit``) the audit sample.
    ``after`` is the last decision_id of the previous page (ids sort by time)."""
    which = decisions.c.audit if audit else decisions.c.needs_review
    waiting = and_(which.is_(True), _unreviewed())
    with engine.connect() as connection:
        page = select(decisions).where(waiting)
        if after is not None:
            page = page.where(decisions.c.decision_id > after)
        rows = list(connection.execute(page.order_by(decisions.c.decision_id).limit(min(limit, MAX_PAGE))))
        pending, oldest = connection.execute(
            select(func.count(), func.min(decisions.c.created_at)).select_from(decisions).where(waiting)
        ).one()
    return Queue([_decision(row, []) for row in rows], int(pending), None if oldest is None else _utc(oldest))


@dataclass(frozen=True)
class Reviewed:
    review: dict[str, Any]
    model_label: str  # what the decision said, for the confusion counts
    audit: bool


def add_review(engine: Engine, review: dict[str, Any], corrects: str | None) -> Reviewed:
    """Record ``review`` (its decision_id, verdict and reviewer). The first review of a decision
    may not claim to correct anything; a later one must name the latest review. Raises
    DecisionNotFound, AlreadyReviewed (409: a review exists, or a concurrent one won)."""
    for attempt in range(WRITE_ATTEMPTS):
        try:
            return _add_review(engine, review, corrects)
        except OperationalError:
            # SQLite: a concurrent reviewer's write got in between this one's read and write
            # (WAL's busy snapshot). Read again: now that review is there, so this one gets 409.
            if attempt == WRITE_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


def _add_review(engine: Engine, review: dict[str, Any], corrects: str | None) -> Reviewed:
    decision_id = review["decision_id"]
    with engine.begin() as connection:
        known = connection.execute(
            select(decisions.c.label, decisions.c.audit).where(decisions.c.decision_id == decision_id)
        ).one_or_none()
        if known is None:
            raise DecisionNotFound(decision_id)
        latest = connection.execute(
            select(reviews.c.review_id, reviews.c.sequence)
            .where(reviews.c.decision_id == decision_id)
            .order_by(reviews.c.sequence.desc())
            .limit(1)
        ).one_or_none()
        if (latest.review_id if latest else None) != corrects:
            raise AlreadyReviewed(latest.review_id if latest else None)
        row = {**review, "sequence": (latest.sequence if latest else 0) + 1, "corrects": corrects}
        try:
            connection.execute(reviews.insert(), [row])
        except IntegrityError:  # another reviewer's insert of the same sequence committed first
            raise AlreadyReviewed(None) from None
    return Reviewed(row, known.label, bool(known.audit))


def shadow_disagreements(engine: Engine, *, limit: int, after: str | None = None) -> list[dict[str, Any]]:
    """Live decisions a shadow candidate answered differently (class or bin), oldest first, each with
    what the candidate said."""
    query = (
        select(decisions, *[c.label(f"shadow_{c.name}") for c in shadow_decisions.c if c.name != "decision_id"])
        .join(shadow_decisions, shadow_decisions.c.decision_id == decisions.c.decision_id)
        .where(not_(and_(shadow_decisions.c.agrees_on_bin, shadow_decisions.c.agrees_on_class)))
    )
    if after is not None:
        query = query.where(decisions.c.decision_id > after)
    with engine.connect() as connection:
        rows = list(connection.execute(query.order_by(decisions.c.decision_id).limit(min(limit, MAX_PAGE))))
        found = _reviews_for(connection, [row.decision_id for row in rows])
    out = []
    for row in rows:
        live = dict(row._mapping)  # the decision's columns, then the shadow's, prefixed
        shadow = {name.removeprefix("shadow_"): live.pop(name) for name in list(live) if name.startswith("shadow_")}
        shadow["created_at"] = _utc(shadow["created_at"])
        live["created_at"] = _utc(live["created_at"])
        live["reviews"] = found[row.decision_id]
        out.append({"decision": live, "shadow": shadow})
    return out
