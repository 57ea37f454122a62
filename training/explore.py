"""The study's "Avance 2": what the data looks like, written to a report directory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from contract.classes import CLASS_NAMES, NUM_CLASSES
from training import report
from training.data import FashionMNIST


def summary(data: FashionMNIST) -> dict[str, Any]:
    """Shape, dimensions, dtype and size of each array, as the study printed them."""
    arrays = {"x_train": data.x_train, "y_train": data.y_train, "x_test": data.x_test, "y_test": data.y_test}
    out: dict[str, Any] = {
        name: {"shape": list(a.shape), "ndim": a.ndim, "dtype": str(a.dtype), "size": int(a.size)}
        for name, a in arrays.items()
    }
    for split in ("train", "test"):
        counts = np.bincount(arrays[f"y_{split}"], minlength=NUM_CLASSES)
        out[f"class_counts_{split}"] = {CLASS_NAMES[i]: int(c) for i, c in enumerate(counts)}
        out[f"balanced_{split}"] = bool(counts.min() == counts.max())
    out["source"] = data.source
    return out


def write_report(data: FashionMNIST, out_dir: Path) -> list[Path]:
    """The exploration report (figures, dataset_summary.json, exploration.md); the paths written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    facts = summary(data)
    written = [
        report.first_image(data.x_train[0], int(data.y_train[0]), out_dir / "first_image.png"),
        report.sample_grid(data.x_train[:9], data.y_train[:9], out_dir / "samples_3x3.png"),
        report.class_distribution({"train": data.y_train, "test": data.y_test}, out_dir / "class_distribution.png"),
    ]
    (out_dir / "dataset_summary.json").write_text(json.dumps(facts, indent=2))
    written.append(out_dir / "dataset_summary.json")

    lines = [
        "# Fashion-MNIST: exploration",
        "",
        f"Source: `{facts['source']}`",
        "",
        "| array | shape | ndim | dtype | size |",
        "|---|---|---:|---|---:|",
    ]
    for name in ("x_train", "y_train", "x_test", "y_test"):
        f = facts[name]
        lines.append(f"| {name} | {tuple(f['shape'])} | {f['ndim']} | {f['dtype']} | {f['size']:,} |")
    lines += ["", "## Class balance", "", "| class | train | test |", "|---|---:|---:|"]
    for name in CLASS_NAMES:
        lines.append(f"| {name} | {facts['class_counts_train'][name]:,} | {facts['class_counts_test'][name]:,} |")
    for split in ("train", "test"):
        counts = list(facts[f"class_counts_{split}"].values())
        verdict = (
            f"perfectly balanced: {counts[0]:,} images in every class"
            if facts[f"balanced_{split}"]
            else f"not balanced: {min(counts):,} to {max(counts):,} images per class"
        )
        lines.append(f"\nThe {split} set is {verdict}.")
    lines += [
        "",
        "![first training image](first_image.png)",
        "",
        "![first nine](samples_3x3.png)",
        "",
        "![class distribution](class_distribution.png)",
        "",
    ]
    (out_dir / "exploration.md").write_text("\n".join(lines))
    written.append(out_dir / "exploration.md")
    return written
