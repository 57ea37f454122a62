"""Small real training runs the training tests share: seconds each, far above chance."""

from pathlib import Path

from training.train import RunResult, TrainConfig, train

# 2 epochs of a3-model2 (34,826 parameters) on 2,000 images
SMOKE = {"arch": "a3-model2", "epochs": 2, "batch_size": 128, "limit_train": 2000, "seed": 3}
SMOKE_PARAMS = 34_826


def train_smoke(out: Path, **changes) -> RunResult:
    """Train the smoke recipe with ``changes`` into ``out``."""
    return train(TrainConfig(**{**SMOKE, **changes}), out, verbose=0)
