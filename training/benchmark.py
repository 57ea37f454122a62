"""Raw throughput of an exported SavedModel by batch size: the ceiling the service works under."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Iterable
from pathlib import Path

import tensorflow as tf

from contract.metadata import read_metadata
from contract.signature import CPUINFO, INPUT_NAME, OUTPUT_NAME
from training import data, export

WARM_UP_CALLS = 3
MIN_TIMED_CALLS = 5


def machine() -> str:
    """The CPU model, its logical CPU count and the OS, as the reports name the machine."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in CPUINFO.read_text().splitlines():
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
    version_dir: Path,
    batch_sizes: Iterable[int],
    seconds_per_size: float = 3.0,
    precision: str = "float32",
) -> dict[int, float]:
    """Calls the serving signature on real test images; each size warmed first, then timed."""
    signature = export.load_signature(version_dir, precision)
    images = data.load_fashion_mnist().x_test[..., None]
    results = {}
    for batch_size in batch_sizes:
        batch = tf.constant(images[:batch_size])
        for _ in range(WARM_UP_CALLS):
            signature(**{INPUT_NAME: batch})
        calls, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds_per_size or calls < MIN_TIMED_CALLS:
            signature(**{INPUT_NAME: batch})[OUTPUT_NAME].numpy()
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
    """The model, the machine and the images/s table, as bench-model prints them."""
    return "\n".join([f"model: {version_dir}", f"machine: {machine()}", "", *table_lines(figures)])
