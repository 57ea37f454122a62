import numpy as np
import pytest

from contract.classes import CLASS_NAMES
from contract.seasons import default_seasons
from training import sorting


def test_season_mass_sums_class_probabilities():
    probs = np.zeros((1, 10))
    probs[0, CLASS_NAMES.index("Shirt")] = 0.4  # all-season
    probs[0, CLASS_NAMES.index("T-shirt/top")] = 0.35  # summer
    probs[0, CLASS_NAMES.index("Dress")] = 0.25  # summer
    season, mass = sorting.bin_decisions(probs)
    assert default_seasons()[season[0]] == "summer"
    assert mass[0] == pytest.approx(0.60)


def _one_hot_probs(labels, confidence):
    probs = np.full((len(labels), 10), 0.0)
    for i, (label, c) in enumerate(zip(labels, confidence, strict=True)):
        probs[i, label] = c
        probs[i, (label + 1) % 10] = 1 - c
    return probs


def test_review_threshold_is_the_smallest_that_keeps_wrong_bins_under_one_percent():
    # 1,000 items; 30 wrong-bin items at confidence 0.50..0.79, right items at 0.90.
    n = 1000
    labels = np.full(n, CLASS_NAMES.index("Trouser"))  # all-season
    predicted = labels.copy()
    predicted[:30] = CLASS_NAMES.index("Coat")  # winter: wrong bin
    confidence = np.full(n, 0.9)
    confidence[:30] = np.linspace(0.50, 0.79, 30)
    probs = _one_hot_probs(predicted, confidence)
    threshold = sorting.choose_review_threshold(probs, labels)
    figures = sorting.sorting_figures(probs, labels, threshold)
    # 10 wrong items may stay (1 % of 1,000): the 20 least confident go to review.
    assert figures["wrong_bin_rate"] == pytest.approx(0.010)
    assert figures["review_share"] == pytest.approx(0.020)
    assert threshold == pytest.approx(confidence[20])
