import numpy as np
import pytest

from contract.classes import CLASS_NAMES
from contract.seasons import default_seasons
from training import calibrate, sorting


def test_fit_temperature_recovers_the_true_temperature():
    rng = np.random.default_rng(0)
    true_logits = rng.normal(0, 2.0, size=(20000, 10))
    probs = calibrate.softmax(true_logits)
    labels = np.array([rng.choice(10, p=p) for p in probs])
    # A model that is over-confident by a factor of 2.5: the fitted T should undo it.
    fitted = calibrate.fit_temperature(true_logits * 2.5, labels)
    assert fitted == pytest.approx(2.5, rel=0.05)


def test_ece_is_zero_when_confidence_matches_accuracy_and_measures_the_gap():
    probs = np.full((100, 10), 0.0)
    probs[:, 0] = 1.0
    labels = np.zeros(100, dtype=int)
    assert calibrate.expected_calibration_error(probs, labels) == 0.0
    labels[:30] = 1  # 100 % confident, 70 % right
    assert calibrate.expected_calibration_error(probs, labels) == pytest.approx(0.30)


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
    for i, (label, c) in enumerate(zip(labels, confidence)):
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


def test_a_recipe_compares_settings_a_run_predates_at_their_defaults():
    from training.calibrate import _recipe

    before_zoom = {"arch": "fashion-cnn", "seed": 42, "patience": 45, "histograms": True, "full_train": False}
    now = {
        "arch": "fashion-cnn",
        "seed": 42,
        "zoom": 0.0,
        "extra": {},
        "patience": 50,
        "histograms": False,
        "full_train": True,
    }
    assert _recipe(before_zoom) == _recipe(now)
    assert _recipe(before_zoom) != _recipe({**now, "zoom": 0.05})
