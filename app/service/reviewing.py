"""A reviewer's verdict, recorded: the true class, the bin the policy gives it, who and when. One
path for the review API and the review station."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from app import errors
from app.records import queries
from app.records.ids import new_id
from app.service.service import Service


async def record_review(
    service: Service, decision_id: str, class_id: int, reviewer: str, corrects: str | None
) -> dict[str, Any]:
    """The stored review. ApiError: 404 decision_not_found, 409 already_reviewed, 503."""
    policy = service.loaded_policy
    engine = service.records_engine
    now = dt.datetime.now(dt.UTC)
    placed = policy.place(class_id, now.date())
    label = policy.class_names[class_id]
    row: dict[str, Any] = {
        "review_id": new_id(),
        "decision_id": decision_id,
        "created_at": now,
        "reviewer": reviewer,
        "class_id": class_id,
        "label": label,
        "season": placed.season,
        "bin": placed.bin,
        "zone": placed.zone,
        "policy_version": policy.version,
    }
    try:
        reviewed = await asyncio.to_thread(queries.add_review, engine, row, corrects)
    except queries.DecisionNotFound:
        raise errors.decision_not_found(decision_id) from None
    except queries.AlreadyReviewed as exc:
        raise errors.already_reviewed(exc.latest_review_id) from None
    except SQLAlchemyError as exc:
        raise errors.records_unavailable(type(exc).__name__) from None
    service.metrics.reviewed(reviewed.model_label, label, reviewed.audit)
    return reviewed.review
