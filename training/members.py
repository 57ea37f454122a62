"""An exported version's networks, taken back out of its SavedModel, to fine-tune or to run elsewhere.

Export folds each network's BatchNormalization into its convolutions and bakes the ensemble into one
graph; the run directories behind a version are not kept in the tree. `garment-sorter unpack`
recovers each network as a run directory that `garment-sorter train --init-from` accepts: the
production architecture with its BatchNormalization layers set to the identity (gamma 1, beta the
folded bias, mean 0, variance 1 - epsilon), which computes the folded network's function exactly as
long as those layers stay in inference mode (train with --freeze-batch-norm). Each run also gets the
settings and figures its version recorded, and the first one the version's calibration: a held-out
twin kept only as an export is a calibrated run again, and its networks can join a new ensemble.

TensorFlow is imported only where a SavedModel is read: bench.gpu_weights uses ``folded_network``
on machines without it.
"""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import Any

import keras
import numpy as np
from keras import layers

from training.architectures import PRODUCTION_ARCHITECTURE, build, logits_model
from training.fold import fold_batch_norm

FLOAT32_SIGNATURE = "serving_default"
METADATA_FILE = "metadata.json"  # contract.metadata's name; that module needs pydantic, which the GPU fallback lacks
BEST_FILE, CONFIG_FILE, RUN_FILE = "best.keras", "config.json", "run.json"


def folded_network(name: str = "network") -> keras.Model:
    """The production architecture as exported: BatchNorm folded into the convolutions, ending in
    the logits. Its weights are freshly initialised."""
    model = logits_model(fold_batch_norm(build(PRODUCTION_ARCHITECTURE)))
    return keras.Model(model.inputs[0], model.outputs[0], name=name)


def network_counts(version_dir: Path) -> tuple[int, int]:
    """(members averaged for every image, members that join only for unsure images)."""
    metadata: dict[str, Any] = json.loads((Path(version_dir) / METADATA_FILE).read_text())
    return int(metadata.get("ensemble_size") or 1), int(metadata.get("unsure_members") or 0)


def captured_networks(version_dir: Path) -> list[list[Any]]:
    """Each network's variables in the version's float32 signature (tf.Variable), in the order the
    folded network's layers use them: members first, then the unsure-only members."""
    import tensorflow as tf

    loaded = tf.saved_model.load(str(version_dir))
    signature = loaded.signatures[FLOAT32_SIGNATURE]
    by_handle = {variable.handle.ref(): variable for variable in loaded.variables}
    # The signature captures each network's variables in the order its layers use them.
    captured = [by_handle[c.ref()] for c in signature.captured_inputs if c.ref() in by_handle]
    template = [tuple(w.shape) for w in folded_network().weights]
    n_members, n_unsure = network_counts(version_dir)
    if len(captured) != len(template) * (n_members + n_unsure):
        raise ValueError(
            f"{version_dir}: the float32 signature uses {len(captured)} variables; "
            f"{n_members + n_unsure} folded {PRODUCTION_ARCHITECTURE} networks have {len(template)} each"
        )
    networks = [captured[start : start + len(template)] for start in range(0, len(captured), len(template))]
    for network in networks:
        for variable, shape in zip(network, template, strict=True):
            if variable.dtype != tf.float32 or tuple(variable.shape) != shape:
                raise ValueError(f"{variable.name}: {variable.dtype} {tuple(variable.shape)}, expected float32 {shape}")
    return networks


def unfolded(folded_weights: list[np.ndarray]) -> keras.Model:
    """The production architecture, BatchNormalization as the identity, computing the folded network
    whose weights these are (in inference mode)."""
    model = build(PRODUCTION_ARCHITECTURE)
    source = fold_batch_norm(build(PRODUCTION_ARCHITECTURE))
    source.set_weights(folded_weights)
    sources = iter(layer for layer in source.layers if layer.weights)
    stack = model.layers
    for index, layer in enumerate(stack):
        if not layer.weights or isinstance(layer, layers.BatchNormalization):
            continue
        weights = next(sources).get_weights()
        following = stack[index + 1] if index + 1 < len(stack) else None
        if isinstance(layer, layers.Conv2D) and isinstance(following, layers.BatchNormalization):
            kernel, bias = weights
            layer.set_weights([kernel] + ([np.zeros_like(bias)] if layer.use_bias else []))
            identity_variance = np.full_like(bias, 1.0 - following.epsilon)
            following.set_weights([np.ones_like(bias), bias, np.zeros_like(bias), identity_variance])
        else:
            layer.set_weights(weights)
    return model


# What a version's metadata.json keeps of the calibration its first run carried (calibrate.py writes
# the rest: the run lists, rebuilt here from where the networks go).
CALIBRATION_IN_METADATA = (
    "temperature",
    "ece_bins",
    "ece_validation_before",
    "ece_validation_after",
    "review_threshold",
    "max_wrong_bin_rate",
    "season_of_class",
    "sorting_validation",
    "ece_test_before",
    "ece_test_after",
    "sorting_test",
    "tta_flip",
    "flip_below",
    "validation_accuracy",
    "test_accuracy",
    "calibrated_by",
)
# run.json figures that export.py records beside a member's training settings (they are not settings).
RUN_FIGURES = ("epochs_run", "best_epoch", "wall_time_s")


def _records(metadata: dict[str, Any]) -> list[dict[str, Any]]:
    """Each network's record in the order the graph uses them: run, figures, training settings. The
    version's own run, train_accuracy included, is its first network."""
    own = {key: metadata.get(key) for key in ("run", "train_accuracy", "validation_accuracy", "test_accuracy")}
    members: list[dict[str, Any]] = metadata.get("ensemble_members") or [{**own, "training": metadata.get("training")}]
    return [{**members[0], "train_accuracy": own["train_accuracy"]}, *members[1:]]


def _run_files(record: dict[str, Any], run_dir: Path, provenance: dict[str, Any], params: int) -> dict[str, Any]:
    """config.json and run.json of a network as its version recorded it: its training settings (the
    held-out twin check compares them) and its own figures, measured when it was trained."""
    from training.train import TrainConfig

    training = record.get("training") or {"arch": PRODUCTION_ARCHITECTURE}
    settings = {f.name for f in fields(TrainConfig)}
    config = {**{k: v for k, v in training.items() if k in settings}, "unpacked": provenance}
    run = {
        "run_dir": str(run_dir),
        "config": config,
        "params": params,
        **{k: training.get(k) for k in RUN_FIGURES},
        "train_accuracy": record.get("train_accuracy"),  # recorded for the first network only
        "val_accuracy": record.get("validation_accuracy"),
        "test_accuracy": record.get("test_accuracy"),
        "history": {},
    }
    return {CONFIG_FILE: config, RUN_FILE: run}


def _calibration(metadata: dict[str, Any], run_dirs: list[Path], n_members: int) -> dict[str, Any]:
    """The first run's calibration.json as calibrate wrote it: the version's temperature, threshold and
    views, its figures, and the other networks under the names they now have."""
    return {
        **{key: metadata[key] for key in CALIBRATION_IN_METADATA if key in metadata},
        "ensemble_with": [str(d) for d in run_dirs[1:n_members]],
        "unsure_with": [str(d) for d in run_dirs[n_members:]],
    }


def unpack(version_dir: Path, out_dir: Path | None = None) -> list[Path]:
    """One run directory per network of the version, members first, then the unsure-only ones: each
    with best.keras, the config.json and run.json its version recorded (training settings, own figures)
    and, in the first, the version's calibration.json, so that `calibrate` and `export` take them as
    the runs they were (`--held-out-twin`, `--ensemble-with`, `--unsure-with`).

    With ``out_dir`` they are OUT/member-<i> and OUT/unsure-<i>; without, each goes back where the
    version says it was trained (its recorded run directory, relative to the working directory), so
    that a later ensemble's record of its held-out twin names the same runs. A run directory that
    already holds a network is never overwritten."""
    from training.calibrate import CALIBRATION_FILE

    version_dir = Path(version_dir)
    metadata: dict[str, Any] = json.loads((version_dir / METADATA_FILE).read_text())
    n_members, _ = network_counts(version_dir)
    networks = captured_networks(version_dir)
    records = _records(metadata)
    if len(records) != len(networks):
        raise ValueError(f"{version_dir}: {len(networks)} networks but {len(records)} recorded in {METADATA_FILE}")
    roles = [("member", n) if n < n_members else ("unsure", n - n_members) for n in range(len(records))]
    run_dirs = [
        Path(record["run"]) if out_dir is None else Path(out_dir) / f"{role}-{index}"
        for record, (role, index) in zip(records, roles, strict=True)
    ]
    for run_dir in run_dirs:
        if (run_dir / BEST_FILE).exists():
            raise FileExistsError(f"{run_dir} already holds a network; move it away or unpack with --out")
    for number, (run_dir, record, variables) in enumerate(zip(run_dirs, records, networks, strict=True)):
        run_dir.mkdir(parents=True, exist_ok=True)
        model = unfolded([v.numpy() for v in variables])
        model.save(run_dir / BEST_FILE)
        provenance = {"from": str(version_dir), "network": number, "role": roles[number][0]}
        for name, content in _run_files(record, run_dir, provenance, model.count_params()).items():
            (run_dir / name).write_text(json.dumps(content, indent=2) + "\n")
    if "review_threshold" in metadata:
        calibration = _calibration(metadata, run_dirs, n_members)
        (run_dirs[0] / CALIBRATION_FILE).write_text(json.dumps(calibration, indent=2) + "\n")
    return run_dirs
