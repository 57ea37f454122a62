"""Everything the service asks of uvicorn beyond its documented options, in one module.

1. Bounds on what one connection may hold, through uvicorn's httptools protocol:
   - the request head's size: httptools buffers a head of any size (measured: a 50 MB header took
     4.7 s of CPU and was then answered 200); a head past the limit is answered 431 before the app
     sees it. A request httptools cannot parse gets a JSON 400 (malformed_request) instead of
     uvicorn's plain-text one.
   - time: uvicorn waits for a request head and a body forever (measured: 8,000 connections that
     sent half a head stayed open, +54 MB RSS and a file descriptor each, until the process ran
     out of descriptors and stopped accepting scanners). A head must arrive within
     ``header_timeout_s`` (408 request_timeout, or a silent close when not a byte came), and a
     body must average ``body_min_bytes_per_s`` once that grace is over (408 body_too_slow).
   - count: past ``max_connections`` a new connection is answered 503 too_many_connections and
     closed at once, so a flood of idle sockets cannot take the descriptors scanners need.
   Refusals are counted through ``on_reject`` (the code) and the open connections reported through
   ``on_connections``. After a refusal the connection lingers for a moment, reading and dropping
   what the client still sends, so the client reads the answer rather than a reset.

2. Ending the server when the service's drain is done (``ServerExit``), with the server object
   the CLI built (``build_server``), rather than reaching uvicorn through its signal handler.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING

import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app import errors
from app.logs import request_id_from

if TYPE_CHECKING:
    from app.config import Settings


def headers_too_large(limit: int) -> errors.ApiError:
    return errors.ApiError(431, "headers_too_large", f"The request line and headers exceed the limit of {limit} bytes.")


def request_timeout(timeout_s: float) -> errors.ApiError:
    return errors.ApiError(
        408, "request_timeout", f"The request line and headers did not arrive within {timeout_s:g} s."
    )


def body_too_slow(min_bytes_per_s: int) -> errors.ApiError:
    return errors.ApiError(
        408, "body_too_slow", f"The request body arrives slower than the minimum of {min_bytes_per_s} bytes/s."
    )


def too_many_connections(limit: int) -> errors.ApiError:
    return errors.ApiError(
        503,
        "too_many_connections",
        f"The server holds its limit of {limit} open connections; retry shortly.",
        {"Retry-After": "1"},
    )


@dataclass(frozen=True)
class ConnectionLimits:
    max_head_bytes: int = 32 * 1024
    header_timeout_s: float = 10.0
    body_min_bytes_per_s: int = 1024  # 0: no minimum
    max_connections: int = 2048

    @classmethod
    def from_settings(cls, settings: Settings) -> ConnectionLimits:
        return cls(
            max_head_bytes=settings.max_header_bytes,
            header_timeout_s=settings.header_timeout_s,
            body_min_bytes_per_s=settings.body_min_bytes_per_s,
            max_connections=settings.max_connections,
        )


class _Refused(Exception):
    """Raised from a parser callback to stop parsing a refused request."""


LINGER_S = 1.0  # after a refusal: how long the rest of the client's request is read and dropped
BODY_CHECK_S = 1.0  # how often a body's average rate is checked once its grace is over


class BoundedHeadProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, extended through the hooks it calls itself (connection_made,
    connection_lost, data_received, on_headers_complete, on_body, on_message_complete,
    send_400_response) and its public attributes (loop, transport, connections, cycle, flow); no
    private attribute of uvicorn is read or written. tests/app/server/test_uvicorn_adapter.py checks
    that the installed uvicorn still has these hooks and still calls them."""

    limits = ConnectionLimits()
    on_reject: Callable[[str], None] | None = None
    on_connections: Callable[[int], None] | None = None

    # uvicorn narrows asyncio.BaseProtocol's BaseTransport to Transport, and so must we (mypy: override).
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.in_head = True
        self.head_bytes = 0
        self.refused = False
        self.admitted = False  # this request's head is complete and handed to the app (its cycle exists)
        self.body_bytes = 0
        self.body_started_at = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.report_connections()
        if len(self.connections) > self.limits.max_connections:
            self.refuse(too_many_connections(self.limits.max_connections))
            return
        self.start_timer(self.limits.header_timeout_s, self.head_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self.stop_timer()
        super().connection_lost(exc)
        self.report_connections()

    def on_headers_complete(self) -> None:
        self.in_head = False
        self.stop_timer()
        # A head that arrived in one read is measured here (the request target plus every
        # header line); one that keeps streaming is cut off in data_received.
        if len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers) > self.limits.max_head_bytes:
            self.refuse()
            raise _Refused  # stops the parser: the app never sees this request
        super().on_headers_complete()
        self.admitted = True
        self.body_bytes = 0
        self.body_started_at = self.loop.time()

    def on_body(self, body: bytes) -> None:
        self.body_bytes += len(body)
        super().on_body(body)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.stop_timer()  # the body is in; the keep-alive timeout takes over once answered
        self.in_head = True  # a keep-alive connection's next request starts its head
        self.head_bytes = 0
        self.admitted = False

    def data_received(self, data: bytes) -> None:
        if self.refused:
            return  # lingering: dropped unparsed and unbuffered
        if self.in_head:
            # Counted per read, so what httptools buffers stays below the limit plus one read.
            self.head_bytes += len(data)
        super().data_received(data)
        if self.refused:
            return
        # A request that came whole in this read (the usual case) leaves no timer behind; a
        # kept-alive connection's partial next head, or a body still on its way, gets one.
        if self.in_head:
            if self.head_bytes > self.limits.max_head_bytes:
                self.refuse()
            elif self.head_bytes and self.timer is None:
                self.start_timer(self.limits.header_timeout_s, self.head_timed_out)
        elif self.timer is None and self.limits.body_min_bytes_per_s:
            grace_left_s = self.body_started_at + self.limits.header_timeout_s - self.loop.time()
            self.start_timer(max(grace_left_s, 0.0), self.check_body_rate)

    def send_400_response(self, msg: str) -> None:
        if self.refused:
            return  # the parser stopped on our own refusal (_Refused): answered already
        # uvicorn answers a request httptools cannot parse in plain text; the API answers JSON.
        self.refuse(errors.ApiError(400, "malformed_request", f"The HTTP request cannot be parsed: {msg}"))

    # --- time limits ------------------------------------------------------------------------
    def start_timer(self, delay_s: float, callback: Callable[[], None]) -> None:
        self.stop_timer()
        self.timer = self.loop.call_later(delay_s, callback)

    def stop_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def head_timed_out(self) -> None:
        self.timer = None
        if self.refused or not self.in_head:
            return
        if self.head_bytes == 0:
            # An idle connection that never sent a byte: nothing to answer, close it.
            self.count("request_timeout")
            self.transport.close()
            return
        self.refuse(request_timeout(self.limits.header_timeout_s), linger=False)

    def check_body_rate(self) -> None:
        self.timer = None
        if self.refused or self.in_head:
            return
        elapsed_s = self.loop.time() - self.body_started_at
        # Reading paused by uvicorn's flow control (the app is not reading yet) is not the client's doing.
        if not self.flow.read_paused and self.body_bytes < self.limits.body_min_bytes_per_s * elapsed_s:
            self.refuse(body_too_slow(self.limits.body_min_bytes_per_s), linger=False)
            return
        self.start_timer(BODY_CHECK_S, self.check_body_rate)

    # --- answering without the app ----------------------------------------------------------
    def refuse(self, error: errors.ApiError | None = None, *, linger: bool = True) -> None:
        """Answer ``error`` (unless the app has begun its own answer) and close the connection:
        after LINGER_S when the client may still be sending, at once when it is silent or slow
        (the app, if it holds this request, then sees the client gone)."""
        error = error or headers_too_large(self.limits.max_head_bytes)
        self.stop_timer()
        self.refused = True
        if not self.admitted or not self.cycle.response_started:
            request_id = request_id_from(None)
            body = json.dumps(errors.answer_body(error.code, error.detail, request_id)).encode()
            extra = "".join(f"{name}: {value}\r\n" for name, value in error.headers.items())
            head = (
                f"HTTP/1.1 {error.status} {HTTPStatus(error.status).phrase}\r\n"
                "content-type: application/json\r\n"
                f"content-length: {len(body)}\r\n"
                f"x-request-id: {request_id}\r\n"
                f"{extra}connection: close\r\n\r\n"
            ).encode()
            self.transport.write(head + body)
        if linger:
            self.loop.call_later(LINGER_S, self.transport.close)
        else:
            self.transport.close()
        self.count(error.code)

    def count(self, code: str) -> None:
        if self.on_reject is not None:
            self.on_reject(code)

    def report_connections(self) -> None:
        if self.on_connections is not None:
            self.on_connections(len(self.connections))


def bounded_protocol(
    limits: ConnectionLimits,
    on_reject: Callable[[str], None] | None,
    on_connections: Callable[[int], None] | None = None,
) -> type[HttpToolsProtocol]:
    """The protocol class for uvicorn.Config(http=...), holding this server's limits and hooks."""
    return type(
        "BoundedHeadProtocol",
        (BoundedHeadProtocol,),
        {
            "limits": limits,
            "on_reject": staticmethod(on_reject) if on_reject else None,
            "on_connections": staticmethod(on_connections) if on_connections else None,
        },
    )


class ServerExit:
    """Ends a uvicorn.Server from the drain: sets the flags its main loop polls (public attributes).

    SIGTERM is taken over by the service's drain, so uvicorn never records the signal and does not
    re-raise it at exit: the process exits 0 once the drain is done."""

    def __init__(self, server: uvicorn.Server):
        self.server = server

    def __call__(self, force: bool) -> None:
        self.server.should_exit = True
        if force:
            self.server.force_exit = True


def build_server(
    app: ASGIApp,
    *,
    host: str,
    port: int,
    limits: ConnectionLimits,
    on_reject: Callable[[str], None] | None,
    on_connections: Callable[[int], None] | None = None,
    log_level: str,
    keep_alive_s: int,
    backlog: int,
    shutdown_grace_s: float,
) -> uvicorn.Server:
    """One uvicorn worker with the bounded protocol."""
    config = uvicorn.Config(
        app,
        http=bounded_protocol(limits, on_reject, on_connections),
        host=host,
        port=port,
        workers=1,  # the batcher needs every request in one process
        log_level=log_level,
        log_config=None,  # uvicorn's lines go through the service's handler (text or JSON, with request ids)
        access_log=False,  # the service writes its own access line (SORTER_ACCESS_LOG), with request ids
        timeout_graceful_shutdown=int(shutdown_grace_s),
        timeout_keep_alive=keep_alive_s,
        backlog=backlog,
    )
    return uvicorn.Server(config)
