"""Pure ASGI middleware (no per-request task or body copy, unlike BaseHTTPMiddleware).

- every request: ``garment_sorter_requests_total`` and ``..._request_duration_seconds``, and a
  request id (the caller's ``X-Request-ID`` or a new one) in every log line and the answer's header;
- work routes (POST /classify, /classify/batch): refused with 503 while draining, counted as
  in flight for the drain, and held to their body limit (Content-Length up front, streamed bytes
  as they arrive), so an oversized upload is never buffered.
"""

from __future__ import annotations

import json
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import errors
from app.errors import ApiError
from app.logs import REQUEST_ID, request_id_from
from app.metrics import route_label
from app.service.service import Service


async def send_error(send: Send, error: ApiError) -> None:
    body = json.dumps(error.body()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in error.headers.items()]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class ServiceMiddleware:
    def __init__(self, app: ASGIApp, service: Service, body_limits: dict[str, int]):
        self.app = app
        self.service = service
        self.body_limits = body_limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # if the app raises before answering, the server error handler answers 500
        request_id = request_id_from(_header(scope, b"x-request-id"))
        token = REQUEST_ID.set(request_id)  # every log line of this request carries it
        echoed = (b"x-request-id", request_id.encode())

        async def send_observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), echoed]
            await send(message)

        path = scope["path"]
        limit = self.body_limits.get(path) if scope["method"] == "POST" else None
        try:
            if limit is None:
                await self.app(scope, receive, send_observed)
            else:
                await self._work(scope, receive, send_observed, limit)
        finally:
            self.service.metrics.observe_request(route_label(path), status, time.perf_counter() - started)
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
