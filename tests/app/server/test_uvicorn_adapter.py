"""The one module that leans on uvicorn beyond its documented options. If an upgrade of uvicorn
moves the hooks it extends, these tests fail by name instead of the 431 limit or the drain
silently breaking."""

from __future__ import annotations

import http.client
import inspect
import json
import socket
import threading
from collections.abc import Iterator

import pytest
import uvicorn
from service_helpers import wait_until
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.config import load_settings
from app.main import create_app
from app.server.uvicorn_adapter import BoundedHeadProtocol, ServerExit, build_server
from bench.server import free_port

MAX_HEAD_BYTES = 4096


def test_the_protocol_hooks_we_extend_still_exist_with_the_same_parameters():
    hooks = {
        "connection_made": ["self", "transport"],
        "data_received": ["self", "data"],
        "on_headers_complete": ["self"],
        "on_message_complete": ["self"],
        "send_400_response": ["self", "msg"],
    }
    for name, parameters in hooks.items():
        assert list(inspect.signature(getattr(HttpToolsProtocol, name)).parameters) == parameters, name
    # An unparsable request (our own refusal included) still reaches send_400_response.
    assert "self.send_400_response(" in inspect.getsource(HttpToolsProtocol.data_received)
    # The parser callbacks fill the request target and headers we measure.
    assert "self.url" in inspect.getsource(HttpToolsProtocol.on_url)
    assert "self.headers" in inspect.getsource(HttpToolsProtocol.on_header)
    assert issubclass(BoundedHeadProtocol, HttpToolsProtocol)


def test_the_server_exits_on_the_flags_its_loop_polls():
    server = uvicorn.Server(uvicorn.Config(create_app(load_settings(model_backend="null"))))
    assert (server.should_exit, server.force_exit) == (False, False)
    ServerExit(server)(force=False)
    assert (server.should_exit, server.force_exit) == (True, False)
    ServerExit(server)(force=True)
    assert (server.should_exit, server.force_exit) == (True, True)


@pytest.fixture(scope="module")
def bounded_server() -> Iterator[tuple[int, list[str], uvicorn.Server]]:
    """The null-model service behind build_server, in a thread, with a small head limit."""
    rejected: list[str] = []
    port = free_port()
    app = create_app(load_settings(model_backend="null"))
    server = build_server(
        app,
        host="127.0.0.1",
        port=port,
        max_head_bytes=MAX_HEAD_BYTES,
        on_reject=rejected.append,
        log_level="warning",
        access_log=False,
        keep_alive_s=5,
        backlog=64,
        shutdown_grace_s=1,
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started and app.state.service.ready_for_traffic, timeout_s=60)
    yield port, rejected, server
    server.should_exit = True
    thread.join(10)


def exchange(port: int, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes on a fresh connection; read the one answer with http.client's parser."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(raw)
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()


def test_a_head_over_the_limit_is_answered_431_in_json_and_counted(bounded_server):
    port, rejected, _ = bounded_server
    raw = f"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Junk: {'j' * MAX_HEAD_BYTES}\r\n\r\n".encode()
    status, headers, body = exchange(port, raw)
    assert status == 431 and headers["connection"] == "close"
    assert json.loads(body) == {
        "detail": f"The request line and headers exceed the limit of {MAX_HEAD_BYTES} bytes.",
        "code": "headers_too_large",
    }
    assert rejected[-1] == "headers_too_large"


def test_an_unparsable_request_is_answered_400_in_json(bounded_server):
    port, rejected, _ = bounded_server
    status, _, body = exchange(port, b"NOT HTTP AT ALL\r\n\r\n")
    assert status == 400
    answer = json.loads(body)
    assert answer["code"] == "malformed_request" and answer["detail"].startswith("The HTTP request cannot be parsed")
    assert rejected[-1] == "malformed_request"


def test_a_head_under_the_limit_is_served(bounded_server):
    port, _, _ = bounded_server
    raw = f"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: {'p' * (MAX_HEAD_BYTES // 2)}\r\n\r\n".encode()
    status, _, body = exchange(port, raw)
    assert (status, json.loads(body)) == (200, {"status": "ok"})
