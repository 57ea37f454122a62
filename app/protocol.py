"""uvicorn's httptools protocol with a bound on the request head (request line plus headers).

httptools buffers a request head of any size: one client could send tens of megabytes of
headers per connection and the server would hold and parse them all (measured: a 50 MB header
took 4.7 s of CPU and was then answered 200). Here a head that grows past the limit is answered
431 with the API's JSON error body before the app sees it. The connection then lingers for a
moment, reading and dropping what the client still sends, so the client reads the 431 rather
than a reset; then it is closed. A request httptools cannot parse at all gets the same treatment
as a JSON 400 (code malformed_request) instead of uvicorn's plain-text one.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from http import HTTPStatus

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app import errors


def headers_too_large(limit: int) -> errors.ApiError:
    return errors.ApiError(431, "headers_too_large", f"The request line and headers exceed the limit of {limit} bytes.")


class _Refused(Exception):
    """Raised from a parser callback to stop parsing a refused request."""


LINGER_S = 1.0  # after a 431: how long the rest of the client's head is read and dropped


class BoundedHeadProtocol(HttpToolsProtocol):
    max_head_bytes = 32 * 1024
    on_reject: Callable[[str], None] | None = None

    def connection_made(self, transport) -> None:  # type: ignore[no-untyped-def]
        super().connection_made(transport)
        self._in_head = True
        self._head_bytes = 0
        self._refused = False

    def on_headers_complete(self) -> None:
        self._in_head = False
        # A head that arrived in one read is measured here (the request target plus every
        # header line); one that keeps streaming is cut off in data_received.
        if len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers) > self.max_head_bytes:
            self._refuse()
            raise _Refused  # stops the parser: the app never sees this request
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True  # a keep-alive connection's next request starts its head
        self._head_bytes = 0

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # lingering: dropped unparsed and unbuffered
        # uvicorn's own data_received, plus the head accounting. Counted per read, so what
        # httptools buffers stays below the limit plus one read.
        if self._in_head:
            self._head_bytes += len(data)
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self._refused:
                return
            msg = "Invalid HTTP request received."
            self.logger.warning(msg)
            self.send_400_response(msg)
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        if self._in_head and self._head_bytes > self.max_head_bytes:
            self._refuse()

    def send_400_response(self, msg: str) -> None:
        # uvicorn answers a request httptools cannot parse in plain text; the API answers JSON.
        self._refuse(errors.ApiError(400, "malformed_request", f"The HTTP request cannot be parsed: {msg}"))

    def _refuse(self, error: errors.ApiError | None = None) -> None:
        error = error or headers_too_large(self.max_head_bytes)
        body = json.dumps(error.body()).encode()
        head = (
            f"HTTP/1.1 {error.status} {HTTPStatus(error.status).phrase}\r\n"
            "content-type: application/json\r\n"
            f"content-length: {len(body)}\r\n"
            "connection: close\r\n\r\n"
        ).encode()
        self.transport.write(head + body)
        self._refused = True
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
