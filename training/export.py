"""Write a trained model as models/<name>/<version>/, in the layout contract/ defines for app/.

The version directory is a TensorFlow SavedModel (TF Serving layout) with signature
``serving_default``: ``images`` uint8 [None, 28, 28, 1] (garment bright on black, as in the
dataset) -> ``probabilities`` float32 [None, 10] (softmax of logits / temperature) and
``logits`` float32 [None, 10]; ``metadata.json`` sits beside ``saved_model.pb``. A second
signature, ``serving_bfloat16``, has the same inputs, outputs and weights but computes in bfloat16
(about twice the images/s on CPUs with AVX512-BF16 or AMX); metadata.json maps each precision to
its signature and records the accuracy each one measures; it is validated against
contract.metadata before it is written, so no version carries metadata the service refuses.
It is written to a temporary directory and renamed into place, so a reader never sees half a
version.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from contract.classes import CLASS_NAMES
from contract.metadata import METADATA_FILE, parse_metadata
from contract.signature import (
    INPUT_DTYPE,
    INPUT_NAME,
    INPUT_SHAPE,
    LOGITS_NAME,
    OUTPUT_DTYPE,
    OUTPUT_NAME,
    OUTPUT_SHAPE,
    SIGNATURE,
    SIGNATURES,
)
from contract.versions import next_version
from training import calibrate, data, sorting
from training.architectures import logits_model
from training.ensemble import Ensemble, Network, ensemble_logits
from training.fold import fold_batch_norm
from training.members import RUN_FIGURES
from training.precision import with_precision
from training.train import load_best

MODEL_NAME = "fashion-cnn"
INPUT_SPEC = {
    "name": INPUT_NAME,
    "dtype": INPUT_DTYPE,
    "shape": list(INPUT_SHAPE),
    "polarity": "garment bright on black background (Fashion-MNIST)",
    "scaling": "divided by 255 inside the graph",
}
_OUTPUT_SPEC = f"{OUTPUT_DTYPE} [{', '.join('None' if size is None else str(size) for size in OUTPUT_SHAPE)}]"
OUTPUTS = {OUTPUT_NAME: _OUTPUT_SPEC, LOGITS_NAME: _OUTPUT_SPEC}
# calibration.json keys that describe the graph rather than the model: export applies them, the
# metadata records them in its own fields
CALIBRATION_NOT_METADATA = ("temperature", "ensemble_with", "unsure_with", "flip_below")

# split name -> (uint8 images, labels)
Splits = dict[str, tuple[np.ndarray, np.ndarray]]


def git_commit() -> str | None:
    """The checked-out commit the export is made from, where git can tell."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _serve(networks: Ensemble[Network], inverse_temperature: tf.Tensor) -> Callable[[tf.Tensor], dict[str, tf.Tensor]]:
    def serve(images: tf.Tensor) -> dict[str, tf.Tensor]:
        logits = ensemble_logits(networks, images)
        return {OUTPUT_NAME: tf.nn.softmax(logits * inverse_temperature), LOGITS_NAME: logits}

    return serve


def _write_savedmodel(ensemble: Ensemble[keras.Model], path: Path, temperature: float) -> None:
    """One signature per precision, each serving ``ensemble`` with BatchNorm folded into the convolutions."""
    folded = ensemble.map(lambda model: logits_model(fold_batch_norm(model)))
    archive = keras.export.ExportArchive()
    inverse_temperature = tf.constant(1.0 / temperature, tf.float32)
    for precision, signature in SIGNATURES.items():
        networks = folded.map(partial(with_precision, precision=precision))
        for network in networks.networks:
            archive.track(network)
        archive.add_endpoint(
            name=signature,
            fn=_serve(networks, inverse_temperature),
            input_signature=[tf.TensorSpec(INPUT_SHAPE, INPUT_DTYPE, name=INPUT_NAME)],
        )
    archive.write_out(str(path), verbose=False)


def measure_signatures(version_dir: Path, splits: Splits, review_threshold: float | None = None) -> dict[str, Any]:
    """Every exported signature on each (images, labels) split: its accuracy and, given a
    ``validation`` split, its own review threshold (chosen there as calibrate does) with the
    sorting figures it gives; the service applies the threshold of the precision it serves.
    Without a validation split (the model trained on it) every signature gets ``review_threshold``."""
    accuracy_by_precision, sorting_by_precision = {}, {}
    for precision in SIGNATURES:
        probs = {
            name: predict_exported(version_dir, images, precision)[OUTPUT_NAME] for name, (images, _) in splits.items()
        }
        accuracy_by_precision[precision] = {
            name: float(np.mean(probs[name].argmax(1) == labels)) for name, (_, labels) in splits.items()
        }
        threshold = (
            sorting.choose_review_threshold(probs["validation"], splits["validation"][1])
            if "validation" in splits
            else review_threshold
        )
        if threshold is not None:
            sorting_by_precision[precision] = {
                "review_threshold": threshold,
                **{
                    name: sorting.sorting_figures(probs[name], labels, threshold)
                    for name, (_, labels) in splits.items()
                },
            }
    measured: dict[str, Any] = {"accuracy_by_precision": accuracy_by_precision}
    return {**measured, "sorting_by_precision": sorting_by_precision} if sorting_by_precision else measured


def _version_dir(model_root: Path, version: int | None) -> Path:
    """The directory a new version takes; versions are immutable, so it must not exist yet."""
    model_root.mkdir(parents=True, exist_ok=True)
    final = model_root / str(version if version is not None else next_version(model_root))
    if final.exists():
        raise FileExistsError(f"{final} already exists; versions are immutable, export a new one")
    return final


def _metadata(
    ensemble: Ensemble[keras.Model], version: int, temperature: float, measured: dict[str, Any], run: dict[str, Any]
) -> dict[str, Any]:
    """metadata.json: what the graph is and computes, then the measured figures, then the run's own."""
    return {
        "name": MODEL_NAME,
        "version": version,
        "architecture": ensemble.members[0].name.replace("_", "-"),
        "params": sum(int(network.count_params()) for network in ensemble.networks),
        "ensemble_size": len(ensemble.members),
        "unsure_members": len(ensemble.unsure_members),
        "class_names": list(CLASS_NAMES),
        "input": INPUT_SPEC,
        "outputs": OUTPUTS,
        "signature": SIGNATURE,
        "signatures": SIGNATURES,
        "temperature": float(temperature),
        "tta_flip": ensemble.tta_flip,
        "flip_below": ensemble.flip_below,
        "git_commit": git_commit(),
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        **measured,
        **run,
    }


def export(
    ensemble: Ensemble[keras.Model],
    model_root: Path,
    metadata: dict[str, Any],
    version: int | None = None,
    temperature: float = 1.0,
    evaluate_on: Splits | None = None,
) -> Path:
    """Export ``ensemble`` (trained Keras models of the same input and classes; one model is an
    ensemble of one) atomically to model_root/<version>/ and return that directory.

    ``params`` counts every network. ``metadata`` (the run's figures and settings) is added to
    what export records. ``evaluate_on`` (split name -> images, labels) measures every signature
    of the written graph and records ``accuracy_by_precision`` (and ``sorting_by_precision``), so
    the figures describe what is served."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0 (got {temperature})")
    final = _version_dir(Path(model_root), version)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        _write_savedmodel(ensemble, staging, temperature)
        measured = measure_signatures(staging, evaluate_on, metadata.get("review_threshold")) if evaluate_on else {}
        full_metadata = _metadata(ensemble, int(final.name), temperature, measured, metadata)
        # the service refuses what the contract refuses: such a version is never written
        parse_metadata(full_metadata, f"metadata for {final}")
        (staging / METADATA_FILE).write_text(json.dumps(full_metadata, indent=2) + "\n")
        os.chmod(staging, 0o755)
        # rename() within one filesystem is atomic: the version appears whole or not at all.
        os.rename(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final


def _finished_run(run_dir: Path) -> dict[str, Any]:
    run_file = run_dir / "run.json"
    if not run_file.exists():
        raise ValueError(f"{run_dir} is not a finished training run (no run.json); train it first")
    run: dict[str, Any] = json.loads(run_file.read_text())
    return run


def _validation_accuracy(run: dict[str, Any]) -> float | None:
    # A run trained on the validation split has no validation accuracy, only a training-set figure.
    return None if run["config"].get("full_train") else run["val_accuracy"]


def _member_training(run: dict[str, Any]) -> dict[str, Any]:
    return {**run["config"], **{key: run[key] for key in RUN_FIGURES}}


def _ensemble_members(runs: Ensemble[Path]) -> list[dict[str, Any]]:
    """Each network's run and its own figures, for the metadata of an ensemble."""
    members = []
    for run_dir in runs.networks:
        run = _finished_run(run_dir)
        members.append(
            {
                "run": str(run_dir),
                "validation_accuracy": _validation_accuracy(run),
                "test_accuracy": run["test_accuracy"],
                "training": _member_training(run),
                **({"unsure_only": True} if run_dir in runs.unsure_members else {}),
            }
        )
    return members


def _run_metadata(
    run_dir: Path, runs: Ensemble[Path], calibration: dict[str, Any], dataset: data.FashionMNIST
) -> dict[str, Any]:
    """What a run adds to metadata.json: its figures and settings, its members', the dataset and
    its calibration."""
    run = _finished_run(run_dir)
    return {
        "run": str(run_dir),
        "validation_accuracy": _validation_accuracy(run),
        "test_accuracy": run["test_accuracy"],
        "train_accuracy": run["train_accuracy"],
        "training": _member_training(run),
        **({"ensemble_members": _ensemble_members(runs)} if len(runs.networks) > 1 else {}),
        "dataset_source": dataset.source,
        "dataset_sha256": dataset.sha256,
        **({"warehouse": run["warehouse"]} if run.get("warehouse") else {}),
        # calibrate measured what is served (flip averaging, every member): its accuracies replace run.json's
        **{k: v for k, v in calibration.items() if k not in CALIBRATION_NOT_METADATA},
    }


def export_run(run_dir: Path, model_root: Path, version: int | None = None) -> Path:
    """Export a finished run as calibrate left it (its temperature, views and ensemble members; an
    uncalibrated run alone at temperature 1), measured on test and, unless it trained on it, on
    validation."""
    run_dir = Path(run_dir)
    run = _finished_run(run_dir)
    calibrated = (run_dir / calibrate.CALIBRATION_FILE).exists()
    calibration = calibrate.read_calibration(run_dir) if calibrated else {}
    runs = calibrate.calibrated_runs(run_dir, calibration)
    dataset = data.load_fashion_mnist()
    metadata = _run_metadata(run_dir, runs, calibration, dataset)
    evaluate_on = {"test": (dataset.x_test, dataset.y_test)}
    if not run["config"].get("full_train"):
        split = data.split_train_validation(dataset, seed=run["config"].get("split_seed", data.DEFAULT_SPLIT_SEED))
        evaluate_on["validation"] = (split.x_val, split.y_val)
    return export(
        runs.map(load_best),
        model_root,
        metadata,
        version=version,
        temperature=float(calibration.get("temperature", 1.0)),
        evaluate_on=evaluate_on,
    )


def load_signature(version_dir: Path, precision: str = "float32") -> Any:
    """The exported signature (a concrete function) of ``precision``; ValueError for one it lacks."""
    if precision not in SIGNATURES:
        raise ValueError(f"precision must be one of {', '.join(SIGNATURES)} (got {precision!r})")
    signatures = tf.saved_model.load(str(version_dir)).signatures
    if SIGNATURES[precision] not in signatures:
        raise ValueError(f"{version_dir} has no {precision} signature ({SIGNATURES[precision]}); it predates it")
    return signatures[SIGNATURES[precision]]


def predict_exported(version_dir: Path, images: np.ndarray, precision: str = "float32") -> dict[str, np.ndarray]:
    """Run the exported signature of ``precision`` on uint8 (N, 28, 28) or (N, 28, 28, 1) images."""
    if images.ndim == len(INPUT_SHAPE) - 1:
        images = images[..., None]
    outputs = load_signature(version_dir, precision)(**{INPUT_NAME: tf.constant(images, tf.uint8)})
    return {k: v.numpy() for k, v in outputs.items()}
