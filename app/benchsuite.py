"""The published benchmark (`make bench` = `garment-sorter bench suite`) and the soak
(`garment-sorter bench soak`): figures and PNG plots written to docs/benchmarks.md and docs/bench/.

- throughput and p50/p99 versus concurrency (1..128) for batching on, batching off and the null
  model (same HTTP, multipart and decode, no inference), with wrk;
- the raw model's images/s by batch size (`python -m training bench-model`, its own process);
- a max_wait_ms sweep;
- POST /classify/batch throughput by request size;
- the soak: 10 minutes at half the measured capacity, open loop, with catalog photos: RSS growth
  and p99 per minute;
- the machine it ran on.

Servers, wrk, the test set and the photo renderer come from app.bench. The open-loop generator
(raw HTTP/1.1 over asyncio, loopback only, bounded in count and time) lives here; the robustness
tests use it too.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import importlib.metadata
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from app import bench

REPO = Path(__file__).resolve().parent.parent
CONCURRENCY = (1, 2, 4, 8, 16, 32, 64, 128)
MAX_WAIT_MS = (0, 1, 2, 5, 10)
MAX_WAIT_CONCURRENCY = (16, 64)
BATCH_FILES = (1, 8, 32, 64, 128, 256)
RAW_BATCH_SIZES = (1, 8, 32, 64, 128, 256)
SOAK_WINDOW_S = 60.0
MAX_IDLE_S = 2.0  # open loop: keep-alive connections idle longer are retired, not reused
SOAK_RSS_GROWTH_LIMIT = 0.05
SOAK_P99_DRIFT_LIMIT = 1.5  # last window's p99 over the first (post-warm-up) window's


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
    tasks: set[asyncio.Task] = set()

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


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def port_of(server: bench.Server) -> int:
    return int(server.url.rsplit(":", 1)[1])


# --- the machine --------------------------------------------------------------------------------
def machine() -> dict[str, str]:
    def first(path: str, key: str) -> str:
        with contextlib.suppress(OSError):
            for line in Path(path).read_text().splitlines():
                if line.startswith(key):
                    return line.split(":", 1)[1].strip()
        return "?"

    def version(package: str) -> str:
        try:
            return importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            return "-"

    memory_kib = first("/proc/meminfo", "MemTotal").split()[0]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    return {
        "cpu": first("/proc/cpuinfo", "model name"),
        "logical CPUs": str(os.cpu_count()),
        "memory": f"{int(memory_kib) / 2**20:.1f} GiB" if memory_kib.isdigit() else "?",
        "GPU": "none (CPU inference)",
        "OS": f"{platform.system()} {platform.release()}",
        "Python": platform.python_version(),
        "TensorFlow": version("tensorflow"),
        "uvicorn / httptools": f"{version('uvicorn')} / {version('httptools')}",
        "wrk": subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split("[")[0].strip() or "?",
        "commit": commit.stdout.strip() or "?",
    }


def model_ref() -> str:
    from app.config import load_settings
    from app.model import find_version, read_metadata

    version_dir = find_version(load_settings().resolved_model_dir())
    metadata = read_metadata(version_dir)
    return (
        f"{metadata.get('name', 'model')} v{version_dir.name} ({metadata.get('architecture', '?')}, "
        f"{metadata.get('params', '?')} parameters, served in {served_precision()})"
    )


# --- the measurements ---------------------------------------------------------------------------
def single_image_body() -> tuple[bytes, str]:
    images, _ = bench.load_test_set()
    return bench.multipart_body([("file", "item.png", bench.png_bytes(images[0]))])


def _wrk_s(seconds: float) -> int:
    return max(1, round(seconds))  # wrk takes whole seconds


def measure(server: bench.Server, body: bytes, content_type: str, concurrency: int, duration_s: float) -> dict:
    cpu_before = bench.process_cpu_s(server.process.pid)
    result = bench.wrk(server.url + "/classify", body, content_type, concurrency, _wrk_s(duration_s))
    cpu_after = bench.process_cpu_s(server.process.pid)
    row = asdict(result)
    if cpu_before is not None and cpu_after is not None and result.requests:
        row["server_cpu_ms_per_request"] = 1000 * (cpu_after - cpu_before) / result.requests
    return row


def concurrency_sweep(args: argparse.Namespace) -> dict[str, list[dict]]:
    body, content_type = single_image_body()
    table: dict[str, list[dict]] = {}
    for build, env in bench.BUILDS.items():
        with bench.running_server(env) as server:
            bench.wrk(server.url + "/classify", body, content_type, max(CONCURRENCY), _wrk_s(args.warmup_s))
            table[build] = []
            for concurrency in CONCURRENCY:
                row = measure(server, body, content_type, concurrency, args.duration_s)
                table[build].append(row)
                print(
                    f"{build:>10} c={concurrency:<3} {row['requests_per_s']:8.0f} images/s  p50 {row['p50_ms']:7.2f} ms"
                    f"  p99 {row['p99_ms']:7.2f} ms  errors {row['errors']}",
                    flush=True,
                )
    return table


def served_precision() -> str:
    """The precision `serve` picks on this machine with the current settings (CPU)."""
    from app.config import load_settings
    from app.model import choose_precision, cpu_flags, exported_signatures, find_version, read_metadata

    settings = load_settings()
    exported = exported_signatures(read_metadata(find_version(settings.resolved_model_dir())))
    return choose_precision(settings.precision, exported, False, cpu_flags())


def raw_model(args: argparse.Namespace) -> dict[int, float]:
    """`python -m training bench-model` in its own process, nothing else running, in the
    precision the service serves here."""
    from app.config import load_settings

    command = [
        sys.executable,
        "-m",
        "training",
        "bench-model",
        "--model-root",
        str(load_settings().resolved_model_dir()),
        "--batch-sizes",
        *map(str, RAW_BATCH_SIZES),
        "--seconds",
        str(args.raw_seconds),
        "--precision",
        served_precision(),
    ]
    out = subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, check=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    ).stdout
    rows = {int(b): float(v.replace(",", "")) for b, v in re.findall(r"^\|\s*(\d+)\s*\|\s*([\d,.]+)\s*\|", out, re.M)}
    if set(rows) != set(RAW_BATCH_SIZES):
        raise RuntimeError(f"cannot parse bench-model output:\n{out}")
    for size, rate in rows.items():
        print(f"raw model batch {size:>3}: {rate:9.0f} images/s", flush=True)
    return rows


def max_wait_sweep(args: argparse.Namespace) -> list[dict]:
    body, content_type = single_image_body()
    rows = []
    for wait_ms in MAX_WAIT_MS:
        with bench.running_server({"SORTER_MAX_WAIT_MS": str(wait_ms)}) as server:
            bench.wrk(server.url + "/classify", body, content_type, max(MAX_WAIT_CONCURRENCY), _wrk_s(args.warmup_s))
            for concurrency in MAX_WAIT_CONCURRENCY:
                row = {"max_wait_ms": wait_ms, **measure(server, body, content_type, concurrency, args.duration_s)}
                rows.append(row)
                print(
                    f"max_wait_ms={wait_ms:<3} c={concurrency:<3} {row['requests_per_s']:8.0f} images/s  "
                    f"p50 {row['p50_ms']:7.2f} ms  p99 {row['p99_ms']:7.2f} ms",
                    flush=True,
                )
    return rows


def batch_endpoint(args: argparse.Namespace) -> list[dict]:
    import httpx

    images, _ = bench.load_test_set()
    rows = []
    with bench.running_server() as server, httpx.Client(timeout=120) as client:
        url = server.url + "/classify/batch"
        for files in BATCH_FILES:
            body, content_type = bench.multipart_body(
                [("files", f"{i}.png", bench.png_bytes(images[i])) for i in range(files)]
            )
            headers = {"content-type": content_type}
            for _ in range(3):
                client.post(url, content=body, headers=headers).raise_for_status()
            latencies, started = [], time.perf_counter()
            while time.perf_counter() - started < args.duration_s or len(latencies) < 5:
                t0 = time.perf_counter()
                response = client.post(url, content=body, headers=headers)
                latencies.append(time.perf_counter() - t0)
                response.raise_for_status()
                if response.json()["failed"]:
                    raise RuntimeError("a batch item failed")
            rate = len(latencies) * files / (time.perf_counter() - started)
            rows.append({"files": files, "images_per_s": rate, "p50_ms": 1000 * float(np.median(latencies))})
            print(
                f"/classify/batch {files:>3} files: {rate:8.0f} images/s  p50 {rows[-1]['p50_ms']:7.1f} ms", flush=True
            )
    return rows


# --- the soak -----------------------------------------------------------------------------------
def soak(args: argparse.Namespace) -> dict:
    """Half the measured capacity, open loop, catalog photos, for soak_s: RSS and p99 per window."""
    images, _ = bench.load_test_set()
    photos = bench.render_photos(images[:200], seed=11)
    with bench.running_server() as server:
        port = port_of(server)
        raws = [http_request("POST", "/classify", p, {"Content-Type": "image/jpeg"}, port) for p in photos]
        answered, elapsed, statuses = asyncio.run(closed_loop(port, raws, 32, args.capacity_s))
        if set(statuses) != {200}:
            raise RuntimeError(f"capacity run answered {statuses}")
        capacity = answered / elapsed
        rate = capacity / 2
        print(f"soak: capacity {capacity:.0f} photos/s; {rate:.0f}/s for {args.soak_s:.0f} s", flush=True)
        rss: list[tuple[float, int]] = []

        async def run() -> OpenLoopResult:
            stop = asyncio.Event()

            async def sample() -> None:
                started = time.monotonic()
                while not stop.is_set():
                    rss.append((time.monotonic() - started, rss_bytes(server.process.pid)))
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), 5.0)

            sampler = asyncio.create_task(sample())
            try:
                return await open_loop(port, raws, rate, args.soak_s, max_connections=256, timeout_s=30)
            finally:
                stop.set()
                await sampler

        result = asyncio.run(run())
    windows = []
    for start in np.arange(0.0, args.soak_s, SOAK_WINDOW_S):
        latencies = [lat for t, status, lat in result.samples if start <= t < start + SOAK_WINDOW_S and status == 200]
        window_rss = [r for t, r in rss if start <= t < start + SOAK_WINDOW_S]
        if latencies:
            windows.append(
                {
                    "start_s": float(start),
                    "answered": len(latencies),
                    "p50_ms": 1000 * float(np.percentile(latencies, 50)),
                    "p99_ms": 1000 * float(np.percentile(latencies, 99)),
                    "rss_mib": (max(window_rss) if window_rss else rss[-1][1]) / 2**20,
                }
            )
    # Growth and drift are measured from the end of the first window (warm-up: pools, caches).
    baseline = windows[0] if len(windows) == 1 else windows[1]
    growth = windows[-1]["rss_mib"] / baseline["rss_mib"] - 1
    drift = windows[-1]["p99_ms"] / baseline["p99_ms"]
    p99s = [w["p99_ms"] for w in windows[1:]] or [windows[0]["p99_ms"]]
    summary = {
        "capacity_per_s": capacity,
        "rate_per_s": rate,
        "duration_s": args.soak_s,
        "sent": result.sent,
        "statuses": result.statuses,
        "failures": len(result.failures),
        "late_sends": result.late_sends,
        "rss_start_mib": rss[0][1] / 2**20,
        "rss_baseline_mib": baseline["rss_mib"],
        "rss_end_mib": windows[-1]["rss_mib"],
        "rss_growth": growth,
        "p99_first_ms": baseline["p99_ms"],
        "p99_last_ms": windows[-1]["p99_ms"],
        "p99_median_ms": statistics.median(p99s),
        "p99_max_ms": max(p99s),
        "p99_drift": drift,
        "passed": bool(
            growth < SOAK_RSS_GROWTH_LIMIT
            and drift <= SOAK_P99_DRIFT_LIMIT
            and not result.failures
            and set(result.statuses) == {200}
        ),
        "windows": windows,
        "rss": [(t, r / 2**20) for t, r in rss],
    }
    print(
        f"soak: sent {result.sent}, answers {result.statuses}, transport failures {len(result.failures)}; "
        f"RSS {summary['rss_baseline_mib']:.0f} -> {summary['rss_end_mib']:.0f} MiB ({100 * growth:+.2f} %); "
        f"p99 per minute {summary['p99_first_ms']:.1f} -> {summary['p99_last_ms']:.1f} ms "
        f"(median {summary['p99_median_ms']:.1f}, max {summary['p99_max_ms']:.1f}); "
        f"{'PASS' if summary['passed'] else 'FAIL'}",
        flush=True,
    )
    return summary


# --- plots and the report -----------------------------------------------------------------------
def plot(results: dict, out_dir: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    styles = {"batched": "tab:blue", "unbatched": "tab:orange", "null-model": "tab:gray"}

    sweep = results["concurrency"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for build, rows in sweep.items():
        cs = [r["concurrency"] for r in rows]
        left.plot(cs, [r["requests_per_s"] for r in rows], "o-", color=styles[build], label=build)
        right.plot(cs, [r["p50_ms"] for r in rows], "o-", color=styles[build], label=f"{build} p50")
        right.plot(cs, [r["p99_ms"] for r in rows], "s--", color=styles[build], label=f"{build} p99")
    for axis in (left, right):
        axis.set_xscale("log", base=2)
        axis.set_xticks(CONCURRENCY, [str(c) for c in CONCURRENCY])
        axis.set_xlabel("concurrent connections (wrk)")
        axis.grid(alpha=0.3)
    left.set_ylabel("images/s")
    left.set_title("POST /classify throughput")
    right.set_yscale("log")
    right.set_ylabel("latency (ms)")
    right.set_title("latency p50 / p99")
    left.legend()
    right.legend(fontsize=7, ncol=3)
    fig.tight_layout()
    fig.savefig(out_dir / "concurrency.png", dpi=110)
    written.append("concurrency.png")
    plt.close(fig)

    fig, axis = plt.subplots(figsize=(6.5, 4))
    raw = results["raw_model"]
    axis.plot(list(raw), list(raw.values()), "o-", color="tab:green", label="raw model (SavedModel signature)")
    batch = results["batch_endpoint"]
    axis.plot(
        [r["files"] for r in batch],
        [r["images_per_s"] for r in batch],
        "s-",
        color="tab:purple",
        label="POST /classify/batch (one client)",
    )
    best = max(r["requests_per_s"] for r in sweep["batched"])
    axis.axhline(best, color="tab:blue", ls=":", label=f"POST /classify, best of sweep ({best:.0f}/s)")
    axis.set_xscale("log", base=2)
    axis.set_xticks(RAW_BATCH_SIZES, [str(b) for b in RAW_BATCH_SIZES])
    axis.set_yscale("log")
    axis.set_xlabel("batch size / files per request")
    axis.set_ylabel("images/s")
    axis.set_title("Raw model vs the batch endpoint")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_dir / "batch_sizes.png", dpi=110)
    written.append("batch_sizes.png")
    plt.close(fig)

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for concurrency, color in zip(MAX_WAIT_CONCURRENCY, ("tab:cyan", "tab:red"), strict=True):
        rows = [r for r in results["max_wait"] if r["concurrency"] == concurrency]
        waits = [r["max_wait_ms"] for r in rows]
        left.plot(waits, [r["requests_per_s"] for r in rows], "o-", color=color, label=f"c={concurrency}")
        right.plot(waits, [r["p50_ms"] for r in rows], "o-", color=color, label=f"c={concurrency} p50")
        right.plot(waits, [r["p99_ms"] for r in rows], "s--", color=color, label=f"c={concurrency} p99")
    left.set_ylabel("images/s")
    right.set_ylabel("latency (ms)")
    for axis in (left, right):
        axis.set_xlabel("SORTER_MAX_WAIT_MS")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    left.set_title("max_wait_ms sweep: throughput")
    right.set_title("max_wait_ms sweep: latency")
    fig.tight_layout()
    fig.savefig(out_dir / "max_wait.png", dpi=110)
    written.append("max_wait.png")
    plt.close(fig)

    if results.get("soak"):
        soak_result = results["soak"]
        fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
        left.plot([t / 60 for t, _ in soak_result["rss"]], [r for _, r in soak_result["rss"]], color="tab:brown")
        left.set_xlabel("minutes")
        left.set_ylabel("server RSS (MiB)")
        left.set_title("Soak: memory")
        windows = soak_result["windows"]
        minutes = [w["start_s"] / 60 + 0.5 for w in windows]
        right.plot(minutes, [w["p50_ms"] for w in windows], "o-", label="p50")
        right.plot(minutes, [w["p99_ms"] for w in windows], "s-", label="p99")
        right.set_xlabel("minutes")
        right.set_ylabel("latency per minute (ms)")
        right.set_title(f"Soak: {soak_result['rate_per_s']:.0f} photos/s (half capacity)")
        for axis in (left, right):
            axis.grid(alpha=0.3)
        right.legend()
        fig.tight_layout()
        fig.savefig(out_dir / "soak.png", dpi=110)
        written.append("soak.png")
        plt.close(fig)
    return written


def _row(cells: Sequence[object]) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def report(results: dict, image_dir: str) -> str:
    sweep = {build: {r["concurrency"]: r for r in rows} for build, rows in results["concurrency"].items()}
    headline = headlines(results)
    lines = [
        "# Benchmarks",
        "",
        f"Written by `make bench` (`garment-sorter bench suite`) on {results['date']}, in {results['elapsed_min']:.0f}"
        f" minutes; model {results['model']}. Every server is a real `garment-sorter serve` on a loopback port,"
        " started fresh for its part; the load generators (wrk, or this package's open-loop client) run on the"
        " same machine, so they take CPU from the server: the figures are a floor.",
        "",
        "## Machine",
        "",
        _row(["", ""]),
        _row(["---", "---"]),
        *[_row([k, v]) for k, v in results["machine"].items()],
        "",
        "## Headline figures",
        "",
        *[f"- {line}" for line in headline],
        "",
        "## POST /classify: throughput and latency versus concurrency",
        "",
        f"wrk, one 28x28 PNG (a test-set image) as multipart, {results['args']['duration_s']:g} s per point after a"
        f" {results['args']['warmup_s']:g} s warm-up. *batched*: default settings (max_batch_size 64,"
        " max_wait_ms 2); *unbatched*: SORTER_MAX_BATCH_SIZE=1; *null-model*: the same HTTP, multipart and"
        " decode path with no inference (SORTER_MODEL_BACKEND=null), the ceiling for this machine.",
        "",
        f"![throughput and latency versus concurrency]({image_dir}/concurrency.png)",
        "",
        _row(["concurrency", *[f"{b} images/s" for b in sweep], *[f"{b} p50 / p99 ms" for b in sweep]]),
        _row(["---:"] * (1 + 2 * len(sweep))),
    ]
    for c in CONCURRENCY:
        lines.append(
            _row(
                [
                    c,
                    *[f"{sweep[b][c]['requests_per_s']:,.0f}" for b in sweep],
                    *[f"{sweep[b][c]['p50_ms']:.2f} / {sweep[b][c]['p99_ms']:.2f}" for b in sweep],
                ]
            )
        )
    errors = sum(r["errors"] for rows in results["concurrency"].values() for r in rows)
    lines += [
        "",
        f"Non-2xx answers or socket errors over the whole sweep: {errors}.",
        "",
        "## The raw model by batch size, and POST /classify/batch by request size",
        "",
        f"Raw: `python -m training bench-model` (the SavedModel's serving signature on test images, its own"
        f" process, {results['args']['raw_seconds']:g} s per size). Batch endpoint: one client posting the same"
        " request back to back (PNG test images), for the request sizes shown.",
        "",
        f"![raw model and batch endpoint]({image_dir}/batch_sizes.png)",
        "",
        _row(
            [
                "size",
                "raw model images/s",
                "/classify/batch images/s",
                "/classify/batch p50 per request (ms)",
                "batch / raw",
            ]
        ),
        _row(["---:"] * 5),
    ]
    batch = {r["files"]: r for r in results["batch_endpoint"]}
    for size in RAW_BATCH_SIZES:
        raw = results["raw_model"][size]
        lines.append(
            _row(
                [
                    size,
                    f"{raw:,.0f}",
                    f"{batch[size]['images_per_s']:,.0f}",
                    f"{batch[size]['p50_ms']:.1f}",
                    f"{batch[size]['images_per_s'] / raw:.0%}",
                ]
            )
        )
    lines += [
        "",
        "## max_wait_ms sweep",
        "",
        "How long the batcher may wait to fill a batch (it waits only while more requests are known to be"
        " on their way). Same request as above.",
        "",
        f"![max_wait_ms sweep]({image_dir}/max_wait.png)",
        "",
        _row(["max_wait_ms", "concurrency", "images/s", "p50 ms", "p99 ms"]),
        _row(["---:"] * 5),
        *[
            _row(
                [
                    r["max_wait_ms"],
                    r["concurrency"],
                    f"{r['requests_per_s']:,.0f}",
                    f"{r['p50_ms']:.2f}",
                    f"{r['p99_ms']:.2f}",
                ]
            )
            for r in results["max_wait"]
        ],
        "",
    ]
    soak_result = results.get("soak")
    lines += ["## Soak", ""]
    if soak_result:
        lines += [
            f"{soak_result['duration_s'] / 60:.0f} minutes at {soak_result['rate_per_s']:.0f} catalog photos/s"
            f" (half of the {soak_result['capacity_per_s']:.0f}/s measured with 32 connections), open loop,"
            " 200 different photos (JPEG, a few hundred pixels) in turn. Growth and drift are measured from the"
            " end of the first minute (warm-up).",
            "",
            f"![soak]({image_dir}/soak.png)",
            "",
            f"- sent {soak_result['sent']:,}; answers {soak_result['statuses']}; transport failures"
            f" {soak_result['failures']}; sends behind schedule {soak_result['late_sends']}",
            f"- RSS {soak_result['rss_start_mib']:.0f} MiB at start, {soak_result['rss_baseline_mib']:.0f} MiB after"
            f" the first minute, {soak_result['rss_end_mib']:.0f} MiB at the end: growth"
            f" {100 * soak_result['rss_growth']:+.2f} % (limit {100 * SOAK_RSS_GROWTH_LIMIT:.0f} %)",
            f"- p99 per minute: {soak_result['p99_first_ms']:.1f} ms in minute 2, {soak_result['p99_last_ms']:.1f} ms"
            f" in the last (ratio {soak_result['p99_drift']:.2f}, limit {SOAK_P99_DRIFT_LIMIT}); median"
            f" {soak_result['p99_median_ms']:.1f} ms, worst {soak_result['p99_max_ms']:.1f} ms",
            f"- verdict: {'PASS' if soak_result['passed'] else 'FAIL'}",
            "",
            _row(["minute", "answered", "p50 ms", "p99 ms", "RSS MiB"]),
            _row(["---:"] * 5),
            *[
                _row(
                    [
                        int(w["start_s"] // 60) + 1,
                        w["answered"],
                        f"{w['p50_ms']:.1f}",
                        f"{w['p99_ms']:.1f}",
                        f"{w['rss_mib']:.0f}",
                    ]
                )
                for w in soak_result["windows"]
            ],
        ]
    else:
        lines.append("Not run this time (`--soak-s 0`).")
    lines += [
        "",
        "## Reproduce",
        "",
        "```bash",
        "make bench                                   # everything above, about 25 minutes",
        "garment-sorter bench suite --soak-s 0        # without the 10-minute soak",
        "garment-sorter bench soak                    # the soak alone (prints its figures)",
        "```",
        "",
        f"Raw figures: [`{image_dir}/results.json`]({image_dir}/results.json).",
        "",
    ]
    return "\n".join(lines)


def headlines(results: dict) -> list[str]:
    sweep = {build: {r["concurrency"]: r for r in rows} for build, rows in results["concurrency"].items()}
    best_c = max(CONCURRENCY, key=lambda c: sweep["batched"][c]["requests_per_s"])
    b, u, n = sweep["batched"], sweep["unbatched"], sweep["null-model"]
    raw_256 = results["raw_model"][256]
    batch_256 = next(r for r in results["batch_endpoint"] if r["files"] == 256)
    lines = [
        f"single-image POST /classify, batching on: {b[best_c]['requests_per_s']:,.0f} images/s at c={best_c}"
        f" (p50 {b[best_c]['p50_ms']:.1f} ms, p99 {b[best_c]['p99_ms']:.1f} ms); at c=64 {b[64]['requests_per_s']:,.0f}"
        f" images/s = {b[64]['requests_per_s'] / n[64]['requests_per_s']:.2f}x the null-model ceiling and"
        f" {b[64]['requests_per_s'] / u[64]['requests_per_s']:.2f}x unbatched",
        f"latency at c=1: p50 {b[1]['p50_ms']:.2f} ms batched vs {u[1]['p50_ms']:.2f} ms unbatched"
        f" ({b[1]['p50_ms'] - u[1]['p50_ms']:+.2f} ms)",
        f"raw model: {results['raw_model'][1]:,.0f} images/s at batch 1, {raw_256:,.0f} at batch 256;"
        f" POST /classify/batch with 256 images: {batch_256['images_per_s']:,.0f} images/s"
        f" ({batch_256['images_per_s'] / raw_256:.0%} of raw)",
    ]
    best_wait = max((r for r in results["max_wait"] if r["concurrency"] == 64), key=lambda r: r["requests_per_s"])
    lines.append(
        f"max_wait_ms: best throughput at c=64 with {best_wait['max_wait_ms']} ms"
        f" ({best_wait['requests_per_s']:,.0f} images/s)"
    )
    if results.get("soak"):
        s = results["soak"]
        lines.append(
            f"soak, {s['duration_s'] / 60:g} min at {s['rate_per_s']:.0f} photos/s: RSS {100 * s['rss_growth']:+.2f} %, p99"
            f" {s['p99_first_ms']:.0f} -> {s['p99_last_ms']:.0f} ms, {'PASS' if s['passed'] else 'FAIL'}"
        )
    return lines


def run_suite(args: argparse.Namespace) -> dict:
    started = time.perf_counter()
    results: dict = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "model": model_ref(),
        "args": {"duration_s": args.duration_s, "warmup_s": args.warmup_s, "raw_seconds": args.raw_seconds},
    }
    print("== raw model ==", flush=True)
    results["raw_model"] = raw_model(args)
    print("== concurrency sweep ==", flush=True)
    results["concurrency"] = concurrency_sweep(args)
    print("== max_wait_ms sweep ==", flush=True)
    results["max_wait"] = max_wait_sweep(args)
    print("== /classify/batch by request size ==", flush=True)
    results["batch_endpoint"] = batch_endpoint(args)
    if args.soak_s > 0:
        print("== soak ==", flush=True)
        results["soak"] = soak(args)
    results["elapsed_min"] = (time.perf_counter() - started) / 60
    out = Path(args.report)
    image_dir = out.parent / "bench"
    plot(results, image_dir)
    (image_dir / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    out.write_text(report(results, image_dir.relative_to(out.parent).as_posix()))
    print(f"wrote {out} and {image_dir}/", flush=True)
    for line in headlines(results):
        print(line)
    return results


def run_soak(args: argparse.Namespace) -> dict:
    return soak(args)


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--soak-s", type=float, default=600.0, help="`suite`/`soak`: soak length (0: skip in suite)")
    parser.add_argument("--capacity-s", type=float, default=10.0, help="`soak`: capacity measurement")
    parser.add_argument("--raw-seconds", type=float, default=3.0, help="`suite`: per raw-model batch size")
    parser.add_argument("--report", default=str(REPO / "docs" / "benchmarks.md"), help="`suite`: the report")
