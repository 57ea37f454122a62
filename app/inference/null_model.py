"""The service without inference: a constant answer, the benchmark's throughput ceiling."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from app.inference.model import Images, Inference, Probabilities, bucket_for
from contract.classes import CLASS_NAMES
from contract.signature import INPUT_DTYPE, INPUT_NAME, INPUT_SHAPE

# Trouser, surely: a constant row whose season (all-season) is above any review threshold.
CONSTANT_ROW = np.array([0.02, 0.82, 0.02, 0.02, 0.02, 0.02, 0.02, 0.02, 0.02, 0.02], np.float32)


@dataclass
class NullModel:
    batch_sizes: tuple[int, ...]
    name: str = "null"
    version: int = 0
    class_names: tuple[str, ...] = CLASS_NAMES
    review_threshold: float | None = None
    _row: Probabilities = field(default_factory=lambda: CONSTANT_ROW, repr=False)

    def predict(self, images: Images) -> Probabilities:
        bucket_for(images.shape[0], self.batch_sizes)
        return np.broadcast_to(self._row, (images.shape[0], self._row.size))

    def infer(self, images: Images) -> Inference:
        return Inference(self.predict(images), np.zeros(images.shape[0], bool))

    def warmup(self) -> None:
        return None

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "architecture": "null (constant output, no inference)",
            "params": 0,
            "ensemble_size": 0,
            "unsure_members": 0,
            "tta_flip": False,
            "flip_below": None,
            "classes": list(self.class_names),
            "accuracy": {"validation": None, "test": None},
            "temperature": None,
            "input": {"name": INPUT_NAME, "dtype": INPUT_DTYPE, "shape": list(INPUT_SHAPE)},
            "device": "none",
            "precision": None,
            "batch_sizes": list(self.batch_sizes),
            "created_at": None,
            "git_commit": None,
        }
