"""The model the settings ask for: the newest SavedModel version, or the null model."""

from __future__ import annotations

from app.config import Settings
from app.inference.model import Model, padded_sizes
from app.inference.null_model import NullModel
from app.inference.tensorflow_model import load_tensorflow_model


def load_model(settings: Settings) -> Model:
    """The model the settings ask for: the newest SavedModel version, or the null model."""
    if settings.model_backend == "null":
        return NullModel(batch_sizes=padded_sizes(settings.max_batch_size))
    return load_tensorflow_model(
        settings.resolved_model_dir(),
        settings.max_batch_size,
        settings.intra_op_threads,
        settings.tf_inter_op_threads,
        settings.precision,
    )
