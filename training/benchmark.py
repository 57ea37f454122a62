"""Raw throughput of an exported SavedModel by batch size: the ceiling the service works under."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import numpy as np

from contract.metadata import read_metadata
from training import data, export

DEFAULT_BATCH_SIZES = (1, 8, 32, 64, 128, 256)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}"


def exported_precisions(version_dir: Path) -> list[str]:
    """The precisions a version exports (versions before the bfloat16 signature: float32 only)."""
    return list(read_metadata(Path(version_dir)).exported_signatures())


def images_per_second(
    version_dir: Path, batch_sizes=DEFAULT_BATCH_SIZES, seconds_per_size: float = 3.0, precision: str = "float32"
) -> dict[int, float]:
    """Calls the serving signature on real test images; each size warmed first, then timed."""
    import tensorflow as tf

    signature = export.load_signature(version_dir, precision)
    images = data.load_fashion_mnist().x_test[..., None]
    results = {}
    for batch_size in batch_sizes:
        batch = tf.constant(images[:batch_size])
        for _ in range(3):
            signature(images=batch)
        calls, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds_per_size or calls < 5:
            signature(images=batch)["probabilities"].numpy()
            calls += 1
        results[batch_size] = calls * batch_size / (time.perf_counter() - started)
    return results


def table_lines(figures: dict[str, dict[int, float]]) -> list[str]:
    """Markdown table rows: one per batch size, one images/s column per precision."""
    precisions = list(figures)
    lines = [
        "| batch | " + " | ".join(f"{p} images/s" for p in precisions) + " |",
        "|---:|" + "---:|" * len(precisions),
    ]
    for batch in next(iter(figures.values())):
        lines.append(f"| {batch} | " + " | ".join(f"{figures[p][batch]:,.0f}" for p in precisions) + " |")
    return lines


def report(version_dir: Path, figures: dict[str, dict[int, float]]) -> str:
    return "\n".join([f"model: {version_dir}", f"machine: {machine()}", "", *table_lines(figures)])


def accuracy(version_dir: Path) -> float:
    dataset = data.load_fashion_mnist()
    probs = export.predict_exported(version_dir, dataset.x_test)["probabilities"]
    return float(np.mean(probs.argmax(axis=1) == dataset.y_test))
