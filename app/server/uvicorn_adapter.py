"""Everything the service asks of uvicorn beyond its documented options, in one module.

1. A bound on the request head (request line plus headers), through uvicorn's httptools protocol.

httptools buffers a request head of any size: one client could send tens of megabytes of
headers per connection and the server would hold and parse them all (measured: a 50 MB header
took 4.7 s of CPU and was then answered 200). Here a head that grows past the limit is answered
431 with the API's JSON error body before the app sees it. The connection then lingers for a
moment, reading and dropping what the client still sends, so the client reads the 431 rather
than a reset; then it is closed. A request httptools cannot parse at all gets the same treatment
as a JSON 400 (code malformed_request) instead of uvicorn's plain-text one.

2. Ending the server when the service's drain is done (``ServerExit``), with the server object
   the CLI built (``build_server``), rather than reaching uvicorn through its signal handler.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from http import HTTPStatus

import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app import errors


def headers_too_large(limit: int) -> errors.ApiError:
    return errors.ApiError(431, "headers_too_large", f"The request line and headers exceed the limit of {limit} bytes.")


class _Refused(Exception):
    """Raised from a parser callback to stop parsing a refused request."""


LINGER_S = 1.0  # after a 431: how long the rest of the client's head is read and dropped


class BoundedHeadProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, extended through the hooks it calls itself (connection_made,
    data_received, on_headers_complete, on_message_complete, send_400_response); no private
    attribute of uvicorn is read or written. tests/app/server/test_uvicorn_adapter.py checks that
    the installed uvicorn still has these hooks and still calls them."""

    max_head_bytes = 32 * 1024
    on_reject: Callable[[str], None] | None = None

    # uvicorn narrows asyncio.BaseProtocol's BaseTransport to Transport, and so must we (mypy: override).
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.in_head = True
        self.head_bytes = 0
        self.refused = False

    def on_headers_complete(self) -> None:
        self.in_head = False
        # A head that arrived in one read is measured here (the request target plus every
        # header line); one that keeps streaming is cut off in data_received.
        if len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers) > self.max_head_bytes:
            self.refuse()
            raise _Refused  # stops the parser: the app never sees this request
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.in_head = True  # a keep-alive connection's next request starts its head
        self.head_bytes = 0

    def data_received(self, data: bytes) -> None:
        if self.refused:
            return  # lingering: dropped unparsed and unbuffered
        # Counted per read, so what httptools buffers stays below the limit plus one read.
        if self.in_head:
            self.head_bytes += len(data)
        super().data_received(data)
        if not self.refused and self.in_head and self.head_bytes > self.max_head_bytes:
            self.refuse()

    def send_400_response(self, msg: str) -> None:
        if self.refused:
            return  # the parser stopped on our own refusal (_Refused): answered already
        # uvicorn answers a request httptools cannot parse in plain text; the API answers JSON.
        self.refuse(errors.ApiError(400, "malformed_request", f"The HTTP request cannot be parsed: {msg}"))

    def refuse(self, error: errors.ApiError | None = None) -> None:
        error = error or headers_too_large(self.max_head_bytes)
        body = json.dumps(error.body()).encode()
        head = (
            f"HTTP/1.1 {error.status} {HTTPStatus(error.status).phrase}\r\n"
            "content-type: application/json\r\n"
            f"content-length: {len(body)}\r\n"
            "connection: close\r\n\r\n"
        ).encode()
        self.transport.write(head + body)
        self.refused = True
        asyncio.get_running_loop().call_later(LINGER_S, self.transport.close)
        if self.on_reject is not None:
            self.on_reject(error.code)


def bounded_head_protocol(max_head_bytes: int, on_reject: Callable[[str], None] | None) -> type[HttpToolsProtocol]:
    """The protocol class for uvicorn.Config(http=...), holding this server's limit."""
    return type(
        "BoundedHeadProtocol",
        (BoundedHeadProtocol,),
        {"max_head_bytes": max_head_bytes, "on_reject": staticmethod(on_reject) if on_reject else None},
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
    max_head_bytes: int,
    on_reject: Callable[[str], None] | None,
    log_level: str,
    access_log: bool,
    keep_alive_s: int,
    backlog: int,
    shutdown_grace_s: float,
) -> uvicorn.Server:
    """One uvicorn worker with the bounded-head protocol."""
    config = uvicorn.Config(
        app,
        http=bounded_head_protocol(max_head_bytes, on_reject),
        host=host,
        port=port,
        workers=1,  # the batcher needs every request in one process
        log_level=log_level,
        log_config=None,  # uvicorn's lines go through the service's handler (text or JSON, with request ids)
        access_log=access_log,
        timeout_graceful_shutdown=int(shutdown_grace_s),
        timeout_keep_alive=keep_alive_s,
        backlog=backlog,
    )
    return uvicorn.Server(config)
