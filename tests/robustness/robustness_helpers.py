"""Shared pieces of the robustness suite: real servers in subprocesses, a raw HTTP/1.1 client for
load and disconnects, Prometheus scraping, process memory, and the fault-injecting test model.

Everything talks to 127.0.0.1 only, and every loop is bounded in count and time.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from app import bench

REPO = Path(__file__).resolve().parents[2]
MODEL_DIR = Path(os.environ.get("SORTER_MODEL_DIR", REPO / "models" / "fashion-cnn"))
START_TIMEOUT_S = 120.0
API_KEY = "robustness-suite-key-0123456789"  # the shared server runs keyed, as production may
KEYED = {"SORTER_API_KEYS": API_KEY, "SORTER_METRICS_REQUIRE_KEY": "true"}
CLASS_NAMES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip


# --- servers ------------------------------------------------------------------------------------
def _get(url: str, timeout_s: float = 2.0) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"X-API-Key": API_KEY})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def launch(env: dict[str, str], wait_for: str = "/readyz", timeout_s: float = START_TIMEOUT_S) -> bench.Server:
    """`garment-sorter serve` on a free loopback port; returns once `wait_for` answers 200."""
    port = bench.free_port()
    log_file = tempfile.NamedTemporaryFile(prefix="robustness-", suffix=".log", delete=False)
    process = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **env},
        stdout=log_file,
        stderr=subprocess.STDOUT,
        cwd=REPO,
    )
    server = bench.Server(process, f"http://127.0.0.1:{port}", Path(log_file.name))
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{server.log()[-3000:]}")
        with contextlib.suppress(OSError):
            if _get(server.url + wait_for, 1.0)[0] == 200:
                return server
        time.sleep(0.1)
    bench.stop_server(server)
    raise TimeoutError(f"{wait_for} not 200 within {timeout_s} s:\n{server.log()[-3000:]}")


@contextlib.contextmanager
def serving(env: dict[str, str], wait_for: str = "/readyz") -> Iterator[bench.Server]:
    server = launch(env, wait_for)
    try:
        yield server
    finally:
        code = bench.stop_server(server, timeout_s=30)
        log = server.log()
        server.log_path.unlink(missing_ok=True)
        # A clean SIGTERM drain exits 0; anything else (a crash under test) must not pass unseen.
        assert code == 0, f"server exited with {code}:\n{log[-3000:]}"


def port_of(server: bench.Server) -> int:
    return int(server.url.rsplit(":", 1)[1])


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def threads_of(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


# --- metrics ------------------------------------------------------------------------------------
def scrape(server: bench.Server) -> dict[tuple[str, frozenset], float]:
    """Every sample of /metrics keyed by (sample name, labels)."""
    status, body = _get(server.url + "/metrics", 5.0)
    assert status == 200, body
    samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def metric(samples: dict, name: str, **labels: str) -> float:
    """One sample's value; 0 for a labelled counter child that has not been created yet."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def ready_status(server: bench.Server) -> tuple[int, dict]:
    status, body = _get(server.url + "/readyz")
    return status, json.loads(body)


# --- images -------------------------------------------------------------------------------------
def png_l(pixels: np.ndarray) -> bytes:
    """A 28x28 uint8 array as a grayscale PNG (passes through preprocessing bit-exact when it has
    the dataset's dark border)."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8), "L").save(buffer, "PNG")
    return buffer.getvalue()


# --- the fault-injecting test model -------------------------------------------------------------
POISON = 77  # an image whose first row is all POISON makes its whole batch raise
SLOW = 99  # an image whose first row is all SLOW holds its batch (second row's first pixel x 10 ms)
FAILURE_MESSAGE = "injected inference failure: poisoned image in batch"


def fault_class(pixels: np.ndarray) -> int:
    """The class the fault model answers for an image: the pixel sum modulo 10."""
    return int(np.asarray(pixels, dtype=np.int64).sum() % 10)


def clean_image(seed: int) -> np.ndarray:
    """A dataset-like 28x28 image (dark border, bright blob): passes through preprocessing unchanged."""
    rng = np.random.default_rng(seed)
    pixels = np.zeros((28, 28), np.uint8)
    pixels[6:22, 6:22] = rng.integers(60, 256, (16, 16), dtype=np.uint8)
    return pixels


def marked_image(marker: int, hold_ms: int = 0, seed: int = 0) -> np.ndarray:
    pixels = clean_image(seed)
    pixels[0, :] = marker
    pixels[1, 0] = hold_ms // 10
    return pixels


def build_fault_model(root: Path, *, always_fail: bool = False) -> Path:
    """A SavedModel honouring the service's contract whose answers are checkable (class = pixel
    sum mod 10, confidence ~0.998) and which fails or stalls on marked images. Returns the model
    directory (holding version 1)."""
    import tensorflow as tf

    class FaultModel(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 28, 28, 1], tf.uint8, name="images")])
        def serve(self, images):
            pixels = tf.cast(images[..., 0], tf.int32)
            first_row = pixels[:, 0, :]
            poisoned = tf.reduce_any(tf.reduce_all(tf.equal(first_row, POISON), axis=1))
            healthy = tf.less(tf.size(images), 0) if always_fail else tf.logical_not(poisoned)
            check = tf.debugging.Assert(healthy, [FAILURE_MESSAGE])
            slow_rows = tf.reduce_all(tf.equal(first_row, SLOW), axis=1)
            holds = tf.where(slow_rows, tf.cast(pixels[:, 1, 0], tf.float64) * 0.01, 0.0)
            hold_s = tf.reduce_max(tf.concat([[0.0], holds], axis=0))  # 0 for an empty batch
            with tf.control_dependencies([check]):
                started = tf.timestamp()
            spins = tf.while_loop(lambda i: tf.timestamp() - started < hold_s, lambda i: i + 1, [tf.constant(0)])[0]
            classes = tf.math.floormod(tf.reduce_sum(pixels, axis=[1, 2]), 10)
            logits = tf.one_hot(classes, 10, on_value=8.0, off_value=0.0) + 0.0 * tf.cast(spins, tf.float32)
            return {"probabilities": tf.nn.softmax(logits), "logits": logits}

    module = FaultModel()
    version_dir = root / "1"
    tf.saved_model.save(module, str(version_dir), signatures={"serving_default": module.serve})
    metadata = {
        "name": "fault-model" if not always_fail else "always-failing-model",
        "version": 1,
        "architecture": "test double: class = pixel sum mod 10",
        "class_names": list(CLASS_NAMES),
        "review_threshold": 0.5,
    }
    (version_dir / "metadata.json").write_text(json.dumps(metadata))
    return root


# --- a raw HTTP/1.1 client (load, disconnects, hostile framing) ---------------------------------
def http_request(
    method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None, port: int = 0
) -> bytes:
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

    def json(self) -> dict:
        return json.loads(self.body)


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
        transport = self.writer.transport
        transport.abort()


@dataclass
class OpenLoopResult:
    sent: int
    statuses: dict[int, int] = field(default_factory=dict)
    latencies_s: dict[int, list[float]] = field(default_factory=dict)
    retry_after: dict[int, set[str | None]] = field(default_factory=dict)
    codes: dict[int, dict[str, int]] = field(default_factory=dict)
    server_ms: list[float] = field(default_factory=list)  # 200s: preprocess + queue + inference
    failures: list[str] = field(default_factory=list)  # transport errors: nothing may be lost
    late_sends: int = 0  # sends more than 50 ms behind schedule (the generator could not keep up)
    connections: int = 0
    elapsed_s: float = 0.0

    def count(self, status: int) -> int:
        return self.statuses.get(status, 0)


async def open_loop(
    port: int, raw: bytes, rate_per_s: float, duration_s: float, *, max_connections: int, timeout_s: float
) -> OpenLoopResult:
    """Send `raw` at a fixed rate whatever the answers (open loop: requests do not wait for earlier
    ones), each on an idle keep-alive connection or a new one; record every answer."""
    total = int(rate_per_s * duration_s)
    result = OpenLoopResult(sent=0)
    idle: list[Connection] = []
    in_use = 0
    loop = asyncio.get_running_loop()
    started = loop.time()
    tasks: set[asyncio.Task] = set()

    async def one(index: int) -> None:
        nonlocal in_use
        connection = idle.pop() if idle else None
        in_use += 1
        try:
            if connection is None:
                connection = await Connection.open(port)
                result.connections += 1
            response = await asyncio.wait_for(connection.exchange(raw), timeout_s)
        except Exception as exc:  # noqa: BLE001 - every failure is recorded and fails the test
            result.failures.append(f"request {index}: {type(exc).__name__}: {exc}")
            if connection is not None:
                connection.abort()
            return
        finally:
            in_use -= 1
        status = response.status
        result.statuses[status] = result.statuses.get(status, 0) + 1
        result.latencies_s.setdefault(status, []).append(response.latency_s)
        result.retry_after.setdefault(status, set()).add(response.headers.get("retry-after"))
        with contextlib.suppress(ValueError, KeyError):
            answer = json.loads(response.body)
            if status == 200:
                result.server_ms.append(sum(answer["timings_ms"].values()))
            else:
                result.codes.setdefault(status, {}).setdefault(answer["code"], 0)
                result.codes[status][answer["code"]] += 1
        if response.headers.get("connection", "").lower() == "close":
            connection.abort()
        else:
            idle.append(connection)

    for index in range(total):
        due = started + index / rate_per_s
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        elif delay < -0.05:
            result.late_sends += 1
        while in_use >= max_connections:  # bounded: the oldest request times out after timeout_s
            await asyncio.sleep(0.001)
        result.sent += 1
        task = loop.create_task(one(index))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(tasks, timeout=timeout_s + 5)
    result.elapsed_s = loop.time() - started
    for connection in idle:
        connection.writer.close()
    return result


async def closed_loop(port: int, raw: bytes, concurrency: int, duration_s: float) -> tuple[int, float, dict[int, int]]:
    """`concurrency` keep-alive connections, each sending as soon as it is answered. Returns
    (answered, elapsed seconds, status counts)."""
    statuses: dict[int, int] = {}
    loop = asyncio.get_running_loop()
    stop_at = loop.time() + duration_s

    async def worker() -> int:
        connection = await Connection.open(port)
        done = 0
        try:
            while loop.time() < stop_at:
                response = await asyncio.wait_for(connection.exchange(raw), 30)
                statuses[response.status] = statuses.get(response.status, 0) + 1
                done += 1
        finally:
            connection.writer.close()
        return done

    started = loop.time()
    counts = await asyncio.gather(*(worker() for _ in range(concurrency)))
    return sum(counts), loop.time() - started, statuses


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def sigterm(server: bench.Server) -> None:
    server.process.send_signal(signal.SIGTERM)
