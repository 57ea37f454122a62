"""The quick benchmark parts (`python -m bench http|batch|preprocess`), each against its own server.

- ``http``: single-image POST /classify with wrk at concurrency 1, 16, 64 against three builds of
  the same service: batching on, batching off (SORTER_MAX_BATCH_SIZE=1) and the null model (same
  HTTP, multipart and decode; no inference). Images/s, p50, p99.
- ``batch``: one 256-image POST /classify/batch at a time vs the raw model at batch 256.
- ``preprocess``: the 10,000 test images rendered as catalog photos (JPEG, tinted, light
  background) through the full HTTP path, for each resize method, vs the raw 28x28 images.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from bench.load import LoadResult, multipart_body, wrk
from bench.photos import load_test_set, png_bytes, render_photos
from bench.server import REPO, process_cpu_s, running_server

# --- the benchmarks -----------------------------------------------------------------------------
BUILDS = {
    "batched": {},
    "unbatched": {"SORTER_MAX_BATCH_SIZE": "1"},
    "null-model": {"SORTER_MODEL_BACKEND": "null"},
}


def bench_http(args: argparse.Namespace) -> dict[str, Any]:
    images, _ = load_test_set()
    body, content_type = multipart_body([("file", "item.png", png_bytes(images[0]))])
    concurrencies = args.concurrency
    table: dict[str, list[LoadResult]] = {}
    for build, env in BUILDS.items():
        with running_server(env, nice=args.server_nice) as server:
            url = server.url + "/classify"
            wrk(url, body, content_type, max(concurrencies), args.warmup_s)  # JIT paths, pools, caches
            table[build] = []
            for concurrency in concurrencies:
                cpu_before = process_cpu_s(server.process.pid)
                result = wrk(url, body, content_type, concurrency, args.duration_s)
                cpu_after = process_cpu_s(server.process.pid)
                if cpu_before is not None and cpu_after is not None and result.requests:
                    result.server_cpu_ms_per_request = 1000 * (cpu_after - cpu_before) / result.requests
                table[build].append(result)
                cpu = f"{result.server_cpu_ms_per_request:.3f}" if result.server_cpu_ms_per_request else "?"
                print(
                    f"{build:>10}  c={concurrency:<3} {result.requests_per_s:8.0f} images/s  "
                    f"p50 {result.p50_ms:6.2f} ms  p99 {result.p99_ms:7.2f} ms  "
                    f"server CPU {cpu} ms/request  errors {result.errors}",
                    flush=True,
                )
    top = max(concurrencies)
    by = {build: {r.concurrency: r for r in rows} for build, rows in table.items()}
    low = min(concurrencies)
    summary = {
        f"batched/null at c={top}": by["batched"][top].requests_per_s / by["null-model"][top].requests_per_s,
        f"batched/unbatched at c={top}": by["batched"][top].requests_per_s / by["unbatched"][top].requests_per_s,
        f"p50 batched - unbatched at c={low} (ms)": by["batched"][low].p50_ms - by["unbatched"][low].p50_ms,
    }
    for name, value in summary.items():
        print(f"{name}: {value:.3f}")
    return {"table": {b: [r.__dict__ for r in rows] for b, rows in table.items()}, "summary": summary}


def raw_model_rate(batch: int, seconds: float) -> float:
    """Images/s of the exported model alone at this batch size (same thread settings as the server)."""
    from app.config import load_settings
    from app.inference.tensorflow_model import load_tensorflow_model

    settings = load_settings()
    model = load_tensorflow_model(
        settings.resolved_model_dir(),
        batch,
        settings.intra_op_threads,
        settings.tf_inter_op_threads,
        settings.precision,
    )
    images, _ = load_test_set()
    x = images[:batch]
    for _ in range(3):
        model.predict(x)
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        model.predict(x)
        count += 1
    return count * batch / (time.perf_counter() - started)


def bench_batch(args: argparse.Namespace) -> dict[str, Any]:
    images, _ = load_test_set()
    n = args.batch_files
    # The raw model runs in a child process, before the server starts: no CPU shared, and this
    # process never holds TensorFlow's thread pools while it drives the server.
    code = f"from bench.scenarios import raw_model_rate; print(raw_model_rate({n}, {args.duration_s}))"
    raw = float(
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            cwd=REPO,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        ).stdout.split()[-1]
    )
    body, content_type = multipart_body([("files", f"{i}.png", png_bytes(images[i])) for i in range(n)])
    import httpx

    with running_server(nice=args.server_nice) as server, httpx.Client(timeout=60) as client:
        url = server.url + "/classify/batch"
        for _ in range(3):
            client.post(url, content=body, headers={"content-type": content_type}).raise_for_status()
        count, latencies, started = 0, [], time.perf_counter()
        while time.perf_counter() - started < args.duration_s:
            t0 = time.perf_counter()
            response = client.post(url, content=body, headers={"content-type": content_type})
            latencies.append(time.perf_counter() - t0)
            response.raise_for_status()
            if response.json()["failed"]:
                raise RuntimeError("a batch item failed")
            count += 1
        served = count * n / (time.perf_counter() - started)
    ratio = served / raw
    print(f"raw model, batch {n}: {raw:8.0f} images/s")
    print(
        f"POST /classify/batch with {n} PNGs: {served:8.0f} images/s "
        f"(p50 {1000 * float(np.median(latencies)):.1f} ms per request) = {100 * ratio:.0f} % of raw"
    )
    return {"raw_images_per_s": raw, "batch_endpoint_images_per_s": served, "ratio": ratio}


async def _classify_all(url: str, bodies: Sequence[bytes], content_type: str, concurrency: int) -> list[int]:
    import httpx

    results: list[int] = [-1] * len(bodies)
    next_index = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:

        async def worker() -> None:
            nonlocal next_index
            while next_index < len(bodies):
                index = next_index
                next_index += 1
                response = await client.post(url, content=bodies[index], headers={"content-type": content_type})
                response.raise_for_status()
                results[index] = response.json()["class_id"]

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return results


def classify_over_http(url: str, bodies: Sequence[bytes], content_type: str, concurrency: int = 16) -> np.ndarray:
    """POST each body to url (raw image body) with `concurrency` connections; the class ids."""
    return np.asarray(asyncio.run(_classify_all(url, bodies, content_type, concurrency)))


def classify_raw_over_http(server_url: str, images: np.ndarray, chunk: int = 256) -> np.ndarray:
    """The raw 28x28 images as PNGs through POST /classify/batch; the class ids."""
    import httpx

    out: list[int] = []
    with httpx.Client(timeout=120) as client:
        for start in range(0, len(images), chunk):
            files = [("files", f"{i}.png", png_bytes(image)) for i, image in enumerate(images[start : start + chunk])]
            body, content_type = multipart_body(files)
            response = client.post(server_url + "/classify/batch", content=body, headers={"content-type": content_type})
            response.raise_for_status()
            out.extend(entry["result"]["class_id"] for entry in response.json()["results"])
    return np.asarray(out)


def bench_preprocess(args: argparse.Namespace) -> dict[str, Any]:
    images, labels = load_test_set()
    images, labels = images[: args.limit], labels[: args.limit]
    renders = {}
    for upscale in ("bilinear", "bicubic"):
        started = time.perf_counter()
        renders[upscale] = render_photos(images, upscale=upscale)
        print(
            f"rendered {len(images)} catalog photos ({upscale} upscale) in {time.perf_counter() - started:.0f} s",
            flush=True,
        )
    accuracy: dict[str, float] = {}
    for resize in ("antialias", "subsample"):
        with running_server({"SORTER_RESIZE": resize}, nice=args.server_nice) as server:
            if "raw 28x28" not in accuracy:
                predicted = classify_raw_over_http(server.url, images)
                accuracy["raw 28x28"] = float(np.mean(predicted == labels))
                print(f"raw 28x28 PNG: {100 * accuracy['raw 28x28']:.2f} %", flush=True)
            for upscale, photos in renders.items():
                started = time.perf_counter()
                predicted = classify_over_http(server.url + "/classify", photos, "image/jpeg", args.concurrency)
                elapsed = time.perf_counter() - started
                key = f"photo {upscale} upscale, {resize} resize"
                accuracy[key] = float(np.mean(predicted == labels))
                print(
                    f"{key}: {100 * accuracy[key]:.2f} % "
                    f"(gap {100 * (accuracy['raw 28x28'] - accuracy[key]):+.2f} points; "
                    f"{len(photos) / elapsed:.0f} photos/s over HTTP)",
                    flush=True,
                )
    best = max(("antialias", "subsample"), key=lambda r: accuracy[f"photo bilinear upscale, {r} resize"])
    print(f"better resize: {best}")
    return {"n": len(images), "accuracy": accuracy, "best_resize": best}
