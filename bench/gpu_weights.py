"""The served ensemble's networks as Keras models on any backend, with the shipped weights.

The service runs the exported SavedModel, which only TensorFlow can load. Where TensorFlow cannot
run (the GPU check's fallback on Keras' JAX backend), the same networks are rebuilt from
``training.architectures`` with BatchNorm folded as export folds it, and their weights are read
straight from the SavedModel's own variables file: an *index*, written here with TensorFlow
(``write_index``), says at which byte offset of that file each network's tensors lie. It is a few
kilobytes, where a copy of the weights would be megabytes, and it is checked twice: the file's
sha256 when it is read, and, when it is written, the served ensemble rebuilt from it against the
SavedModel's own logits.

The ensemble's arithmetic (``ServedEnsemble.logits``) is training.ensemble's, on the host between
compiled calls: every image through the averaged members, then the unsure ones (top probability
below ``flip_below``) again, mirrored, with the unsure-only members, padded to a power of two so
each size compiles once. This module imports Keras and NumPy only.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

from training.members import FLOAT32_SIGNATURE, captured_networks, folded_network, network_counts

INDEX_FORMAT = 1
VARIABLES_FILE = Path("variables") / "variables.data-00000-of-00001"
CHECK_IMAGES = 2000  # test images on which the rebuilt ensemble must give the SavedModel's logits
CHECK_ATOL = 1e-3


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class ServedEnsemble:
    """The networks a version serves and how it averages them (its metadata.json)."""

    members: list[keras.Model]
    unsure_members: list[keras.Model]
    flip_below: float | None
    tta_flip: bool
    weights: str  # where the weights came from, in words

    def __post_init__(self) -> None:
        # Two compiled graphs: the first look (every image) and the second (unsure images only).
        images = keras.Input((28, 28, 1), dtype="uint8")
        scaled = keras.layers.Rescaling(1.0 / 255.0)(images)
        mirrored = keras.layers.Lambda(lambda x: keras.ops.flip(x, axis=2))(scaled)
        self.first = keras.Model(images, _mean([m(scaled) for m in self.members]), name="first_look")
        if self.tta_flip:
            self.first = keras.Model(
                images,
                keras.layers.Average()(
                    [_mean([m(scaled) for m in self.members]), _mean([m(mirrored) for m in self.members])]
                ),
                name="first_look_with_flip",
            )
        second_terms = [m(mirrored) for m in self.members]
        second_terms += [m(view) for m in self.unsure_members for view in (scaled, mirrored)]
        self.second = keras.Model(images, _sum(second_terms), name="second_look")

    @property
    def networks(self) -> int:
        return len(self.members) + len(self.unsure_members)

    def logits(self, images: np.ndarray) -> tuple[np.ndarray, int]:
        """Served logits for uint8 images (N, 28, 28, 1), and how many images took the second look."""
        first = np.asarray(self.first.predict_on_batch(images), np.float32)
        if self.flip_below is None or self.tta_flip:
            return first, 0
        shifted = first - first.max(axis=1, keepdims=True)
        probabilities = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
        unsure = np.flatnonzero(probabilities.max(axis=1) < self.flip_below)
        if unsure.size == 0:
            return first, 0
        padded = np.zeros((bucket(unsure.size), *images.shape[1:]), images.dtype)
        padded[: unsure.size] = images[unsure]
        extra = np.asarray(self.second.predict_on_batch(padded), np.float32)[: unsure.size]
        n_members, n_unsure = len(self.members), len(self.unsure_members)
        logits = first.copy()
        logits[unsure] = (first[unsure] * n_members + extra) / (2 * (n_members + n_unsure))
        return logits, int(unsure.size)


def _mean(tensors: Sequence[Any]) -> Any:
    return tensors[0] if len(tensors) == 1 else keras.layers.Average()(list(tensors))


def _sum(tensors: Sequence[Any]) -> Any:
    return tensors[0] if len(tensors) == 1 else keras.layers.Add()(list(tensors))


def bucket(n: int) -> int:
    """The power of two at or above n: the second look's padded batch sizes."""
    return 1 << max(0, n - 1).bit_length()


def load_ensemble(version_dir: Path, index_path: Path | None) -> ServedEnsemble:
    """The version's ensemble with its shipped weights (read through the index), or, without an
    index, its networks freshly initialised (throughput does not depend on weight values)."""
    metadata = json.loads((Path(version_dir) / "metadata.json").read_text())
    n_members, n_unsure = network_counts(version_dir)
    networks = [folded_network(f"network_{i}") for i in range(n_members + n_unsure)]
    weights = "freshly initialised (no weight index given): the same arithmetic, not the shipped values"
    if index_path is not None:
        index = json.loads(Path(index_path).read_text())
        if index.get("format") != INDEX_FORMAT:
            raise ValueError(f"{index_path}: index format {index.get('format')!r}, expected {INDEX_FORMAT}")
        if int(index["version"]) != int(version_dir.name):
            raise ValueError(f"{index_path} indexes version {index['version']}, not {version_dir.name}")
        blob = (version_dir / VARIABLES_FILE).read_bytes()
        if _sha256(blob) != index["variables_sha256"]:
            raise ValueError(f"{version_dir / VARIABLES_FILE} is not the file {index_path} indexes (sha256 differs)")
        if len(index["networks"]) != len(networks):
            raise ValueError(f"{index_path} has {len(index['networks'])} networks; metadata says {len(networks)}")
        for network, tensors in zip(networks, index["networks"], strict=True):
            values = []
            for tensor in tensors:
                count = int(np.prod(tensor["shape"]))
                values.append(
                    np.frombuffer(blob, "<f4", count=count, offset=int(tensor["offset"])).reshape(tensor["shape"])
                )
            network.set_weights(values)
        weights = f"the shipped weights of version {version_dir.name}, read from its SavedModel variables file"
    return ServedEnsemble(
        members=networks[:n_members],
        unsure_members=networks[n_members:],
        flip_below=metadata.get("flip_below"),
        tta_flip=bool(metadata.get("tta_flip")),
        weights=weights,
    )


def write_index(version_dir: Path, out: Path, check_images: np.ndarray | None = None) -> dict[str, Any]:
    """Needs TensorFlow (and Keras on its TensorFlow backend). Finds each network's tensors of the
    float32 signature in the variables file, writes the index to ``out`` and, given uint8 test
    images, checks that the ensemble rebuilt from it gives the SavedModel's logits there; the
    share of them that take the second look is recorded."""
    import tensorflow as tf

    version_dir = Path(version_dir)
    blob = (version_dir / VARIABLES_FILE).read_bytes()
    networks: list[list[dict[str, Any]]] = []
    for variables in captured_networks(version_dir):
        tensors = []
        for variable in variables:
            value = variable.numpy()
            offset = blob.find(value.astype("<f4").tobytes())
            if offset < 0:
                raise ValueError(f"{variable.name}: its value is not stored as such in {VARIABLES_FILE}")
            tensors.append({"name": variable.name, "shape": list(value.shape), "offset": offset})
        networks.append(tensors)
    index: dict[str, Any] = {
        "format": INDEX_FORMAT,
        "version": int(version_dir.name),
        "variables_file": VARIABLES_FILE.as_posix(),
        "variables_sha256": _sha256(blob),
        "networks": networks,
    }
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(index, indent=1) + "\n")
    if check_images is not None:
        images = check_images[..., None] if check_images.ndim == 3 else check_images
        signature = tf.saved_model.load(str(version_dir)).signatures[FLOAT32_SIGNATURE]
        expected = signature(images=tf.constant(images))["logits"].numpy()
        got, unsure = load_ensemble(version_dir, out).logits(images)
        worst = float(np.abs(got - expected).max())
        if worst > CHECK_ATOL:
            out.unlink()
            raise ValueError(f"the ensemble rebuilt from {out} differs from the SavedModel's logits by {worst:.2g}")
        index["check"] = {
            "images": len(images),
            "max_abs_logit_difference": worst,
            "second_look_share": unsure / len(images),
        }
        out.write_text(json.dumps(index, indent=1) + "\n")
    return index
