"""Pure ASGI middleware (no per-request task or body copy, unlike BaseHTTPMiddleware).

- every request: ``garment_sorter_requests_total`` and ``..._request_duration_seconds``, a request
  id (the caller's ``X-Request-ID`` or a new one) in every log line, the answer's header and error
  bodies, and with ``SORTER_ACCESS_LOG`` one access line (app.logs.log_access);
- an unexpected exception is answered 500 ``internal_error`` here, inside the request's context, so
  its log line and answer carry the request id (Starlette's own handler runs outside this middleware);
- work routes (POST /classify, /classify/batch): refused with 503 while draining, counted as
  in flight for the drain, and held to their body limit (Content-Length up front, streamed bytes
  as they arrive), so an oversized upload is never buffered.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import errors
from app.errors import ApiError
from app.logs import REQUEST_ID, REQUEST_NOTES, log_access, request_id_from
from app.metrics import route_label
from app.service.service import Service

log = logging.getLogger(__name__)


async def send_error(send: Send, error: ApiError) -> None:
    body = json.dumps(error.answer_body()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in error.headers.items()]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class ServiceMiddleware:
    def __init__(self, app: ASGIApp, service: Service, body_limits: dict[str, int]):
        self.app = app
        self.service = service
        self.body_limits = body_limits
        self.access_log = service.settings.access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        started_answer = False
        request_id = request_id_from(_header(scope, b"x-request-id"))
        token = REQUEST_ID.set(request_id)  # every log line of this request carries it
        notes: dict[str, Any] = {}
        notes_token = REQUEST_NOTES.set(notes)
        echoed = (b"x-request-id", request_id.encode())

        async def send_observed(message: Message) -> None:
            nonlocal status, started_answer
            if message["type"] == "http.response.start":
                status = message["status"]
                started_answer = True
                message["headers"] = [*message.get("headers", []), echoed]
            await send(message)

        path = scope["path"]
        limit = self.body_limits.get(path) if scope["method"] == "POST" else None
        try:
            if limit is None:
                await self.app(scope, receive, send_observed)
            else:
                await self._work(scope, receive, send_observed, limit)
        except Exception as exc:
            log.exception("unhandled error", exc_info=exc)
            if started_answer:
                raise  # half an answer is on the wire: only closing the connection is left
            await send_error(send_observed, ApiError(500, "internal_error", "Internal server error."))
        finally:
            duration_s = time.perf_counter() - started
            route = route_label(path)
            self.service.metrics.observe_request(route, status, duration_s)
            if self.access_log:
                log_access(scope["method"], route, status, duration_s, notes)
            REQUEST_NOTES.reset(notes_token)
            REQUEST_ID.reset(token)

    async def _work(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        service = self.service
        if service.lifecycle.shutting_down:
            service.count_rejection("draining")
            await send_error(send, errors.draining())
            return
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            service.count_rejection("body_too_large")
            await send_error(send, errors.body_too_large(limit))
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise errors.body_too_large(limit)
            return message

        service.lifecycle.request_started()
        try:
            await self.app(scope, limited_receive, send)
        finally:
            service.lifecycle.request_finished()


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def _content_length(scope: Scope) -> int | None:
    value = _header(scope, b"content-length")
    try:
        return None if value is None else int(value)
    except ValueError:
        return None
