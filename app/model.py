"""The exported model: find the newest version, check its contract, run it on padded batches.

Contract (written by ``training/export.py``): ``<model_dir>/<integer version>/`` is a TensorFlow
SavedModel with signature ``serving_default``: ``images`` uint8 [None, 28, 28, 1] ->
``probabilities`` float32 [None, 10] (already temperature-scaled) and ``logits``; beside it
``metadata.json``. Newer versions also export ``serving_bfloat16`` (same contract, bfloat16
compute) and list both under ``signatures`` in the metadata; the service runs it where the CPU
computes bfloat16 natively. This module never imports ``training``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

log = logging.getLogger(__name__)

SIGNATURE = "serving_default"
PRECISIONS = ("float32", "bfloat16")
# CPU flags (Linux /proc/cpuinfo) under which oneDNN runs bfloat16 convolutions in hardware.
NATIVE_BFLOAT16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
INPUT_NAME = "images"
OUTPUT_NAME = "probabilities"
METADATA_FILE = "metadata.json"
IMAGE_SHAPE = (28, 28)


class ModelError(RuntimeError):
    """The model directory, metadata or signature breaks the contract."""


def padded_sizes(max_batch_size: int) -> tuple[int, ...]:
    """The fixed batch sizes the model is ever run at: powers of two up to the maximum (and it)."""
    sizes = [1 << i for i in range(int(math.log2(max_batch_size)) + 1)]
    if sizes[-1] != max_batch_size:
        sizes.append(max_batch_size)
    return tuple(sizes)


def bucket_for(n: int, sizes: tuple[int, ...]) -> int:
    for size in sizes:
        if size >= n:
            return size
    raise ValueError(f"batch of {n} exceeds the largest padded size {sizes[-1]}")


def find_version(model_dir: Path) -> Path:
    """The highest integer version directory that holds a saved_model.pb."""
    if not model_dir.is_dir():
        raise ModelError(f"model directory {model_dir} does not exist (set SORTER_MODEL_DIR)")
    candidates = sorted((int(p.name), p) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())
    for version, path in reversed(candidates):
        if (path / "saved_model.pb").is_file():
            return path
        log.warning("skipping %s: no saved_model.pb", path)
    raise ModelError(f"no version directory with a saved_model.pb under {model_dir}")


def read_metadata(version_dir: Path) -> dict[str, Any]:
    path = version_dir / METADATA_FILE
    try:
        metadata = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"{path} is missing; every exported version carries its metadata") from None
    except (OSError, ValueError) as exc:
        raise ModelError(f"{path} cannot be read as JSON ({exc})") from None
    if not isinstance(metadata, dict):
        raise ModelError(f"{path}: expected a JSON object")
    names = metadata.get("class_names")
    if not isinstance(names, list) or len(names) != 10 or not all(isinstance(n, str) and n for n in names):
        raise ModelError(f"{path}: class_names must list the 10 class names")
    if len(set(names)) != len(names):
        raise ModelError(f"{path}: class_names has duplicates")
    for key in ("temperature", "review_threshold", "flip_below"):
        value = metadata.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise ModelError(f"{path}: {key} must be a number, not {value!r}")
    for key in ("ensemble_size", "unsure_members"):
        value = metadata.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise ModelError(f"{path}: {key} must be a count of networks, not {value!r}")
    calibrated_by = metadata.get("calibrated_by")
    if calibrated_by is not None and not (
        isinstance(calibrated_by, dict)
        and isinstance(calibrated_by.get("runs"), list)
        and all(isinstance(run, str) for run in calibrated_by["runs"])
    ):
        raise ModelError(f"{path}: calibrated_by must be an object whose runs lists the twin's run directories")
    if metadata.get("temperature") is not None and not metadata["temperature"] > 0:
        raise ModelError(f"{path}: temperature must be > 0")
    if metadata.get("review_threshold") is not None and not 0 <= metadata["review_threshold"] <= 1:
        raise ModelError(f"{path}: review_threshold must be in [0, 1]")
    if str(metadata.get("version", version_dir.name)) != version_dir.name:
        log.warning("%s says version %s but lives in %s", path, metadata.get("version"), version_dir)
    return metadata


class Model(Protocol):
    name: str
    version: int
    class_names: tuple[str, ...]
    batch_sizes: tuple[int, ...]

    def predict(self, images: np.ndarray) -> np.ndarray:
        """uint8 (n, 28, 28) -> float32 (n, classes) calibrated probabilities; n <= max batch."""
        ...

    def warmup(self) -> None: ...

    def describe(self) -> dict[str, Any]: ...

    @property
    def review_threshold(self) -> float | None: ...


@dataclass
class TensorFlowModel:
    """A SavedModel signature run at fixed padded batch sizes (no retracing, no surprise latency)."""

    path: Path
    metadata: dict[str, Any]
    batch_sizes: tuple[int, ...]
    device: str
    precision: str
    _signature: Any = field(repr=False)
    _keepalive: Any = field(repr=False)  # the loaded object owns the variables
    _buffers: dict[int, np.ndarray] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def name(self) -> str:
        return str(self.metadata.get("name", self.path.parent.name))

    @property
    def version(self) -> int:
        return int(self.path.name)

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.metadata["class_names"])

    @property
    def temperature(self) -> float | None:
        value = self.metadata.get("temperature")
        return None if value is None else float(value)

    @property
    def review_threshold(self) -> float | None:
        """The threshold chosen for the served precision's own outputs when the export recorded
        one (bfloat16 answers differ slightly from float32), else the model's."""
        sorting = (self.metadata.get("sorting_by_precision") or {}).get(self.precision)
        value = sorting.get("review_threshold") if isinstance(sorting, dict) else None
        if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value <= 1:
            value = self.metadata.get("review_threshold")
        return None if value is None else float(value)

    @property
    def accuracy(self) -> dict[str, float | None]:
        """Accuracy of the signature being served, as the export measured it (else the run's)."""
        measured = (self.metadata.get("accuracy_by_precision") or {}).get(self.precision)
        if isinstance(measured, dict):
            return {"validation": measured.get("validation"), "test": measured.get("test")}
        return {"validation": self.metadata.get("validation_accuracy"), "test": self.metadata.get("test_accuracy")}

    def predict(self, images: np.ndarray) -> np.ndarray:
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
            return outputs[OUTPUT_NAME].numpy()[:n]

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
        if "logits" in outputs and self.temperature:
            logits = outputs["logits"].numpy().astype(np.float64) / self.temperature
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
            "architecture": m.get("architecture"),
            "params": m.get("params"),
            "ensemble_size": int(m.get("ensemble_size", 1)),
            "unsure_members": int(m.get("unsure_members", 0)),
            "tta_flip": bool(m.get("tta_flip", False)),
            "flip_below": m.get("flip_below"),
            "classes": list(self.class_names),
            "accuracy": self.accuracy,
            "calibrated_by": (m.get("calibrated_by") or {}).get("runs"),
            "temperature": self.temperature,
            "input": m.get("input"),
            "device": self.device,
            "precision": self.precision,
            "batch_sizes": list(self.batch_sizes),
            "created_at": m.get("created_at"),
            "git_commit": m.get("git_commit"),
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


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    try:
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("flags"):
                return frozenset(line.partition(":")[2].split())
    except OSError:
        pass
    return frozenset()


def choose_precision(requested: str, exported: dict[str, str], on_gpu: bool, flags: frozenset[str]) -> str:
    """The precision to serve: as requested, or for 'auto' bfloat16 only where it is both
    exported and native to the CPU (elsewhere bfloat16 is emulated and slower than float32)."""
    if requested == "auto":
        native = not on_gpu and bool(flags & NATIVE_BFLOAT16_FLAGS)
        return "bfloat16" if native and "bfloat16" in exported else "float32"
    if requested not in PRECISIONS:
        raise ModelError(f"precision must be auto, {' or '.join(PRECISIONS)} (got {requested!r})")
    if requested not in exported:
        raise ModelError(f"SORTER_PRECISION={requested}, but the model exports only {', '.join(exported)}")
    return requested


def exported_signatures(metadata: dict[str, Any]) -> dict[str, str]:
    """precision -> signature name; versions from before the bfloat16 export have float32 only."""
    signatures = metadata.get("signatures")
    if isinstance(signatures, dict) and all(isinstance(v, str) for v in signatures.values()):
        return {k: v for k, v in signatures.items() if k in PRECISIONS} or {"float32": SIGNATURE}
    return {"float32": SIGNATURE}


def load_tensorflow_model(
    model_dir: Path,
    max_batch_size: int,
    intra_op_threads: int = 1,
    inter_op_threads: int = 1,
    precision: str = "auto",
) -> TensorFlowModel:
    """Load the highest version under model_dir and check its signature; raise ModelError."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    version_dir = find_version(Path(model_dir))
    metadata = read_metadata(version_dir)
    device = _configure_tensorflow(intra_op_threads, inter_op_threads)
    import tensorflow as tf

    try:
        loaded = tf.saved_model.load(str(version_dir))
    except Exception as exc:
        raise ModelError(f"{version_dir}: not a loadable SavedModel ({type(exc).__name__}: {exc})") from None
    exported = exported_signatures(metadata)
    chosen = choose_precision(precision, exported, device.startswith("GPU"), cpu_flags())
    signature_name = exported[chosen]
    signature = loaded.signatures.get(signature_name)
    if signature is None:
        raise ModelError(f"{version_dir}: no '{signature_name}' signature (has {list(loaded.signatures)})")
    _check_signature(version_dir, signature, len(metadata["class_names"]))
    log.info(
        "model %s version %s from %s on %s, %s (%s)",
        metadata.get("name"),
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
    import tensorflow as tf

    args, kwargs = signature.structured_input_signature
    spec = kwargs.get(INPUT_NAME) if not args else None
    if spec is None or set(kwargs) != {INPUT_NAME}:
        raise ModelError(f"{version_dir}: signature input must be exactly '{INPUT_NAME}' (has {sorted(kwargs)})")
    if spec.dtype != tf.uint8 or spec.shape.as_list() != [None, *IMAGE_SHAPE, 1]:
        raise ModelError(
            f"{version_dir}: input '{INPUT_NAME}' must be uint8 [None, 28, 28, 1], "
            f"is {spec.dtype.name} {spec.shape.as_list()}"
        )
    outputs = signature.structured_outputs
    out = outputs.get(OUTPUT_NAME) if isinstance(outputs, dict) else None
    if out is None:
        raise ModelError(f"{version_dir}: signature has no '{OUTPUT_NAME}' output")
    if out.dtype != tf.float32 or out.shape.as_list() != [None, num_classes]:
        raise ModelError(
            f"{version_dir}: output '{OUTPUT_NAME}' must be float32 [None, {num_classes}], "
            f"is {out.dtype.name} {out.shape.as_list()}"
        )


NULL_CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)


@dataclass
class NullModel:
    """The service without inference: a constant answer. The benchmark's throughput ceiling."""

    batch_sizes: tuple[int, ...]
    name: str = "null"
    version: int = 0
    class_names: tuple[str, ...] = NULL_CLASS_NAMES
    review_threshold: float | None = None
    _row: np.ndarray = field(
        default_factory=lambda: np.array([0.02, 0.82, 0.02, 0.02, 0.02, 0.02, 0.02, 0.02, 0.02, 0.02], np.float32),
        repr=False,
    )

    def predict(self, images: np.ndarray) -> np.ndarray:
        bucket_for(images.shape[0], self.batch_sizes)
        return np.broadcast_to(self._row, (images.shape[0], self._row.size))

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
            "input": {"name": INPUT_NAME, "dtype": "uint8", "shape": [None, 28, 28, 1]},
            "device": "none",
            "precision": None,
            "batch_sizes": list(self.batch_sizes),
            "created_at": None,
            "git_commit": None,
        }


def load_model(settings: Any) -> Model:
    """The model the settings ask for (TensorFlow SavedModel, or the null model)."""
    if settings.model_backend == "null":
        return NullModel(batch_sizes=padded_sizes(settings.max_batch_size))
    return load_tensorflow_model(
        settings.resolved_model_dir(),
        settings.max_batch_size,
        settings.intra_op_threads,
        settings.tf_inter_op_threads,
        settings.precision,
    )
