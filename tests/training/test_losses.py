"""Hinton's distillation loss (training/losses.py) against a NumPy reference written from the paper."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from training.calibrate import softmax
from training.losses import DistillationLoss, label_accuracy


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


@pytest.fixture
def batch():
    rng = np.random.default_rng(7)
    student_logits = rng.normal(0.0, 4.0, (64, 10))
    teacher_logits = rng.normal(0.0, 4.0, (64, 10))
    labels = rng.integers(0, 10, 64)
    return student_logits, teacher_logits, np.eye(10)[labels]


@pytest.mark.parametrize(("temperature", "weight", "smoothing"), [(4.0, 0.7, 0.1), (2.0, 0.9, 0.0), (1.0, 1.0, 0.0)])
def test_the_loss_is_the_softened_cross_entropy_scaled_by_t_squared_plus_the_labels(
    batch, temperature, weight, smoothing
):
    student_logits, teacher_logits, one_hot = batch
    teacher = softmax(teacher_logits, temperature)
    smoothed = one_hot * (1 - smoothing) + smoothing / 10
    soft = -(teacher * _log_softmax(student_logits / temperature)).sum(axis=1) * temperature**2
    hard = -(smoothed * _log_softmax(student_logits)).sum(axis=1)
    expected = (weight * soft + (1 - weight) * hard).mean()

    loss = DistillationLoss(temperature, weight, label_smoothing=smoothing)
    # The network hands over probabilities, not logits: the loss recovers what it needs from them.
    got = float(loss(np.concatenate([teacher, one_hot], axis=1), softmax(student_logits)))
    assert got == pytest.approx(expected, rel=1e-4)


def test_on_a_plain_label_the_loss_is_the_cross_entropy_an_untaught_run_is_chosen_on(batch):
    student_logits, _, one_hot = batch
    probabilities = softmax(student_logits).astype(np.float32)
    plain = keras.losses.CategoricalCrossentropy(label_smoothing=0.1)(one_hot, probabilities)
    got = DistillationLoss(4.0, 0.7, label_smoothing=0.1)(one_hot, probabilities)
    assert float(got) == pytest.approx(float(plain), rel=1e-6)


def test_a_probability_that_underflowed_to_zero_leaves_the_loss_finite():
    probabilities = np.array([[1.0] + [0.0] * 9], dtype=np.float32)
    teacher = softmax(np.array([[5.0, 4.0] + [0.0] * 8]), 4.0)
    target = np.concatenate([teacher, np.eye(10)[[0]]], axis=1)
    loss = float(DistillationLoss(4.0, 0.7)(target, probabilities))
    # The zero classes sit 69 nats (a floor of 1e-30) below the top: the soft term is large, not inf,
    # and the label's term is nil (the top class is the label, at probability 1).
    floored = np.log(np.maximum(probabilities.astype(np.float64), 1e-30))
    soft = -(teacher * _log_softmax(floored / 4.0)).sum() * 16.0
    assert np.isfinite(loss) and loss == pytest.approx(0.7 * soft, rel=1e-4)


def test_the_accuracy_reads_the_label_half_of_a_distillation_target():
    probabilities = np.eye(10, dtype=np.float32)[[1, 2, 3, 4]]
    labels = np.eye(10, dtype=np.float32)[[1, 2, 0, 4]]
    # The teacher's softened half puts its top elsewhere: only the label half may count.
    teacher = np.full((4, 10), 0.05, dtype=np.float32)
    teacher[:, 9] = 0.55
    assert np.asarray(label_accuracy(np.concatenate([teacher, labels], axis=1), probabilities)).tolist() == [
        1.0,
        1.0,
        0.0,
        1.0,
    ]
    assert np.asarray(label_accuracy(labels, probabilities)).tolist() == [1.0, 1.0, 0.0, 1.0]
