"""The unfamiliar score and its threshold: one definition for training and the service."""

from __future__ import annotations

import numpy as np
import pytest

from contract.unfamiliar import energy, threshold_for


def test_energy_is_minus_logsumexp_and_stable_for_large_logits():
    logits = np.array([[0.0, 0.0], [1000.0, 1000.0], [5.0, -5.0]])
    expected = [-np.log(2.0), -(1000.0 + np.log(2.0)), -(5.0 + np.log1p(np.exp(-10.0)))]
    assert energy(logits) == pytest.approx(expected, rel=1e-12)


def test_a_confident_input_is_more_familiar_than_a_flat_one():
    assert energy([[8.0, 0.0, 0.0]])[0] < energy([[1.0, 1.0, 1.0]])[0]


def test_the_threshold_lets_exactly_the_allowed_share_reach_it():
    scores = np.arange(1000, dtype=np.float64)  # 0 .. 999
    threshold = threshold_for(scores, 0.01)
    assert np.sum(scores >= threshold) == 10 and 989.0 < threshold <= 990.0
    assert np.sum(scores >= threshold_for(scores, 0.0)) == 0


def test_ties_never_push_the_share_over_the_allowed_one():
    scores = np.array([1.0] * 95 + [2.0] * 5)
    threshold = threshold_for(scores, 0.02)  # 2 may trip, but 5 are tied at the top: none may
    assert np.sum(scores >= threshold) == 0


def test_no_scores_is_an_error():
    with pytest.raises(ValueError):
        threshold_for([], 0.01)
