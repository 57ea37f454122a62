"""`garment-sorter score-renders`: how runs would sort scanner photos, judged on validation only.

The runs (an ensemble as `calibrate` takes it) get their temperature and review threshold from the
raw validation images, as calibration would choose them, and are then scored on a render set of
validation images (`python -m bench renders --renders-split validation`): per scanner condition,
top-1, the share sent to review for low confidence and the share put in the wrong season's bin
without review. The photo's own review reasons (no garment, cut off, ...) are not in a render set:
these figures compare models, the scanner benchmark measures the service. The test split is never
read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from contract.renders import read_render_set
from training import data
from training.calibrate import fit_temperature, softmax
from training.ensemble import Ensemble, predict_logits
from training.sorting import choose_review_threshold, sorting_figures
from training.train import load_best


def sorting_of(probabilities: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, float]:
    """Top-1, review share (bin confidence below the threshold) and wrong bin without review."""
    sorting = sorting_figures(probabilities, labels, threshold)
    return {
        "top1": float(np.mean(probabilities.argmax(axis=1) == labels)),
        "review_share": sorting["review_share"],
        "wrong_bin_share": sorting["wrong_bin_rate"],
        "images": len(labels),
    }


def score_renders(runs: Ensemble[Path], renders_path: Path) -> dict[str, Any]:
    """The runs calibrated on raw validation, then scored there and on the render set."""
    split = data.split_train_validation(data.load_fashion_mnist())
    renders = read_render_set(Path(renders_path))
    models = runs.map(load_best)
    raw_logits = predict_logits(models, split.x_val)
    temperature = fit_temperature(raw_logits, split.y_val)
    raw = softmax(raw_logits, temperature)
    threshold = choose_review_threshold(raw, split.y_val)
    rendered = softmax(predict_logits(models, renders.images), temperature)
    conditions = {
        name: sorting_of(
            rendered[renders.conditions == number], renders.labels[renders.conditions == number], threshold
        )
        for number, name in enumerate(renders.condition_names)
    }
    return {
        "temperature": temperature,
        "review_threshold": threshold,
        "raw_validation": sorting_of(raw, split.y_val, threshold),
        "renders": sorting_of(rendered, renders.labels, threshold),
        "conditions": conditions,
    }


def table(scores: dict[str, Any]) -> list[str]:
    """The figures as a Markdown table: top-1 / sent to review / wrong bin, per row."""

    def row(name: str, figures: dict[str, float]) -> str:
        return (
            f"| {name} | {figures['images']:,} | {100 * figures['top1']:.1f} % | "
            f"{100 * figures['review_share']:.1f} % | {100 * figures['wrong_bin_share']:.2f} % |"
        )

    return [
        f"temperature {scores['temperature']:.3f}, review threshold {scores['review_threshold']:.4f}",
        "",
        "| images | count | top-1 | sent to review | wrong bin, not reviewed |",
        "|---|---:|---:|---:|---:|",
        row("raw validation", scores["raw_validation"]),
        row("renders, all conditions", scores["renders"]),
        *(row(name, figures) for name, figures in scores["conditions"].items()),
    ]
