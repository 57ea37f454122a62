"""Operating points of the review threshold on scanner photos: what each threshold costs in review
and buys in wrong bins, condition by condition.

The shipped threshold is chosen on clean validation images (the model's metadata). A warehouse that
wants the wrong bin without review under a target in every scanner condition can set
SORTER_REVIEW_THRESHOLD; which value does that, and what it sends to review, is measured here. The
thresholds are chosen on validation renders (`python -m bench scanner --split validation`, which
writes THRESHOLDS_JSON) and only reported on the test renders (`python -m bench scanner`), never
chosen there.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

TARGETS = (0.01, 0.0075, 0.005)  # wrong bin without review, in every garment condition


@dataclass(frozen=True)
class Outcomes:
    """One condition's photos as the policy sees them, whatever the threshold."""

    mass: np.ndarray  # float (N,): the best season's probability mass
    season_ok: np.ndarray  # bool (N,): that season is the garment's
    held: np.ndarray  # bool (N,): to review for another reason (the photo, unfamiliar, refused)

    def at(self, threshold: float) -> tuple[float, float]:
        """(review share, wrong bin without review share) with this review threshold."""
        review = self.held | (self.mass < threshold)
        return float(review.mean()), float((~self.season_ok & ~review).mean())


def lowest_threshold(outcomes: dict[str, Outcomes], target: float) -> float:
    """The smallest threshold (the least review) at which every condition's wrong bin without
    review is at most ``target``: above the k-th largest mass among each condition's wrong,
    otherwise-sorted photos, where k is how many wrong ones the target allows."""
    needed = 0.0
    for found in outcomes.values():
        wrong_masses = np.sort(found.mass[~found.season_ok & ~found.held])[::-1]
        allowed = math.floor(target * len(found.mass) + 1e-9)
        if len(wrong_masses) > allowed:
            needed = max(needed, float(np.nextafter(wrong_masses[allowed], np.inf)))
    return needed


def member_runs(metadata: dict[str, Any]) -> list[str]:
    """The training runs an export's networks came from (its model card names them)."""
    return sorted(member["run"] for member in metadata.get("ensemble_members", []))


def check_held_out(metadata: dict[str, Any]) -> None:
    """Thresholds are chosen on validation images only with a model that never trained on them."""
    if metadata.get("validation_accuracy") is None:
        raise SystemExit(
            f"version {metadata.get('version')} was trained on the validation split: choose its thresholds"
            " with its held-out twin (SORTER_MODEL_DIR=a folder holding only the twin's version)"
        )


def choose(outcomes: dict[str, Outcomes], model: str, metadata: dict[str, Any], per_class: int) -> dict[str, Any]:
    """The thresholds for each target, with where they were chosen (written to THRESHOLDS_JSON)."""
    return {
        "model": model,
        "runs": member_runs(metadata),
        "chosen_on": f"{per_class} validation renders per class and condition, scored by {model}",
        "thresholds": [{"target": target, "threshold": lowest_threshold(outcomes, target)} for target in TARGETS],
    }


def report(outcomes: dict[str, Outcomes], chosen: dict[str, Any], shipped: float) -> list[dict[str, Any]]:
    """Each chosen threshold (and the shipped one) on these photos: review and wrong bin per condition."""
    rows = [{"target": None, "threshold": shipped}, *chosen["thresholds"]]
    return [
        {
            **row,
            "conditions": {
                name: dict(zip(("review_share", "wrong_bin_share"), found.at(row["threshold"]), strict=True))
                for name, found in outcomes.items()
            },
        }
        for row in rows
    ]


def table(points: list[dict[str, Any]], chosen_on: str) -> list[str]:
    """docs/scanner.md's operating-point section."""
    lines = [
        "## Operating points",
        "",
        (
            "The review threshold trades review for wrong bins. The first row is the shipped threshold"
            " (the model's metadata, chosen on clean validation images); the others are the lowest"
            " thresholds (chosen by `python -m bench scanner --split validation`, never on these test"
            " photos) that kept the wrong bin without review at or under a target in every garment"
            f" condition on {chosen_on}. Set one with `SORTER_REVIEW_THRESHOLD`; on a running line,"
            " `garment-sorter review-threshold` measures the same trade on the warehouse's own reviewed"
            " items ([decisions.md](decisions.md#choosing-the-review-threshold))."
        ),
        "",
        (
            "| threshold | chosen for | review: control | review: worst condition"
            " | wrong bin: control | wrong bin: worst condition | conditions over 1.0 % wrong bin |"
        ),
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for point in points:
        conditions = point["conditions"]
        control = next(iter(conditions.values()))  # bench.scanner's first condition
        worst_review = max(conditions.items(), key=lambda item: item[1]["review_share"])
        worst_wrong = max(conditions.items(), key=lambda item: item[1]["wrong_bin_share"])
        over = sum(row["wrong_bin_share"] > 0.01 for row in conditions.values())
        purpose = "shipped" if point["target"] is None else f"<= {100 * point['target']:.2f} % wrong bin"
        lines.append(
            f"| {point['threshold']:.4f} | {purpose} | {100 * control['review_share']:.1f} %"
            f" | {100 * worst_review[1]['review_share']:.1f} % ({worst_review[0]})"
            f" | {100 * control['wrong_bin_share']:.2f} %"
            f" | {100 * worst_wrong[1]['wrong_bin_share']:.2f} % ({worst_wrong[0]}) | {over} of {len(conditions)} |"
        )
    return lines


def read_chosen(path: Path, model: str, metadata: dict[str, Any]) -> dict[str, Any] | None:
    """The thresholds chosen on validation renders for this model, or for the held-out twin it was
    calibrated by (a model trained on every image takes its twin's calibration, as in training);
    None when there are none for it."""
    if not path.is_file():
        return None
    chosen: dict[str, Any] = json.loads(path.read_text())
    twin_runs = sorted((metadata.get("calibrated_by") or {}).get("runs", []))
    return chosen if chosen.get("model") == model or (twin_runs and chosen.get("runs") == twin_runs) else None
