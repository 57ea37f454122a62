"""`garment-sorter bench`: the service's performance and preprocessing benchmarks (figures, not tests).

- ``bench http``: single-image POST /classify with wrk at concurrency 1, 16, 64 against three
  builds of the same service: batching on, batching off (SORTER_MAX_BATCH_SIZE=1) and the null
  model (same HTTP, multipart and decode; no inference). Images/s, p50, p99.
- ``bench batch``: one 256-image POST /classify/batch at a time vs the raw model at batch 256.
- ``bench preprocess``: the 10,000 test images rendered as catalog photos (JPEG, tinted, light
  background) through the full HTTP path, for each resize method, vs the raw 28x28 images.

Each part starts its own server (``garment-sorter serve``) on a free loopback port.
The dataset is read here with a small IDX reader: app/ never imports training/.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

DATASET_DIRS = (
    os.environ.get("FASHION_MNIST_DIR"),
    "/usr/share/datasets/fashion-mnist",
    "~/.keras/datasets/fashion-mnist",
)
BACKGROUND = 253  # #fdfdfd, the dataset's photo background
LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R 601-2, as Pillow's convert("L")
BOUNDARY = "garmentsorterbenchboundary"


# --- data ---------------------------------------------------------------------------------------
def _read_idx(path: Path) -> np.ndarray:
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_test_set() -> tuple[np.ndarray, np.ndarray]:
    """The 10,000 Fashion-MNIST test images (uint8 N x 28 x 28) and labels."""
    for directory in filter(None, DATASET_DIRS):
        root = Path(directory).expanduser()
        for suffix in (".gz", ""):
            images, labels = root / f"t10k-images-idx3-ubyte{suffix}", root / f"t10k-labels-idx1-ubyte{suffix}"
            if images.is_file() and labels.is_file():
                return _read_idx(images), _read_idx(labels)
    raise FileNotFoundError("Fashion-MNIST test set not found: apt-get install dataset-fashion-mnist")


def png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image, "L").save(buffer, "PNG")
    return buffer.getvalue()


UPSCALE = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}


def render_catalog_photo(image: np.ndarray, rng: np.random.Generator, upscale: str = "bilinear") -> bytes:
    """A 28x28 dataset image as a shop photo: upscaled to a few hundred pixels, dark garment of
    some colour on a light background with margins, a little sensor noise, JPEG.

    Bilinear upscaling by default: bicubic overshoots at the garment's edge, a halo that moves
    where the 5 % trim cuts by about half a dataset pixel (the benchmark reports both)."""
    scale = int(rng.integers(8, 15))  # 224..392 px
    big = Image.fromarray(image, "L").resize((28 * scale, 28 * scale), UPSCALE[upscale])
    coverage = np.asarray(big, dtype=np.float32) / 255.0  # dataset: garment bright = photo dark
    gray = BACKGROUND * (1.0 - coverage)  # the photo's luma: the dataset image, negated
    # A colour of that same luma: chroma added along a direction of zero luma, strongest in the
    # mid-tones and none at black or at the background, so no channel clips and no gray level
    # (what the model sees) is lost to the tint.
    direction = rng.uniform(-1.0, 1.0, 3).astype(np.float32)
    direction -= (direction @ LUMA) / LUMA.sum()  # zero-luma component only
    direction /= max(1e-6, float(np.abs(direction).max()))
    saturation = float(rng.uniform(0.3, 0.8)) * 127.0
    amplitude = np.minimum(4.0 * coverage * (1.0 - coverage) * saturation, np.minimum(gray, 255.0 - gray))
    garment = gray[..., None] + amplitude[..., None] * direction
    height, width = coverage.shape
    top, bottom, left, right = (int(rng.integers(0.05 * height, 0.25 * height)) for _ in range(4))
    canvas = np.full((top + height + bottom, left + width + right, 3), BACKGROUND, np.float32)
    canvas[top : top + height, left : left + width] = garment
    canvas += rng.normal(0.0, 1.0, canvas.shape).astype(np.float32)
    photo = Image.fromarray(np.clip(np.rint(canvas), 0, 255).astype(np.uint8), "RGB")
    buffer = io.BytesIO()
    photo.save(buffer, "JPEG", quality=int(rng.integers(85, 96)))
    return buffer.getvalue()


def render_photos(images: np.ndarray, seed: int = 2017, upscale: str = "bilinear") -> list[bytes]:
    rng = np.random.default_rng(seed)
    return [render_catalog_photo(image, rng, upscale) for image in images]


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


# --- a server in a subprocess -------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    process: subprocess.Popen
    url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_server(env: dict[str, str] | None = None, timeout_s: float = 180.0, nice: int = 0) -> Server:
    """`garment-sorter serve` on a free port; returns once /readyz answers 200."""
    port = free_port()
    log_file = tempfile.NamedTemporaryFile(prefix="garment-sorter-", suffix=".log", delete=False)
    command = [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    if nice:
        command = ["nice", "-n", str(nice), *command]
    process = subprocess.Popen(
        command,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})},
        stdout=log_file,
        stderr=subprocess.STDOUT,
        cwd=Path(__file__).resolve().parent.parent,
    )
    server = Server(process, f"http://127.0.0.1:{port}", Path(log_file.name))
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{server.log()[-3000:]}")
        try:
            with urllib.request.urlopen(server.url + "/readyz", timeout=1) as response:
                if response.status == 200:
                    return server
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)
    stop_server(server)
    raise TimeoutError(f"server not ready within {timeout_s} s:\n{server.log()[-3000:]}")


def stop_server(server: Server, timeout_s: float = 60.0) -> int:
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
        try:
            server.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()
    return server.process.returncode


@contextlib.contextmanager
def running_server(env: dict[str, str] | None = None, nice: int = 0) -> Iterator[Server]:
    server = start_server(env, nice=nice)
    try:
        yield server
    finally:
        stop_server(server)
        server.log_path.unlink(missing_ok=True)


# --- wrk ----------------------------------------------------------------------------------------
@dataclass
class LoadResult:
    concurrency: int
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    server_cpu_ms_per_request: float | None = None


def process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a process (all its threads), from /proc; None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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


# --- the benchmarks -----------------------------------------------------------------------------
BUILDS = {
    "batched": {},
    "unbatched": {"SORTER_MAX_BATCH_SIZE": "1"},
    "null-model": {"SORTER_MODEL_BACKEND": "null"},
}


def bench_http(args: argparse.Namespace) -> dict:
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
    from app.model import load_tensorflow_model

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


def bench_batch(args: argparse.Namespace) -> dict:
    images, _ = load_test_set()
    n = args.batch_files
    # The raw model runs in a child process, before the server starts: no CPU shared, and this
    # process never holds TensorFlow's thread pools while it drives the server.
    code = f"from app.bench import raw_model_rate; print(raw_model_rate({n}, {args.duration_s}))"
    raw = float(
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parent.parent,
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


def bench_preprocess(args: argparse.Namespace) -> dict:
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


PARTS = {"http": bench_http, "batch": bench_batch, "preprocess": bench_preprocess}


def _suite(args: argparse.Namespace) -> dict:
    from app import benchsuite

    return benchsuite.run_suite(args)


def _soak(args: argparse.Namespace) -> dict:
    from app import benchsuite

    return benchsuite.run_soak(args)


# Run only when named: they take many minutes, and `suite` writes docs/benchmarks.md (make bench).
ON_REQUEST = {"suite": _suite, "soak": _soak}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("bench", help="performance and preprocessing benchmarks (prints figures)")
    p.add_argument(
        "parts",
        nargs="*",
        metavar="PART",
        help="http, batch and/or preprocess (default: those three); or suite (docs/benchmarks.md) or soak",
    )
    p.add_argument("--duration-s", type=float, default=10.0, help="per measurement")
    p.add_argument("--warmup-s", type=float, default=3.0)
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    p.add_argument("--batch-files", type=int, default=256)
    p.add_argument("--limit", type=int, default=10_000, help="test images for `preprocess`")
    p.add_argument("--server-nice", type=int, default=0, help="run the servers under nice")
    p.add_argument("--json-out", type=Path, default=None, help="also write the figures as JSON")
    from app.benchsuite import add_options

    add_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    known = {**PARTS, **ON_REQUEST}
    unknown = [part for part in args.parts if part not in known]
    if unknown:
        print(f"garment-sorter bench: unknown part(s) {unknown}; choose from {list(known)}", file=sys.stderr)
        return 2
    results = {}
    for part in args.parts or list(PARTS):
        print(f"== bench {part} ==", flush=True)
        kwargs = args
        if part == "preprocess":
            kwargs = argparse.Namespace(**{**vars(args), "concurrency": 16})
        results[part] = known[part](kwargs)
    if args.json_out:
        args.json_out.write_text(json.dumps(results, indent=2) + "\n")
    return 0
