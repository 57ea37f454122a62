"""The exported SavedModel, run at fixed padded batch sizes (no retracing, no surprise latency).

The contract it checks (signature, input, metadata) is written in contract/; training/export.py
writes it. Where the CPU computes bfloat16 natively the ``serving_bfloat16`` signature runs.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from app.inference.model import Images, Inference, ModelError, Probabilities, bucket_for, padded_sizes
from app.inference.precision import choose_precision
from contract.classes import IMAGE_SHAPE
from contract.metadata import ModelMetadata, read_metadata
from contract.signature import INPUT_DTYPE, INPUT_NAME, INPUT_SHAPE, LOGITS_NAME, OUTPUT_DTYPE, OUTPUT_NAME, cpu_flags
from contract.unfamiliar import energy
from contract.versions import latest

log = logging.getLogger(__name__)


@dataclass
class TensorFlowModel:
    """A SavedModel signature run at fixed padded batch sizes (no retracing, no surprise latency)."""

    path: Path
    metadata: ModelMetadata
    batch_sizes: tuple[int, ...]
    device: str
    precision: str
    _signature: Any = field(repr=False)
    _keepalive: Any = field(repr=False)  # the loaded object owns the variables
    _buffers: dict[int, np.ndarray] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def version(self) -> int:
        return int(self.path.name)

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.metadata.class_names

    @property
    def temperature(self) -> float | None:
        return self.metadata.temperature

    @property
    def review_threshold(self) -> float | None:
        """The threshold chosen for the served precision's own outputs when the export recorded
        one (bfloat16 answers differ slightly from float32), else the model's."""
        return self.metadata.review_threshold_for(self.precision)

    @property
    def accuracy(self) -> dict[str, float | None]:
        """Accuracy of the signature being served, as the export measured it (else the run's)."""
        return self.metadata.accuracy_for(self.precision)

    @property
    def unfamiliar_threshold(self) -> float | None:
        """The energy at or over which an input is unfamiliar; None: the export has no threshold."""
        block = self.metadata.unfamiliar
        return None if block is None else block.threshold

    def predict(self, images: Images) -> Probabilities:
        return self.infer(images).probabilities

    def infer(self, images: Images) -> Inference:
        import tensorflow as tf

        n = images.shape[0]
        size = bucket_for(n, self.batch_sizes)
        with self._lock:  # the buffers are shared; the service calls from one thread, tools may not
            buffer = self._buffers.get(size)
            if buffer is None:
                buffer = self._buffers[size] = np.zeros((size, *IMAGE_SHAPE, 1), dtype=np.uint8)
            buffer[:n, :, :, 0] = images
            buffer[n:] = 0
            outputs = self._signature(**{INPUT_NAME: tf.constant(buffer)})
            probabilities: Probabilities = outputs[OUTPUT_NAME].numpy()[:n]
            threshold = self.unfamiliar_threshold
            if threshold is None or LOGITS_NAME not in outputs:
                return Inference(probabilities, np.zeros(n, bool))
            return Inference(probabilities, energy(outputs[LOGITS_NAME].numpy()[:n]) >= threshold)

    def warmup(self) -> None:
        """Run every padded size once (graph, kernels and buffers ready) and sanity-check outputs."""
        import tensorflow as tf

        rng = np.random.default_rng(0)
        for size in self.batch_sizes:
            images = rng.integers(0, 256, (size, *IMAGE_SHAPE), dtype=np.uint8)
            for _ in range(2):
                probabilities = self.predict(images)
            if probabilities.shape != (size, len(self.class_names)) or not np.all(np.isfinite(probabilities)):
                raise ModelError(f"{self.path}: warm-up at batch {size} gave invalid probabilities")
            if not np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-3):
                raise ModelError(f"{self.path}: probabilities do not sum to 1")
        # The export applies the temperature inside the graph; check, so it is never applied twice.
        outputs = self._signature(**{INPUT_NAME: tf.constant(images[..., None])})
        if LOGITS_NAME in outputs and self.temperature:
            logits = outputs[LOGITS_NAME].numpy().astype(np.float64) / self.temperature
            expected = np.exp(logits - logits.max(axis=1, keepdims=True))
            expected /= expected.sum(axis=1, keepdims=True)
            if not np.allclose(outputs[OUTPUT_NAME].numpy(), expected, atol=1e-4):
                log.warning(
                    "%s: probabilities are not softmax(logits / %s); served as the graph gives them",
                    self.path,
                    self.temperature,
                )

    def describe(self) -> dict[str, Any]:
        m = self.metadata
        return {
            "name": self.name,
            "version": self.version,
            "architecture": m.architecture,
            "params": m.params,
            "ensemble_size": m.ensemble_size,
            "unsure_members": m.unsure_members,
            "tta_flip": m.tta_flip,
            "flip_below": m.flip_below,
            "classes": list(self.class_names),
            "accuracy": self.accuracy,
            "calibrated_by": m.calibrated_by.runs if m.calibrated_by else None,
            "temperature": self.temperature,
            "input": m.input.model_dump(),
            "device": self.device,
            "precision": self.precision,
            "batch_sizes": list(self.batch_sizes),
            "created_at": m.created_at,
            "git_commit": m.git_commit,
        }


def _configure_tensorflow(intra_op_threads: int, inter_op_threads: int) -> str:
    """Thread pools and GPU memory growth; must run before TensorFlow executes anything."""
    import tensorflow as tf

    try:
        if intra_op_threads:
            tf.config.threading.set_intra_op_parallelism_threads(intra_op_threads)
        if inter_op_threads:
            tf.config.threading.set_inter_op_parallelism_threads(inter_op_threads)
    except RuntimeError:
        log.debug("TensorFlow already initialised; thread settings unchanged")
    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:
            log.debug("TensorFlow already initialised; memory growth unchanged for %s", gpu.name)
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        return f"GPU:0 ({details.get('device_name', gpus[0].name)})"
    return f"CPU ({os.cpu_count()} cores, {intra_op_threads or 'default'} intra-op threads)"


def load_tensorflow_model(
    model_dir: Path,
    max_batch_size: int,
    intra_op_threads: int = 1,
    inter_op_threads: int = 1,
    precision: str = "auto",
) -> TensorFlowModel:
    """Load the highest version under model_dir and check its signature; raise ModelError."""
    return load_version_dir(latest(Path(model_dir)), max_batch_size, intra_op_threads, inter_op_threads, precision)


def load_version_dir(
    version_dir: Path,
    max_batch_size: int,
    intra_op_threads: int = 1,
    inter_op_threads: int = 1,
    precision: str = "auto",
) -> TensorFlowModel:
    """Load one version directory and check it against the contract; raise ModelError or MetadataError."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    metadata = read_metadata(version_dir)
    if metadata.version is not None and str(metadata.version) != version_dir.name:
        log.warning("%s says version %s but lives in %s", version_dir, metadata.version, version_dir)
    device = _configure_tensorflow(intra_op_threads, inter_op_threads)
    import tensorflow as tf

    try:
        loaded = tf.saved_model.load(str(version_dir))
    except Exception as exc:
        raise ModelError(f"{version_dir}: not a loadable SavedModel ({type(exc).__name__}: {exc})") from None
    exported = metadata.exported_signatures()
    chosen = choose_precision(precision, exported, device.startswith("GPU"), cpu_flags())
    signature_name = exported[chosen]
    signature = loaded.signatures.get(signature_name)
    if signature is None:
        raise ModelError(f"{version_dir}: no '{signature_name}' signature (has {list(loaded.signatures)})")
    _check_signature(version_dir, signature, len(metadata.class_names))
    log.info(
        "model %s version %s from %s on %s, %s (%s)",
        metadata.name,
        version_dir.name,
        version_dir,
        device,
        chosen,
        signature_name,
    )
    return TensorFlowModel(
        path=version_dir,
        metadata=metadata,
        batch_sizes=padded_sizes(max_batch_size),
        device=device,
        precision=chosen,
        _signature=signature,
        _keepalive=loaded,
    )


def _check_signature(version_dir: Path, signature: Any, num_classes: int) -> None:
    """The signature's input and output as contract.signature states them."""
    args, kwargs = signature.structured_input_signature
    spec = kwargs.get(INPUT_NAME) if not args else None
    if spec is None or set(kwargs) != {INPUT_NAME}:
        raise ModelError(f"{version_dir}: signature input must be exactly '{INPUT_NAME}' (has {sorted(kwargs)})")
    expected_input = (INPUT_DTYPE, list(INPUT_SHAPE))
    if (spec.dtype.name, spec.shape.as_list()) != expected_input:
        raise ModelError(
            f"{version_dir}: input '{INPUT_NAME}' must be {_described(*expected_input)}, "
            f"is {_described(spec.dtype.name, spec.shape.as_list())}"
        )
    outputs = signature.structured_outputs
    out = outputs.get(OUTPUT_NAME) if isinstance(outputs, dict) else None
    if out is None:
        raise ModelError(f"{version_dir}: signature has no '{OUTPUT_NAME}' output")
    expected_output = (OUTPUT_DTYPE, [None, num_classes])
    if (out.dtype.name, out.shape.as_list()) != expected_output:
        raise ModelError(
            f"{version_dir}: output '{OUTPUT_NAME}' must be {_described(*expected_output)}, "
            f"is {_described(out.dtype.name, out.shape.as_list())}"
        )


def _described(dtype: str, shape: list[int | None]) -> str:
    return f"{dtype} [{', '.join(str(d) for d in shape)}]"
