"""Hinton's distillation loss (Hinton, Vinyals & Dean 2015), for a student taught at a softening temperature.

Each training target is 20 wide: the teacher's probabilities softened by the temperature T, then
the one-hot label. The loss is ``weight * T^2 * CE(teacher_T, student_T) + (1 - weight) * CE(label,
student)``, where ``student_T`` is the student's softmax of its logits divided by T: a soft target
moves the student's small probabilities (which classes an image could be mistaken for) only when
both sides are softened alike. T^2 keeps the soft term's gradients the size of the hard term's
whatever T is. On a 10-wide target (the validation split, the gradient probe) the loss is the plain
cross-entropy, so a taught run's best epoch is chosen on the same loss as an untaught run's.

The networks end in a softmax (training.architectures); the student's logits are recovered from its
probabilities as their log, which differs from the logits by a per-row constant that the softened
softmax removes.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from contract.classes import NUM_CLASSES

# log(p) for a probability that underflowed to 0: 69 nats below the top class, where a softened
# softmax at any sensible T still gives the class a share of (almost) nothing.
SMALLEST_PROBABILITY = 1e-30


class DistillationLoss(keras.losses.Loss):  # type: ignore[misc]  # keras has no type information: Loss is Any to mypy
    """weight * T^2 * CE(teacher softened, student softened) + (1 - weight) * CE(label, student)."""

    def __init__(
        self,
        temperature: float,
        teacher_weight: float,
        label_smoothing: float = 0.0,
        name: str = "distillation",
        **kwargs: Any,
    ) -> None:
        super().__init__(name=name, **kwargs)
        self.temperature = float(temperature)
        self.teacher_weight = float(teacher_weight)
        self.label_smoothing = float(label_smoothing)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        hard = keras.losses.categorical_crossentropy(
            y_true[..., -NUM_CLASSES:], y_pred, label_smoothing=self.label_smoothing
        )
        if y_true.shape[-1] == NUM_CLASSES:
            return hard
        teacher = y_true[..., :NUM_CLASSES]
        student_log = ops.log_softmax(ops.log(ops.maximum(y_pred, SMALLEST_PROBABILITY)) / self.temperature, axis=-1)
        soft = -ops.sum(teacher * student_log, axis=-1) * self.temperature**2
        return self.teacher_weight * soft + (1.0 - self.teacher_weight) * hard

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "temperature": self.temperature,
            "teacher_weight": self.teacher_weight,
            "label_smoothing": self.label_smoothing,
        }


def label_accuracy(y_true: Any, y_pred: Any) -> Any:
    """Top-1 against the label: the last ten columns of a distillation target, or the whole one-hot."""
    return keras.metrics.categorical_accuracy(y_true[..., -NUM_CLASSES:], y_pred)
