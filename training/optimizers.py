"""The training recipe's optimizer and learning-rate schedule, Keras only (any backend).

training.train builds every run's optimizer here; the GPU check (bench.gpu_worker) builds the same
one under the JAX backend, where nothing may import TensorFlow.
"""

from __future__ import annotations

import keras

OPTIMIZERS = ("adam", "adamw", "sgd")
LR_SCHEDULES = ("constant", "cosine")


def learning_rate(
    peak: float, lr_schedule: str = "constant", warmup_epochs: int = 0, epochs: int = 1, steps_per_epoch: int = 1
) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """``peak`` constant, or with ``lr_schedule="cosine"`` a linear warm-up over ``warmup_epochs``
    then cosine decay to 0 by the end of ``epochs``."""
    if lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)} (got {lr_schedule!r})")
    if lr_schedule == "constant":
        return peak
    warmup_steps = warmup_epochs * steps_per_epoch
    total_steps = epochs * steps_per_epoch
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup_steps else peak,
        decay_steps=max(1, total_steps - warmup_steps),
        warmup_target=peak if warmup_steps else None,
        warmup_steps=warmup_steps,
        alpha=0.0,
    )


def make_optimizer(
    name: str,
    peak_learning_rate: float,
    *,
    weight_decay: float = 0.0,
    lr_schedule: str = "constant",
    warmup_epochs: int = 0,
    epochs: int = 1,
    steps_per_epoch: int = 1,
) -> keras.optimizers.Optimizer:
    """Adam, AdamW or SGD (Nesterov momentum 0.9) on ``learning_rate``'s schedule."""
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)} (got {name!r})")
    lr = learning_rate(peak_learning_rate, lr_schedule, warmup_epochs, epochs, steps_per_epoch)
    if name == "adamw":
        return keras.optimizers.AdamW(learning_rate=lr, weight_decay=weight_decay)
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate=lr, momentum=0.9, nesterov=True)
    return keras.optimizers.Adam(learning_rate=lr)
