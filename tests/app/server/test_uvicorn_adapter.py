"""The one module that leans on uvicorn beyond its documented options. If an upgrade of uvicorn
moves the hooks it extends, these tests fail by name instead of the 431 limit, the time and
connection limits or the drain silently breaking. Real sockets against a real server in a thread."""

from __future__ import annotations

import contextlib
import http.client
import inspect
import json
import resource
import selectors
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import uvicorn
from service_helpers import wait_until
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from app.config import load_settings
from app.main import create_app
from app.server.uvicorn_adapter import BoundedHeadProtocol, ConnectionLimits, ServerExit, build_server
from bench.server import free_port

MAX_HEAD_BYTES = 4096


def test_the_protocol_hooks_we_extend_still_exist_with_the_same_parameters():
    hooks = {
        "connection_made": ["self", "transport"],
        "connection_lost": ["self", "exc"],
        "data_received": ["self", "data"],
        "on_headers_complete": ["self"],
        "on_body": ["self", "body"],
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
    # The public attributes we read: the server's connection set, this connection's request cycle
    # (created with the head) and the flow control's read state.
    assert "self.connections.add(self)" in inspect.getsource(HttpToolsProtocol.connection_made)
    assert "self.connections.discard(self)" in inspect.getsource(HttpToolsProtocol.connection_lost)
    assert "self.cycle = RequestResponseCycle(" in inspect.getsource(HttpToolsProtocol.on_headers_complete)
    assert "self.read_paused" in inspect.getsource(FlowControl.__init__)
    assert "self.response_started" in inspect.getsource(RequestResponseCycle.__init__)
    assert issubclass(BoundedHeadProtocol, HttpToolsProtocol)


def test_the_server_exits_on_the_flags_its_loop_polls():
    server = uvicorn.Server(uvicorn.Config(create_app(load_settings(model_backend="null"))))
    assert (server.should_exit, server.force_exit) == (False, False)
    ServerExit(server)(force=False)
    assert (server.should_exit, server.force_exit) == (True, False)
    ServerExit(server)(force=True)
    assert (server.should_exit, server.force_exit) == (True, True)


@dataclass
class Running:
    port: int
    rejected: list[str]
    server: uvicorn.Server
    open_connections: list[int] = field(default_factory=list)


@contextlib.contextmanager
def running(limits: ConnectionLimits) -> Iterator[Running]:
    """The null-model service behind build_server, in a thread."""
    port = free_port()
    app = create_app(load_settings(model_backend="null"))
    rejected: list[str] = []
    reported: list[int] = []
    server = build_server(
        app,
        host="127.0.0.1",
        port=port,
        limits=limits,
        on_reject=rejected.append,
        on_connections=reported.append,
        log_level="warning",
        keep_alive_s=5,
        backlog=4096,
        shutdown_grace_s=1,
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started and app.state.service.ready_for_traffic, timeout_s=60)
    yield Running(port, rejected, server, reported)
    server.should_exit = True
    thread.join(10)


HEADER_TIMEOUT_S = 0.5
MIN_BODY_RATE = 1000  # bytes/s


@pytest.fixture(scope="module")
def bounded_server() -> Iterator[tuple[int, list[str], uvicorn.Server]]:
    limits = ConnectionLimits(
        max_head_bytes=MAX_HEAD_BYTES, header_timeout_s=HEADER_TIMEOUT_S, body_min_bytes_per_s=MIN_BODY_RATE
    )
    with running(limits) as server:
        yield server.port, server.rejected, server.server


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
        "request_id": headers["x-request-id"],
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


# --- time and connection limits -------------------------------------------------------------------
def read_answer(sock: socket.socket) -> tuple[int, dict[str, str], dict]:
    response = http.client.HTTPResponse(sock)
    response.begin()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, json.loads(response.read())


def test_a_head_that_stops_halfway_is_answered_408_and_closed(bounded_server):
    port, rejected, _ = bounded_server
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Half: ")
        status, headers, body = read_answer(sock)
        assert sock.recv(1) == b""  # closed
    assert (status, headers["connection"]) == (408, "close")
    assert body == {
        "detail": f"The request line and headers did not arrive within {HEADER_TIMEOUT_S:g} s.",
        "code": "request_timeout",
        "request_id": headers["x-request-id"],
    }
    assert rejected[-1] == "request_timeout"


def test_a_connection_that_sends_nothing_is_closed_without_an_answer(bounded_server):
    port, rejected, _ = bounded_server
    before = rejected.count("request_timeout")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        assert sock.recv(1024) == b""
    assert rejected.count("request_timeout") == before + 1


def test_a_kept_alive_connection_s_next_head_has_the_same_deadline(bounded_server):
    port, _, _ = bounded_server
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_answer(sock)[0] == 200
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHo")
        status, _, body = read_answer(sock)
    assert (status, body["code"]) == (408, "request_timeout")


def post_head(content_length: int) -> bytes:
    """A whole POST /classify head announcing a PNG body of ``content_length`` bytes."""
    head = f"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: {content_length}\r\n\r\n"
    return head.encode()


def test_a_body_trickled_a_byte_a_second_is_answered_408_and_closed(bounded_server):
    port, rejected, _ = bounded_server
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(post_head(5000))
        started = time.monotonic()
        sock.settimeout(1.0)
        sent = 0
        while True:  # one byte a second until the server answers
            sock.sendall(b"\x89")
            sent += 1
            try:
                if sock.recv(1, socket.MSG_PEEK):
                    break
            except TimeoutError:
                continue
        sock.settimeout(10)
        status, headers, body = read_answer(sock)
    elapsed_s = time.monotonic() - started
    assert (status, headers["connection"]) == (408, "close")
    assert body == {
        "detail": f"The request body arrives slower than the minimum of {MIN_BODY_RATE} bytes/s.",
        "code": "body_too_slow",
        "request_id": headers["x-request-id"],
    }
    # Judged once the grace (the header timeout) is over, not before (asyncio may run a timer up to
    # its clock's resolution early), and within a check later.
    assert HEADER_TIMEOUT_S - 0.01 <= elapsed_s < HEADER_TIMEOUT_S + 3, elapsed_s
    assert sent <= 4 and rejected[-1] == "body_too_slow"


def test_a_body_at_a_fair_rate_is_read_however_long_it_takes(bounded_server):
    port, _, _ = bounded_server
    body = b"x" * 3000  # 2,000 bytes/s over 1.5 s: above the minimum rate, past the grace
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(post_head(len(body)))
        for offset in range(0, len(body), 200):
            sock.sendall(body[offset : offset + 200])
            time.sleep(0.1)
        status, _, answer = read_answer(sock)
    assert (status, answer["code"]) == (415, "not_an_image")  # read whole and judged by the app


def raise_descriptor_limit(wanted: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def test_thousands_of_half_open_heads_are_all_closed_while_a_scanner_is_served():
    # Each connection costs a descriptor here and one in the server (the same process).
    count = min(3000, (raise_descriptor_limit(8000) - 200) // 2)
    assert count >= 1000
    header_timeout_s = 5.0
    with running(ConnectionLimits(header_timeout_s=header_timeout_s, max_connections=10_000)) as server:
        sockets = []
        try:
            for _ in range(count):
                sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
                sock.sendall(b"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Le")
                sockets.append(sock)
            assert_served_and_then_closed(sockets, server, header_timeout_s)
        finally:
            for sock in sockets:
                sock.close()


def assert_served_and_then_closed(sockets: list[socket.socket], server: Running, header_timeout_s: float) -> None:
    # A scanner's request meanwhile: answered, not queued behind the stalled heads.
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as scanner:
        scanner.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_answer(scanner)[0] == 200
    statuses = []
    with selectors.DefaultSelector() as selector:
        for sock in sockets:
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ)
        deadline = time.monotonic() + header_timeout_s + 20
        while selector.get_map() and time.monotonic() < deadline:
            for key, _ in selector.select(timeout=1):
                sock = key.fileobj
                selector.unregister(sock)
                sock.setblocking(True)
                statuses.append(read_answer(sock)[0])
    assert statuses == [408] * len(sockets)
    assert server.rejected == ["request_timeout"] * len(sockets)
    wait_until(lambda: server.open_connections[-1:] == [0], timeout_s=10)


def test_connections_past_the_cap_are_answered_503_and_the_rest_still_served():
    cap = 40
    with running(ConnectionLimits(header_timeout_s=60, max_connections=cap)) as server:
        idle = [socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(cap)]
        try:
            wait_until(lambda: server.open_connections[-1:] == [cap], timeout_s=10)
            status, headers, body = exchange(server.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert (status, headers["retry-after"], headers["connection"]) == (503, "1", "close")
            assert body and json.loads(body) == {
                "detail": f"The server holds its limit of {cap} open connections; retry shortly.",
                "code": "too_many_connections",
                "request_id": headers["x-request-id"],
            }
            assert server.rejected == ["too_many_connections"]
        finally:
            for sock in idle[:5]:
                sock.close()
        try:
            wait_until(lambda: server.open_connections[-1:] == [cap - 5], timeout_s=10)
            assert exchange(server.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")[0] == 200
        finally:
            for sock in idle[5:]:
                sock.close()
