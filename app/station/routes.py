"""GET /review: the station page; sign-in and sign-out; the item's photo; a verdict (form POST).

Authentication is the session cookie (``session.py``), never a key in a URL: with API keys on, a
reviewer or admin key signs in once per shift; with no keys configured the page is open and says
so. Every POST carries the session's CSRF token.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy.exc import SQLAlchemyError

from app import errors
from app.access import Role
from app.errors import ApiError
from app.records import queries
from app.records.photos import media_type
from app.service.reviewing import record_review
from app.service.service import Service
from app.station.session import COOKIE, MAX_AGE_S, Session, Sessions

HERE = Path(__file__).resolve().parent
STATIC_DIR = HERE / "static"
templates = Jinja2Templates(directory=HERE / "templates")  # autoescaped: every value is HTML-escaped
router = APIRouter(prefix="/review", include_in_schema=False)
OPEN_REVIEWER = "review-station"  # who reviewed, when the service runs without keys


def _service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


def _session(request: Request) -> tuple[Session, bool]:
    """The visitor's session, and whether it is new (its cookie must be set)."""
    sessions: Sessions = _service(request).sessions
    found = sessions.read(request.cookies.get(COOKIE))
    return (found, False) if found is not None else (sessions.new(), True)


def _with_cookie(response: Response, request: Request, session: Session) -> Response:
    response.set_cookie(
        COOKIE,
        _service(request).sessions.cookie(session),
        max_age=MAX_AGE_S,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/review",
    )
    return response


def _signed_in(service: Service, session: Session) -> bool:
    if not service.keyring.enabled:
        return True
    return session.role in (Role.REVIEWER, Role.ADMIN)


def _check_csrf(request: Request, session: Session, token: str | None) -> None:
    if not _service(request).sessions.csrf_ok(session, token):
        raise errors.csrf_failed()


@router.get("")
async def station(
    request: Request,
    audit: Annotated[bool, Query()] = False,
    last: Annotated[str | None, Query(max_length=36)] = None,
    notice: Annotated[str | None, Query(max_length=16)] = None,
) -> Response:
    service = _service(request)
    session, new = _session(request)
    csrf = service.sessions.csrf_token(session)
    if not _signed_in(service, session):
        page = templates.TemplateResponse(request, "signin.html", {"csrf": csrf, "error": None})
        return _with_cookie(page, request, session) if new else page
    engine = service.records_engine
    try:
        queue = await asyncio.to_thread(queries.review_queue, engine, audit=audit, limit=1)
        previous = await asyncio.to_thread(queries.get_decision, engine, last) if last else None
    except queries.DecisionNotFound:
        previous = None
    except SQLAlchemyError as exc:
        raise errors.records_unavailable(type(exc).__name__) from None
    oldest = queue.oldest_pending_at
    context: dict[str, Any] = {
        "csrf": csrf,
        "audit": audit,
        "item": queue.items[0] if queue.items else None,
        "pending": queue.pending,
        "oldest_age": _age(oldest),
        "classes": list(enumerate(service.loaded_policy.class_names)),
        "previous": previous["reviews"][-1] if previous and previous["reviews"] else None,
        "notice": notice,
        "open_mode": not service.keyring.enabled,
        "reviewer": session.name or OPEN_REVIEWER,
    }
    page = templates.TemplateResponse(request, "review.html", context)
    return _with_cookie(page, request, session) if new else page


def _age(then: dt.datetime | None) -> str | None:
    if then is None:
        return None
    seconds = max(0, int((dt.datetime.now(dt.UTC) - then).total_seconds()))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h"


@router.post("/sign-in")
async def sign_in(
    request: Request, key: Annotated[str, Form(max_length=512)], csrf: Annotated[str, Form(max_length=128)]
) -> Response:
    service = _service(request)
    session, _ = _session(request)
    _check_csrf(request, session, csrf)
    found = service.keyring.find(key)
    if found is None or not found.may(Role.REVIEWER):
        service.metrics.reject("unauthorized")
        page = templates.TemplateResponse(
            request,
            "signin.html",
            {"csrf": service.sessions.csrf_token(session), "error": "That key may not review."},
            status_code=401,
        )
        return page
    signed_in = service.sessions.new(found.name, found.role)  # a new id: no session fixation
    return _with_cookie(RedirectResponse("/review", status_code=303), request, signed_in)


@router.post("/sign-out")
async def sign_out(request: Request, csrf: Annotated[str, Form(max_length=128)]) -> Response:
    session, _ = _session(request)
    _check_csrf(request, session, csrf)
    return _with_cookie(RedirectResponse("/review", status_code=303), request, _service(request).sessions.new())


@router.get("/photo/{decision_id}")
async def photo(request: Request, decision_id: str, view: str = "original") -> Response:
    service = _service(request)
    session, _ = _session(request)
    if not _signed_in(service, session):
        raise errors.unauthorized()
    try:
        record = await asyncio.to_thread(queries.get_decision, service.records_engine, decision_id[:36])
    except queries.DecisionNotFound:
        raise errors.decision_not_found(decision_id[:36]) from None
    sha256 = record["photo_sha256"]
    data = None if sha256 is None else await asyncio.to_thread(service.photos.read, sha256, view == "seen")
    if data is None:
        raise errors.photo_not_kept()
    return Response(data, media_type=media_type(data))


@router.post("/{decision_id}/verdict")
async def verdict(
    request: Request,
    decision_id: str,
    class_id: Annotated[int, Form(ge=0, le=9)],
    csrf: Annotated[str, Form(max_length=128)],
    audit: Annotated[bool, Form()] = False,
) -> Response:
    service = _service(request)
    session, _ = _session(request)
    _check_csrf(request, session, csrf)
    if not _signed_in(service, session):
        raise errors.unauthorized()
    decision_id = decision_id[:36]
    mode = "&audit=true" if audit else ""
    try:
        await record_review(service, decision_id, class_id, session.name or OPEN_REVIEWER, None)
    except ApiError as exc:
        if exc.code != "already_reviewed":
            raise
        return RedirectResponse(f"/review?notice=taken{mode}", status_code=303)
    return RedirectResponse(f"/review?last={quote(decision_id, safe='')}{mode}", status_code=303)
