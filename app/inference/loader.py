"""The model the settings ask for: the newest SavedModel version, or the null model."""

from __future__ import annotations

from app.config import Settings
from app.inference.model import Model, ModelError, padded_sizes
from app.inference.null_model import NullModel
from app.inference.tensorflow_model import load_tensorflow_model, load_version_dir
from contract.versions import SAVED_MODEL_FILE


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


def load_version(settings: Settings, version: int) -> Model:
    """One named version under SORTER_MODEL_DIR (a roll-out loads candidates this way)."""
    if settings.model_backend == "null":
        raise ModelError("the null model has no versions to roll out")
    version_dir = settings.resolved_model_dir() / str(version)
    if not (version_dir / SAVED_MODEL_FILE).is_file():
        raise ModelError(f"{version_dir}: no {SAVED_MODEL_FILE} (not a complete version)")
    return load_version_dir(
        version_dir,
        settings.max_batch_size,
        settings.intra_op_threads,
        settings.tf_inter_op_threads,
        settings.precision,
    )
