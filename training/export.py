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
from pathlib import Path

import numpy as np

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
from training import sorting

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


def check_flip_below(flip_below: float | None, tta_flip: bool, unsure_members: bool = False) -> None:
    if unsure_members and flip_below is None:
        raise ValueError("unsure-only members need flip_below: it decides which images they see")
    if flip_below is not None and not 0 < flip_below <= 1:
        raise ValueError(f"flip_below must be in (0, 1] (got {flip_below})")
    if flip_below is not None and tta_flip:
        raise ValueError("flip_below mirrors only unsure images; tta_flip already mirrors every image")


def git_commit(cwd: Path | None = None) -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _write_savedmodel(
    keras_models: list,
    path: Path,
    temperature: float,
    tta_flip: bool = False,
    flip_below: float | None = None,
    unsure_models: list = (),
) -> None:
    import keras
    import tensorflow as tf

    from training.architectures import logits_model
    from training.fold import fold_batch_norm
    from training.precision import with_precision

    def folded(models):
        return [logits_model(fold_batch_norm(m)) for m in models]

    folded_members, folded_unsure = folded(keras_models), folded(unsure_models)
    archive = keras.export.ExportArchive()
    inverse_temperature = tf.constant(1.0 / temperature, tf.float32)

    def make_serve(members, unsure_members):
        def logits_sum(networks, view):
            return tf.add_n([tf.cast(network(view, training=False), tf.float32) for network in networks])

        def serve(images):
            scaled = tf.cast(images, tf.float32) / 255.0
            logits = logits_sum(members, scaled) / float(len(members))
            # garments are left-right symmetric: tta_flip also averages over the mirrored view; flip_below
            # does so only for the images the first view leaves unsure, where the second view helps, and
            # there the unsure-only members join the mean on both views
            if tta_flip:
                logits = (logits + logits_sum(members, tf.reverse(scaled, axis=[2])) / float(len(members))) / 2.0
            elif flip_below is not None:
                unsure = tf.where(tf.reduce_max(tf.nn.softmax(logits), axis=1) < flip_below)
                first = logits

                def second_look():
                    view = tf.gather_nd(scaled, unsure)
                    mirrored = tf.reverse(view, axis=[2])
                    total = tf.gather_nd(first, unsure) * float(len(members)) + logits_sum(members, mirrored)
                    if unsure_members:
                        total += logits_sum(unsure_members, view) + logits_sum(unsure_members, mirrored)
                    mean = total / float(2 * (len(members) + len(unsure_members)))
                    return tf.tensor_scatter_nd_update(first, unsure, mean)

                # oneDNN's convolutions reject an empty batch: no second pass when every image is sure
                logits = tf.cond(tf.shape(unsure)[0] > 0, second_look, lambda: first)
            return {OUTPUT_NAME: tf.nn.softmax(logits * inverse_temperature), LOGITS_NAME: logits}

        return serve

    for precision, signature in SIGNATURES.items():
        members = [with_precision(m, precision) for m in folded_members]
        unsure_members = [with_precision(m, precision) for m in folded_unsure]
        for member in members + unsure_members:
            archive.track(member)
        archive.add_endpoint(
            name=signature,
            fn=make_serve(members, unsure_members),
            input_signature=[tf.TensorSpec(INPUT_SHAPE, INPUT_DTYPE, name=INPUT_NAME)],
        )
    archive.write_out(str(path), verbose=False)


def measure_signatures(
    version_dir: Path, splits: dict[str, tuple[np.ndarray, np.ndarray]], review_threshold: float | None = None
) -> dict:
    """Every exported signature on each (images, labels) split: its accuracy and, given a
    ``validation`` split, its own review threshold (chosen there as calibrate does) with the
    sorting figures it gives; the service applies the threshold of the precision it serves.
    Without a validation split (the model trained on it) every signature gets ``review_threshold``."""
    accuracy_by_precision, sorting_by_precision = {}, {}
    for precision in SIGNATURES:
        probs = {
            name: predict_exported(version_dir, images, precision)["probabilities"]
            for name, (images, _) in splits.items()
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
    measured = {"accuracy_by_precision": accuracy_by_precision}
    return {**measured, "sorting_by_precision": sorting_by_precision} if sorting_by_precision else measured


def export(
    keras_model,
    model_root: Path,
    metadata: dict,
    version: int | None = None,
    temperature: float = 1.0,
    tta_flip: bool = False,
    evaluate_on: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
    ensemble_with: list = (),
    flip_below: float | None = None,
    unsure_with: list = (),
) -> Path:
    """Export atomically to model_root/<version>/ and return that directory.

    ``ensemble_with`` (more Keras models of the same input and classes) makes the graph serve the
    mean of all members' logits; ``params`` then counts every member. ``unsure_with`` (more such
    models) join that mean, on both views, only for the images whose top-class probability is below
    ``flip_below``: a second look where the first members disagree or doubt.

    ``evaluate_on`` (split name -> images, labels) measures every signature of the written graph
    and records ``accuracy_by_precision`` (and ``sorting_by_precision``), so the figures describe
    what is served."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0 (got {temperature})")
    check_flip_below(flip_below, tta_flip, bool(unsure_with))
    model_root = Path(model_root)
    model_root.mkdir(parents=True, exist_ok=True)
    version = version if version is not None else next_version(model_root)
    final = model_root / str(version)
    if final.exists():
        raise FileExistsError(f"{final} already exists; versions are immutable, export a new one")

    staging = Path(tempfile.mkdtemp(prefix=f".{version}.tmp-", dir=model_root))
    try:
        members = [keras_model, *ensemble_with]
        _write_savedmodel(members, staging, temperature, tta_flip, flip_below, list(unsure_with))
        measured = measure_signatures(staging, evaluate_on, metadata.get("review_threshold")) if evaluate_on else {}
        full_metadata = {
            "name": MODEL_NAME,
            "version": version,
            "architecture": keras_model.name.replace("_", "-"),
            "params": sum(int(m.count_params()) for m in [*members, *unsure_with]),
            "ensemble_size": len(members),
            "unsure_members": len(unsure_with),
            "class_names": list(CLASS_NAMES),
            "input": INPUT_SPEC,
            "outputs": OUTPUTS,
            "signature": SIGNATURE,
            "signatures": SIGNATURES,
            "temperature": float(temperature),
            "tta_flip": tta_flip,
            "flip_below": flip_below,
            "git_commit": git_commit(),
            "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            **measured,
            **metadata,
        }
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


def load_signature(version_dir: Path, precision: str = "float32"):
    import tensorflow as tf

    if precision not in SIGNATURES:
        raise ValueError(f"precision must be one of {', '.join(SIGNATURES)} (got {precision!r})")
    signatures = tf.saved_model.load(str(version_dir)).signatures
    if SIGNATURES[precision] not in signatures:
        raise ValueError(f"{version_dir} has no {precision} signature ({SIGNATURES[precision]}); it predates it")
    return signatures[SIGNATURES[precision]]


def predict_exported(version_dir: Path, images: np.ndarray, precision: str = "float32") -> dict[str, np.ndarray]:
    """Run the exported signature of ``precision`` on uint8 (N, 28, 28) or (N, 28, 28, 1) images."""
    import tensorflow as tf

    if images.ndim == 3:
        images = images[..., None]
    outputs = load_signature(version_dir, precision)(**{INPUT_NAME: tf.constant(images, tf.uint8)})
    return {k: v.numpy() for k, v in outputs.items()}
