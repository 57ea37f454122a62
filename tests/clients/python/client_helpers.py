"""Shared pieces of the client tests: keys, a recording transport, and a scripted HTTP server for the
answers a healthy service does not give on demand (a 503 with Retry-After, a 500, a stall)."""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[3]
MODEL_DIR = Path(os.environ.get("SORTER_MODEL_DIR", REPO / "models" / "fashion-cnn"))
SCANNER_KEY = "client-tests-scanner-key-0123456789"
REVIEWER_KEY = "client-tests-reviewer-key-0123456789"
SORTER_API_KEYS = f"scanner-1:scanner:{SCANNER_KEY},reviewer-1:reviewer:{REVIEWER_KEY}"


@dataclass(frozen=True)
class Photo:
    path: Path
    label: str  # the dataset's label


class Recording(httpx.HTTPTransport):
    """httpx's own transport that keeps every answer's body as it came over the wire."""

    def __init__(self) -> None:
        super().__init__()
        self.bodies: list[bytes] = []
        self.headers: list[httpx.Headers] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        response.read()
        self.bodies.append(response.content)
        self.headers.append(response.headers)
        return response


# --- a scripted server --------------------------------------------------------------------------
@dataclass(frozen=True)
class Scripted:
    status: int
    body: Any = None  # a dict is sent as JSON; bytes as they are
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0  # before answering


@dataclass(frozen=True)
class Received:
    at: float  # time.monotonic() when the request's head arrived
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes


class StubServer:
    """A real HTTP/1.1 server on a free loopback port: it answers the n-th request with the n-th
    scripted answer (the last one repeats) and keeps every request it got."""

    def __init__(self, *answers: Scripted) -> None:
        self.answers = list(answers)
        self.received: list[Received] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                at = time.monotonic()
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                path = self.path
                with stub.lock:
                    stub.received.append(Received(at, path, {k.lower(): v for k, v in self.headers.items()}, body))
                    answer = stub.answers[min(len(stub.received), len(stub.answers)) - 1]
                time.sleep(answer.delay_s)
                data = json.dumps(answer.body).encode() if isinstance(answer.body, dict) else answer.body or b""
                self.send_response(answer.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a client that gave up on a stalled answer: the stub's write fails, as it should

        self.lock = threading.Lock()
        self.server = Server(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> StubServer:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)
