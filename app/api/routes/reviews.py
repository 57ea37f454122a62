"""The decision log, read and reviewed: the review queue, decisions by id or item, their kept
photos, and a reviewer's verdict. Reviewer (or admin) keys only."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Depends, Path, Query, Security
from fastapi.responses import Response
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from app import errors
from app.access import Role
from app.api.deps import ServiceDep, api_key_header, check_api_key
from app.api.schemas import (
    DecisionList,
    DecisionRecord,
    DisagreementList,
    ErrorBody,
    ReviewQueue,
    ReviewRecord,
    ReviewRequest,
)
from app.records import queries
from app.records.photos import media_type
from app.service.reviewing import record_review
from app.service.service import Service

T = TypeVar("T")
DecisionId = Annotated[str, Path(max_length=36, description="The decision_id a classification answered with")]
PAGE_DEFAULT = 20


async def reviewer(service: ServiceDep, supplied: Annotated[str | None, Security(api_key_header)]) -> str | None:
    """The reviewer key's name (None with keys off): 401/403 for any other caller."""
    key = check_api_key(service, supplied, Role.REVIEWER)
    return None if key is None else key.name


ReviewerDep = Annotated[str | None, Depends(reviewer)]
router = APIRouter(prefix="/v1", tags=["reviews"], dependencies=[Depends(reviewer)])
_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "Missing or invalid X-API-Key (code: unauthorized)"},
    403: {"model": ErrorBody, "description": "The key's role is not reviewer or admin (code: forbidden)"},
    422: {"model": ErrorBody, "description": "Invalid parameter or body (code: validation_error)"},
    503: {
        "model": ErrorBody,
        "description": "The decision log is off or its database unreachable (codes: decision_log_off, "
        "records_unavailable)",
    },
}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "No such decision (code: decision_not_found)"}
}


async def _query(service: Service, ask: Callable[[Engine], T]) -> T:
    """Run a blocking query in a thread; the database's absence is a 503, never a 500."""
    engine = service.records_engine
    try:
        return await asyncio.to_thread(ask, engine)
    except queries.DecisionNotFound as exc:
        raise errors.decision_not_found(str(exc)) from None
    except SQLAlchemyError as exc:
        raise errors.records_unavailable(type(exc).__name__) from None


@router.get(
    "/reviews", response_model=ReviewQueue, summary="Items waiting for a person, oldest first", responses=_ERRORS
)
async def review_queue(
    service: ServiceDep,
    audit: Annotated[bool, Query(description="The audit sample of auto-sorted items instead of REVIEW")] = False,
    limit: Annotated[int, Query(ge=1, le=queries.MAX_PAGE)] = PAGE_DEFAULT,
    after: Annotated[str | None, Query(max_length=36, description="next_after of the previous page")] = None,
) -> dict[str, Any]:
    queue = await _query(service, lambda engine: queries.review_queue(engine, audit=audit, limit=limit, after=after))
    oldest = queue.oldest_pending_at
    return {
        "items": queue.items,
        "pending": queue.pending,
        "oldest_pending_age_s": None if oldest is None else (dt.datetime.now(dt.UTC) - oldest).total_seconds(),
        "next_after": queue.items[-1]["decision_id"] if len(queue.items) == limit else None,
    }


@router.get(
    "/shadow/disagreements",
    response_model=DisagreementList,
    summary="Live decisions the shadow candidate answered differently, oldest first (to review them)",
    responses=_ERRORS,
)
async def shadow_disagreements(
    service: ServiceDep,
    limit: Annotated[int, Query(ge=1, le=queries.MAX_PAGE)] = PAGE_DEFAULT,
    after: Annotated[str | None, Query(max_length=36, description="next_after of the previous page")] = None,
) -> dict[str, Any]:
    items = await _query(service, lambda engine: queries.shadow_disagreements(engine, limit=limit, after=after))
    return {"items": items, "next_after": items[-1]["decision"]["decision_id"] if len(items) == limit else None}


@router.get("/decisions", response_model=DecisionList, summary="An item's decisions, newest first", responses=_ERRORS)
async def decisions_for_item(
    service: ServiceDep,
    item_id: Annotated[str, Query(min_length=1, max_length=128)],
    limit: Annotated[int, Query(ge=1, le=queries.MAX_PAGE)] = PAGE_DEFAULT,
) -> dict[str, Any]:
    return {"items": await _query(service, lambda engine: queries.decisions_for_item(engine, item_id, limit))}


@router.get(
    "/decisions/{decision_id}",
    response_model=DecisionRecord,
    summary="One decision, with its reviews",
    responses={**_ERRORS, **_NOT_FOUND},
)
async def decision(service: ServiceDep, decision_id: DecisionId) -> dict[str, Any]:
    return await _query(service, lambda engine: queries.get_decision(engine, decision_id))


@router.get(
    "/decisions/{decision_id}/photo",
    summary="The kept photo: as sent (original) or the 28x28 image the model saw (seen)",
    response_class=Response,
    responses={
        200: {"content": {"image/*": {}}, "description": "The image"},
        **_ERRORS,
        404: {
            "model": ErrorBody,
            "description": "No such decision, or no photo kept (decision_not_found, photo_not_kept)",
        },
    },
)
async def decision_photo(
    service: ServiceDep, decision_id: DecisionId, view: Literal["original", "seen"] = "original"
) -> Response:
    record = await _query(service, lambda engine: queries.get_decision(engine, decision_id))
    sha256 = record["photo_sha256"]
    data = None if sha256 is None else await asyncio.to_thread(service.photos.read, sha256, view == "seen")
    if data is None:
        raise errors.photo_not_kept()
    return Response(data, media_type=media_type(data), headers={"Cache-Control": "private, max-age=86400"})


@router.post(
    "/decisions/{decision_id}/review",
    response_model=ReviewRecord,
    status_code=201,
    summary="A reviewer's verdict: the true class; the bin follows from the policy",
    responses={
        **_ERRORS,
        **_NOT_FOUND,
        400: {"model": ErrorBody, "description": "The body is not JSON (code: bad_request)"},
        409: {"model": ErrorBody, "description": "Reviewed already, or another reviewer won (already_reviewed)"},
    },
)
async def review(
    service: ServiceDep, decision_id: DecisionId, verdict: ReviewRequest, key_name: ReviewerDep
) -> dict[str, Any]:
    reviewer_name = key_name or verdict.reviewer or "anonymous"
    return await record_review(service, decision_id, verdict.class_id, reviewer_name, verdict.corrects)
