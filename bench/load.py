"""Load generators: wrk for closed-loop throughput, and a raw HTTP/1.1 client on asyncio for
open-loop load (requests sent on a schedule, whatever the server's pace), loopback only, bounded in
count and time. The benchmarks and the robustness tests both use them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.server import Server, process_cpu_s

BOUNDARY = "garmentsorterbenchboundary"


def multipart_body(
    files: Sequence[tuple[str, str, bytes]], fields: Sequence[tuple[str, str]] = ()
) -> tuple[bytes, str]:
    """(body, content type) for multipart/form-data, built once and sent as raw bytes."""
    parts = []
    for name, value in fields:
        parts.append(f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for name, filename, data in files:
        head = (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        parts.append(head + data + b"\r\n")
    parts.append(f"--{BOUNDARY}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={BOUNDARY}"


def single_image_body() -> tuple[bytes, str]:
    """The benchmarks' single-image request: the first test image as a PNG, multipart."""
    from bench.photos import load_test_set, png_bytes

    images, _ = load_test_set()
    return multipart_body([("file", "item.png", png_bytes(images[0]))])


# --- wrk ----------------------------------------------------------------------------------------
def whole_s(seconds: float) -> int:
    return max(1, round(seconds))  # wrk takes whole seconds


def measure(server: Server, body: bytes, content_type: str, concurrency: int, duration_s: float) -> dict[str, Any]:
    """One wrk run at POST /classify, with the server's CPU per request."""
    cpu_before = process_cpu_s(server.process.pid)
    result = wrk(server.url + "/classify", body, content_type, concurrency, whole_s(duration_s))
    cpu_after = process_cpu_s(server.process.pid)
    row = asdict(result)
    if cpu_before is not None and cpu_after is not None and result.requests:
        row["server_cpu_ms_per_request"] = 1000 * (cpu_after - cpu_before) / result.requests
    return row


@dataclass
class LoadResult:
    concurrency: int
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    server_cpu_ms_per_request: float | None = None


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not match:
        raise ValueError(f"unparseable wrk duration {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def wrk(url: str, body: bytes, content_type: str, concurrency: int, duration_s: float, threads: int = 2) -> LoadResult:
    """POST the same body at fixed concurrency with wrk; parse throughput and latency percentiles."""
    if shutil.which("wrk") is None:
        raise FileNotFoundError("wrk not found: apt-get install wrk")
    with tempfile.TemporaryDirectory() as tmp:
        body_path = Path(tmp) / "body.bin"
        body_path.write_bytes(body)
        script = Path(tmp) / "post.lua"
        script.write_text(
            'wrk.method = "POST"\n'
            f'wrk.headers["Content-Type"] = "{content_type}"\n'
            f'local f = assert(io.open("{body_path}", "rb"))\n'
            'wrk.body = f:read("*all")\nf:close()\n'
        )
        command = [
            "wrk",
            f"-t{min(threads, concurrency)}",
            f"-c{concurrency}",
            f"-d{duration_s:g}s",
            "--latency",
            "--timeout",
            "10s",
            "-s",
            str(script),
            url,
        ]
        out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    percentiles = dict(re.findall(r"^\s+(50|99)(?:\.0+)?%\s+(\S+)\s*$", out, re.MULTILINE))
    total = re.search(r"(\d+) requests in", out)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if not (total and rate and "50" in percentiles and "99" in percentiles):
        raise RuntimeError(f"cannot parse wrk output:\n{out}")
    errors = int(non_2xx.group(1)) if non_2xx else 0
    if socket_errors:
        errors += sum(int(g) for g in socket_errors.groups())
    return LoadResult(
        concurrency=concurrency,
        requests_per_s=float(rate.group(1)),
        p50_ms=_ms(percentiles["50"]),
        p99_ms=_ms(percentiles["99"]),
        requests=int(total.group(1)),
        errors=errors,
    )


MAX_IDLE_S = 2.0  # open loop: keep-alive connections idle longer are retired, not reused


# --- a raw HTTP/1.1 client on asyncio -------------------------------------------------------------
def http_request(
    method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None, port: int = 0
) -> bytes:
    """The bytes of one request (Content-Length from the body unless headers give one)."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    merged = {"Content-Length": str(len(body)), **(headers or {})}
    lines += [f"{k}: {v}" for k, v in merged.items() if v is not None]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes
    latency_s: float

    def json(self) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(self.body)
        return document


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    status = int(status_line.split(" ", 2)[1])
    headers = {}
    for line in header_lines:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    body = await reader.readexactly(length) if length else b""
    return status, headers, body


@dataclass
class Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    @classmethod
    async def open(cls, port: int) -> Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def exchange(self, raw: bytes) -> RawResponse:
        started = time.perf_counter()
        self.writer.write(raw)
        status, headers, body = await read_response(self.reader)
        return RawResponse(status, headers, body, time.perf_counter() - started)

    def abort(self) -> None:
        """Drop the connection at once (RST), like a scanner losing power."""
        self.writer.transport.abort()


@dataclass
class OpenLoopResult:
    sent: int
    statuses: dict[int, int] = field(default_factory=dict)
    latencies_s: dict[int, list[float]] = field(default_factory=dict)
    retry_after: dict[int, set[str | None]] = field(default_factory=dict)
    codes: dict[int, dict[str, int]] = field(default_factory=dict)
    server_ms: list[float] = field(default_factory=list)  # 200s: preprocess + queue + inference
    samples: list[tuple[float, int, float]] = field(default_factory=list)  # (sent at, status, latency)
    failures: list[str] = field(default_factory=list)  # transport errors: nothing may be lost
    late_sends: int = 0  # sends more than 50 ms behind schedule (the generator could not keep up)
    connections: int = 0
    elapsed_s: float = 0.0

    def count(self, status: int) -> int:
        return self.statuses.get(status, 0)


async def open_loop(
    port: int,
    raw: bytes | Sequence[bytes],
    rate_per_s: float,
    duration_s: float,
    *,
    max_connections: int,
    timeout_s: float,
) -> OpenLoopResult:
    """Send requests at a fixed rate whatever the answers (open loop: a request never waits for
    an earlier one), each on an idle keep-alive connection or a new one; record every answer.
    `raw` is one request or several, sent in turn. At most rate x duration requests."""
    raws = [raw] if isinstance(raw, bytes) else list(raw)
    total = int(rate_per_s * duration_s)
    result = OpenLoopResult(sent=0)
    idle: list[tuple[Connection, float]] = []  # with the time it was last answered on
    in_use = 0
    loop = asyncio.get_running_loop()
    started = loop.time()
    tasks: set[asyncio.Task[None]] = set()

    def reusable() -> Connection | None:
        # A connection idle for long may be closed by the server's keep-alive timeout (5 s by
        # default) just as a request goes out on it: retire it first, as HTTP clients do.
        while idle:
            connection, last_used = idle.pop()
            if loop.time() - last_used < MAX_IDLE_S and not connection.reader.at_eof():
                return connection
            connection.writer.close()
        return None

    async def one(index: int, sent_at: float) -> None:
        nonlocal in_use
        connection = reusable()
        try:
            if connection is None:
                connection = await Connection.open(port)
                result.connections += 1
            response = await asyncio.wait_for(connection.exchange(raws[index % len(raws)]), timeout_s)
        except Exception as exc:
            result.failures.append(f"request {index}: {type(exc).__name__}: {exc}")
            if connection is not None:
                connection.abort()
            return
        finally:
            in_use -= 1
        status = response.status
        result.statuses[status] = result.statuses.get(status, 0) + 1
        result.latencies_s.setdefault(status, []).append(response.latency_s)
        result.samples.append((sent_at, status, response.latency_s))
        result.retry_after.setdefault(status, set()).add(response.headers.get("retry-after"))
        with contextlib.suppress(ValueError, KeyError, TypeError):
            answer = json.loads(response.body)
            if status == 200:
                result.server_ms.append(sum(answer["timings_ms"].values()))
            else:
                result.codes.setdefault(status, {}).setdefault(answer["code"], 0)
                result.codes[status][answer["code"]] += 1
        if response.headers.get("connection", "").lower() == "close":
            connection.abort()
        else:
            idle.append((connection, loop.time()))

    for index in range(total):
        due = started + index / rate_per_s
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        elif delay < -0.05:
            result.late_sends += 1
        while in_use >= max_connections:  # bounded: the oldest request times out after timeout_s
            await asyncio.sleep(0.001)
        in_use += 1  # counted here, not in the task: a burst of new tasks must not overshoot
        result.sent += 1
        task = loop.create_task(one(index, loop.time() - started))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(tasks, timeout=timeout_s + 5)
    result.elapsed_s = loop.time() - started
    for connection, _ in idle:
        connection.writer.close()
    return result


async def closed_loop(
    port: int, raw: bytes | Sequence[bytes], concurrency: int, duration_s: float
) -> tuple[int, float, dict[int, int]]:
    """`concurrency` keep-alive connections, each sending as soon as it is answered, for
    duration_s. Returns (answered, elapsed seconds, status counts)."""
    raws = [raw] if isinstance(raw, bytes) else list(raw)
    statuses: dict[int, int] = {}
    loop = asyncio.get_running_loop()
    stop_at = loop.time() + duration_s

    async def worker(offset: int) -> int:
        connection = await Connection.open(port)
        done = 0
        try:
            while loop.time() < stop_at:
                response = await asyncio.wait_for(connection.exchange(raws[(offset + done) % len(raws)]), 30)
                statuses[response.status] = statuses.get(response.status, 0) + 1
                done += 1
        finally:
            connection.writer.close()
        return done

    started = loop.time()
    counts = await asyncio.gather(*(worker(i * 7919) for i in range(concurrency)))
    return sum(counts), loop.time() - started, statuses
