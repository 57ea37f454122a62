"""The training recipe's optimizer and learning-rate schedule, Keras only (any backend).

training.train builds every run's optimizer here; the GPU check (bench.gpu_worker) builds the same
one under the JAX backend, where nothing may import TensorFlow.
"""

from __future__ import annotations

import keras

OPTIMIZERS = ("adam", "adamw", "sgd")
LR_SCHEDULES = ("constant", "cosine")


def make_optimizer(
    name: str,
    learning_rate: float,
    *,
    weight_decay: float = 0.0,
    lr_schedule: str = "constant",
    warmup_epochs: int = 0,
    epochs: int = 1,
    steps_per_epoch: int = 1,
) -> keras.optimizers.Optimizer:
    """Adam, AdamW or SGD (Nesterov momentum 0.9) at ``learning_rate``: constant, or with
    ``lr_schedule="cosine"`` a linear warm-up over ``warmup_epochs`` then cosine decay to 0 by the
    end of ``epochs``."""
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)} (got {name!r})")
    if lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)} (got {lr_schedule!r})")
    lr = learning_rate
    if lr_schedule == "cosine":
        warmup_steps = warmup_epochs * steps_per_epoch
        total_steps = epochs * steps_per_epoch
        lr = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=0.0 if warmup_steps else learning_rate,
            decay_steps=max(1, total_steps - warmup_steps),
            warmup_target=learning_rate if warmup_steps else None,
            warmup_steps=warmup_steps,
            alpha=0.0,
        )
    if name == "adamw":
        return keras.optimizers.AdamW(learning_rate=lr, weight_decay=weight_decay)
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate=lr, momentum=0.9, nesterov=True)
    return keras.optimizers.Adam(learning_rate=lr)
