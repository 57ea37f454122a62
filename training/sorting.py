"""What the warehouse sees: season bins from class probabilities, and the manual-review threshold.

An item goes to the bin of the season with the largest probability mass (the sum of its classes'
probabilities), or to manual review when that mass is below the review threshold; the seasons are
the default policy's (contract.seasons), the map the service serves. The threshold is chosen on
the validation split; the test split only reports the figures it gives.
"""

from __future__ import annotations

import numpy as np

from contract.classes import CLASS_NAMES
from contract.seasons import default_season_of_class, default_seasons

MAX_WRONG_BIN_RATE = 0.01  # wrong-bin items the warehouse accepts, as a share of all items


def season_matrix(class_names: tuple[str, ...] = CLASS_NAMES) -> np.ndarray:
    """(10, 3) 0/1 matrix: probabilities @ matrix = probability mass per season."""
    seasons, season_of_class = default_seasons(), default_season_of_class()
    matrix = np.zeros((len(class_names), len(seasons)), dtype=np.float64)
    for i, name in enumerate(class_names):
        matrix[i, seasons.index(season_of_class[name])] = 1.0
    return matrix


def bin_decisions(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Predicted season bin (largest mass) and its mass, per item."""
    mass = probs @ season_matrix()
    return mass.argmax(axis=1), mass.max(axis=1)


def true_seasons(labels: np.ndarray) -> np.ndarray:
    """The season index of each label."""
    seasons: np.ndarray = season_matrix()[labels].argmax(axis=1)
    return seasons


def sorting_figures(probs: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, float]:
    """Season accuracy, and at the threshold: review share and wrong-bin rate (of all items)."""
    predicted, confidence = bin_decisions(probs)
    wrong = predicted != true_seasons(labels)
    review = confidence < threshold
    return {
        "season_accuracy": float(1 - wrong.mean()),
        "review_share": float(review.mean()),
        "wrong_bin_rate": float((wrong & ~review).mean()),
        "wrong_bin_rate_of_sorted": float((wrong & ~review).sum() / max(1, (~review).sum())),
    }


def choose_review_threshold(probs: np.ndarray, labels: np.ndarray, max_wrong_rate: float = MAX_WRONG_BIN_RATE) -> float:
    """Smallest review share keeping wrong-bin items <= max_wrong_rate of all items.

    Items with bin confidence < threshold go to review. Raising the threshold only adds
    reviewed items, so the answer is the lowest confidence level that satisfies the bound.
    """
    predicted, confidence = bin_decisions(probs)
    wrong = predicted != true_seasons(labels)
    n = len(labels)
    levels = np.unique(confidence)  # ascending
    # wrong items accepted at threshold t: wrong items with confidence >= t
    order = np.sort(confidence[wrong])
    accepted_wrong = len(order) - np.searchsorted(order, levels, side="left")
    ok = accepted_wrong <= max_wrong_rate * n
    if not ok.any():
        return 1.0
    threshold = float(levels[np.argmax(ok)])
    return threshold


def risk_coverage(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Coverage (share sorted automatically) and risk (wrong-bin items / all items), by threshold."""
    predicted, confidence = bin_decisions(probs)
    wrong = predicted != true_seasons(labels)
    order = np.argsort(-confidence)
    coverage = np.arange(1, len(order) + 1) / len(order)
    risk = np.cumsum(wrong[order]) / len(order)
    return coverage, risk
