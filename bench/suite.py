"""The published benchmark (`make bench` = `python -m bench suite`) and the soak (`python -m bench soak`).

- throughput and p50/p99 versus concurrency (1..128) for batching on, batching off and the null
  model (same HTTP, multipart and decode, no inference), with wrk;
- the raw model's images/s by batch size (`python -m training bench-model`, its own process);
- a max_wait_ms sweep;
- POST /classify/batch throughput by request size;
- camera-size photos (2 MP and 12 MP JPEGs): CPU per stage, photos/s and p50/p99 (bench.camera);
- what the decision log, a model roll-out and traces cost (bench.decisions, bench.rollout,
  bench.tracing);
- the soak: 10 minutes at half the measured capacity, open loop, with catalog photos: RSS growth
  and p99 per minute;
- the machine it ran on.
Figures and plots go to docs/benchmarks.md and docs/bench/ (bench.report).
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench.camera import bench_camera
from bench.decisions import bench_decision_log
from bench.load import (
    OpenLoopResult,
    closed_loop,
    http_request,
    measure,
    multipart_body,
    open_loop,
    single_image_body,
    whole_s,
    wrk,
)
from bench.photos import load_test_set, png_bytes, render_photos
from bench.plan import (
    BATCH_FILES,
    CONCURRENCY,
    MAX_WAIT_CONCURRENCY,
    MAX_WAIT_MS,
    RAW_BATCH_SIZES,
    SOAK_P99_DRIFT_LIMIT,
    SOAK_RSS_GROWTH_LIMIT,
    SOAK_WINDOW_S,
)
from bench.report import headlines, load_results, plot, report
from bench.rollout import bench_rollout
from bench.scenarios import BUILDS
from bench.server import REPO, rss_bytes, running_server
from bench.tracing import bench_tracing


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
    from contract.metadata import read_metadata
    from contract.versions import latest

    version_dir = latest(load_settings().resolved_model_dir())
    metadata = read_metadata(version_dir)
    return (
        f"{metadata.name} v{version_dir.name} ({metadata.architecture or '?'}, "
        f"{metadata.params or '?'} parameters, served in {served_precision()})"
    )


# --- the measurements ---------------------------------------------------------------------------
def concurrency_sweep(args: argparse.Namespace) -> dict[str, list[dict[str, Any]]]:
    body, content_type = single_image_body()
    table: dict[str, list[dict[str, Any]]] = {}
    for build, env in BUILDS.items():
        with running_server(env) as server:
            wrk(server.url + "/classify", body, content_type, max(CONCURRENCY), whole_s(args.warmup_s))
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
    from app.inference.precision import choose_precision
    from contract.metadata import read_metadata
    from contract.signature import cpu_flags
    from contract.versions import latest

    settings = load_settings()
    exported = read_metadata(latest(settings.resolved_model_dir())).exported_signatures()
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


def max_wait_sweep(args: argparse.Namespace) -> list[dict[str, Any]]:
    body, content_type = single_image_body()
    rows = []
    for wait_ms in MAX_WAIT_MS:
        with running_server({"SORTER_MAX_WAIT_MS": str(wait_ms)}) as server:
            wrk(server.url + "/classify", body, content_type, max(MAX_WAIT_CONCURRENCY), whole_s(args.warmup_s))
            for concurrency in MAX_WAIT_CONCURRENCY:
                row = {"max_wait_ms": wait_ms, **measure(server, body, content_type, concurrency, args.duration_s)}
                rows.append(row)
                print(
                    f"max_wait_ms={wait_ms:<3} c={concurrency:<3} {row['requests_per_s']:8.0f} images/s  "
                    f"p50 {row['p50_ms']:7.2f} ms  p99 {row['p99_ms']:7.2f} ms",
                    flush=True,
                )
    return rows


def batch_endpoint(args: argparse.Namespace) -> list[dict[str, Any]]:
    import httpx

    images, _ = load_test_set()
    rows = []
    with running_server() as server, httpx.Client(timeout=120) as client:
        url = server.url + "/classify/batch"
        for files in BATCH_FILES:
            body, content_type = multipart_body([("files", f"{i}.png", png_bytes(images[i])) for i in range(files)])
            headers = {"content-type": content_type}
            for _ in range(3):
                client.post(url, content=body, headers=headers).raise_for_status()
            latencies: list[float] = []
            started = time.perf_counter()
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
def soak(args: argparse.Namespace) -> dict[str, Any]:
    """Half the measured capacity, open loop, catalog photos, for soak_s: RSS and p99 per window."""
    images, _ = load_test_set()
    photos = render_photos(images[:200], seed=11)
    with running_server() as server:
        port = server.port
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


def run_suite(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    results: dict[str, Any] = {
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
    print("== camera-size photos ==", flush=True)
    results["camera"] = _dated(bench_camera(args))
    print("== decision log ==", flush=True)
    results["decision_log"] = _dated(bench_decision_log(args))
    print("== model roll-out ==", flush=True)
    results["rollout"] = _dated(bench_rollout(args))
    print("== traces ==", flush=True)
    results["tracing"] = _dated(bench_tracing(args))
    if args.soak_s > 0:
        print("== soak ==", flush=True)
        results["soak"] = soak(args)
    results["elapsed_min"] = (time.perf_counter() - started) / 60
    _write(results, Path(args.report))
    for line in headlines(results):
        print(line)
    return results


def _dated(part: dict[str, Any]) -> dict[str, Any]:
    """A part's figures with when and where they were measured: a part measured alone may come from
    another machine than the suite's table describes (two machines may share a CPU model name)."""
    where = {"cpu": machine()["cpu"], "logical CPUs": str(os.cpu_count()), "served in": served_precision()}
    return {"date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"), "machine": where, **part}


def _write(results: dict[str, Any], out: Path) -> None:
    image_dir = out.parent / "bench"
    plot(results, image_dir)
    (image_dir / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    out.write_text(report(results, image_dir.relative_to(out.parent).as_posix()))
    print(f"wrote {out} and {image_dir}/", flush=True)


def _measure_into_report(
    args: argparse.Namespace, part: str, measure: Callable[[argparse.Namespace], Any]
) -> dict[str, Any]:
    """Measure one part alone and put its figures into the published report beside the suite's
    last results (docs/bench/results.json)."""
    out = Path(args.report)
    results = load_results(out.parent / "bench" / "results.json")
    results[part] = _dated(measure(args))
    _write(results, out)
    return results


def run_camera(args: argparse.Namespace) -> dict[str, Any]:
    """`python -m bench camera`: camera-size photos."""
    return _measure_into_report(args, "camera", bench_camera)


def run_decision_log(args: argparse.Namespace) -> dict[str, Any]:
    """`python -m bench decisions`: the decision log's cost."""
    return _measure_into_report(args, "decision_log", bench_decision_log)


def run_rollout(args: argparse.Namespace) -> dict[str, Any]:
    """`python -m bench rollout`: a swap under load and the shadow's cost."""
    return _measure_into_report(args, "rollout", bench_rollout)


def run_tracing(args: argparse.Namespace) -> dict[str, Any]:
    """`python -m bench tracing`: what traces cost."""
    return _measure_into_report(args, "tracing", bench_tracing)


def run_soak(args: argparse.Namespace) -> dict[str, Any]:
    return soak(args)
