"""Camera-size photos (`python -m bench camera`, part of `make bench`): what a scanner's JPEG costs.

Two sizes, 2 MP (1600x1200) and 12 MP (4000x3000): scanner photos (bench.scanner's renders of test
garments on each kind of belt) brought to camera size with sensor noise at that size, then saved
as quality-90 JPEGs, so that a file is as large as a camera's (hundreds of KB to about 1 MB).

- **Per stage** (in process, one thread, CPU time): decode (DCT-scaled to the working size),
  segmentation, the dataset recipe, and the model on that one image (batch 1).
- **Over HTTP**: one JPEG per POST /classify (multipart) with wrk at concurrency 1 and 8 against
  a real server: photos/s, p50, p99. wrk sends one body over and over, so each size uses the
  photo whose decode and segmentation cost the median of the per-stage run.
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from typing import Any

import numpy as np
from PIL import Image

from bench.garment import EMPTY
from bench.load import measure, multipart_body, whole_s, wrk
from bench.photos import load_test_set
from bench.scanner import CONDITIONS, render, stratified
from bench.server import running_server

SIZES = {"2 MP": (1600, 1200), "12 MP": (4000, 3000)}
CAMERA_CONCURRENCY = (1, 8)
PHOTOS_PER_SIZE = 20
JPEG_QUALITY = 90
SENSOR_NOISE = 2.0  # standard deviation, 8-bit levels, at camera resolution
STAGES = ("decode", "segmentation", "recipe", "inference")


def camera_photo(condition: str, image: np.ndarray, size: tuple[int, int], seed: int) -> bytes:
    """A scanner render at camera size: upscaled, then sensor noise at that size, then JPEG."""
    rng = np.random.default_rng(seed)
    photo = Image.open(io.BytesIO(render(condition, image, seed))).convert("RGB")
    pixels = np.asarray(photo.resize(size, Image.Resampling.BICUBIC), np.float32)
    pixels += rng.normal(0.0, SENSOR_NOISE, pixels.shape).astype(np.float32)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8), "RGB").save(buffer, "JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def camera_photos(size: tuple[int, int], count: int = PHOTOS_PER_SIZE) -> list[bytes]:
    """``count`` photos, the garment conditions in turn, of stratified test images."""
    images, labels = load_test_set()
    chosen = stratified(labels, max(1, count // 10 + 1))
    conditions = [c for c in CONDITIONS if c != EMPTY]
    return [camera_photo(conditions[k % len(conditions)], images[int(chosen[k])], size, seed=k) for k in range(count)]


def stage_costs(photos: list[bytes], repeats: int = 3) -> dict[str, Any]:
    """Median CPU milliseconds per stage over the photos (each run ``repeats`` times)."""
    from app.config import load_settings
    from app.inference import preprocess
    from app.inference.blas import one_blas_thread
    from app.inference.segmentation.segment import segment
    from app.inference.tensorflow_model import load_tensorflow_model

    one_blas_thread()  # as the service runs it
    settings = load_settings()
    model = load_tensorflow_model(settings.resolved_model_dir(), 1, 1, 1, settings.precision)
    model.warmup()
    per_photo: list[dict[str, float]] = []
    for data in photos:
        samples: dict[str, list[float]] = {stage: [] for stage in STAGES}
        for _ in range(repeats):
            clock = time.thread_time()
            work = preprocess.work_image(
                preprocess.decode(preprocess.open_image(data, settings.max_image_pixels)).image
            )
            decoded = time.thread_time()
            found = segment(np.asarray(work.convert("RGB")))
            segmented = time.thread_time()
            pixels = preprocess.photo_to_28(Image.fromarray(found.composite, "RGB"))
            made = time.thread_time()
            model.infer(pixels[None])
            inferred = time.thread_time()
            decode_s, segment_s, recipe_s, inference_s = (
                decoded - clock,
                segmented - decoded,
                made - segmented,
                inferred - made,
            )
            for stage, seconds in zip(STAGES, (decode_s, segment_s, recipe_s, inference_s), strict=True):
                samples[stage].append(1000 * seconds)
        per_photo.append({stage: min(values) for stage, values in samples.items()})  # least disturbed
    medians = {stage: statistics.median(p[stage] for p in per_photo) for stage in STAGES}
    medians["total"] = sum(medians[stage] for stage in STAGES)
    # The photo wrk repeats: the one whose preprocessing cost is the median.
    preprocessing = [p["decode"] + p["segmentation"] + p["recipe"] for p in per_photo]
    typical = int(np.argsort(preprocessing)[len(preprocessing) // 2])
    return {
        "ms": medians,
        "typical_photo": typical,
        "jpeg_kb": statistics.median(len(d) / 1000 for d in photos),
    }


def bench_camera(args: argparse.Namespace) -> dict[str, Any]:
    """Per-stage CPU and HTTP throughput/latency for each camera size."""
    results: dict[str, Any] = {}
    made = {name: camera_photos(size) for name, size in SIZES.items()}
    for name, photos in made.items():
        costs = stage_costs(photos)
        print(
            f"{name}: JPEG {costs['jpeg_kb']:.0f} KB; CPU per stage (ms) "
            + ", ".join(f"{stage} {ms:.2f}" for stage, ms in costs["ms"].items()),
            flush=True,
        )
        results[name] = {"size": SIZES[name], **costs, "http": []}
    with running_server() as server:
        for name, photos in made.items():
            body, content_type = multipart_body([("file", "photo.jpg", photos[results[name]["typical_photo"]])])
            wrk(server.url + "/classify", body, content_type, max(CAMERA_CONCURRENCY), whole_s(args.warmup_s))
            for concurrency in CAMERA_CONCURRENCY:
                row = measure(server, body, content_type, concurrency, args.duration_s)
                results[name]["http"].append(row)
                print(
                    f"{name} c={concurrency}: {row['requests_per_s']:.0f} photos/s  p50 {row['p50_ms']:.2f} ms"
                    f"  p99 {row['p99_ms']:.2f} ms  errors {row['errors']}",
                    flush=True,
                )
    return results
