"""The ensemble a model serves, and its arithmetic, written once.

``Ensemble`` says which networks a model averages and which views of an image they see; its
members are whatever stands for a network at the step at hand (run directories, trained Keras
models, their exported copies). ``ensemble_logits`` is the arithmetic: export traces it into each
SavedModel signature and calibrate runs it on the validation and test images (``predict_logits``),
so the temperature and review threshold are chosen on exactly what is served.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import keras
import numpy as np
import tensorflow as tf

from contract.classes import NUM_CLASSES
from contract.signature import INPUT_DTYPE, INPUT_SHAPE
from training.architectures import logits_model

Member = TypeVar("Member")
Converted = TypeVar("Converted")
# A network as the arithmetic calls it: float32 images in [0, 1] -> logits (N, 10).
Network = Callable[..., Any]

PREDICT_BATCH_SIZE = 1024


@dataclass(frozen=True)
class Ensemble(Generic[Member]):
    """Which networks a model averages, on which views.

    Every image gets the mean of the ``members``' logits. Garments are left-right symmetric, so
    ``tta_flip`` averages in the members' logits of the mirror image for every image, and
    ``flip_below`` does so only for the images whose top-class probability (uncalibrated, from the
    first view) is below it, where the second view helps; there, and only there, the
    ``unsure_members`` join the mean on both views: a second look that costs little, since few
    images are unsure. Invalid combinations raise ValueError on construction.
    """

    members: tuple[Member, ...]
    unsure_members: tuple[Member, ...] = ()
    tta_flip: bool = False
    flip_below: float | None = None

    def __post_init__(self) -> None:
        if not self.members:
            raise ValueError("an ensemble needs at least one member")
        if self.unsure_members and self.flip_below is None:
            raise ValueError("unsure-only members need flip_below: it decides which images they see")
        if self.flip_below is not None and not 0 < self.flip_below <= 1:
            raise ValueError(f"flip_below must be in (0, 1] (got {self.flip_below})")
        if self.flip_below is not None and self.tta_flip:
            raise ValueError("flip_below mirrors only unsure images; tta_flip already mirrors every image")

    @property
    def networks(self) -> tuple[Member, ...]:
        """Every member, the averaged ones first."""
        return (*self.members, *self.unsure_members)

    def map(self, convert: Callable[[Member], Converted]) -> Ensemble[Converted]:
        """The same ensemble with every member converted (loaded, folded, cast to a precision)."""
        return Ensemble(
            members=tuple(convert(member) for member in self.members),
            unsure_members=tuple(convert(member) for member in self.unsure_members),
            tta_flip=self.tta_flip,
            flip_below=self.flip_below,
        )


def _logits_sum(networks: tuple[Network, ...], view: tf.Tensor) -> tf.Tensor:
    return tf.add_n([tf.cast(network(view, training=False), tf.float32) for network in networks])


def ensemble_logits(ensemble: Ensemble[Network], images: tf.Tensor) -> tf.Tensor:
    """The logits a model serves for uint8 images (N, 28, 28, 1): the networks' mean as ``ensemble``
    says, float32 (N, 10). Runs eagerly or traced (export traces it into every signature)."""
    members, unsure_members = ensemble.members, ensemble.unsure_members
    scaled = tf.cast(images, tf.float32) / 255.0
    logits = _logits_sum(members, scaled) / float(len(members))
    if ensemble.tta_flip:
        return (logits + _logits_sum(members, tf.reverse(scaled, axis=[2])) / float(len(members))) / 2.0
    if ensemble.flip_below is None:
        return logits
    unsure = tf.where(tf.reduce_max(tf.nn.softmax(logits), axis=1) < ensemble.flip_below)
    first = logits

    def second_look() -> tf.Tensor:
        view = tf.gather_nd(scaled, unsure)
        mirrored = tf.reverse(view, axis=[2])
        total = tf.gather_nd(first, unsure) * float(len(members)) + _logits_sum(members, mirrored)
        if unsure_members:
            total += _logits_sum(unsure_members, view) + _logits_sum(unsure_members, mirrored)
        mean = total / float(2 * (len(members) + len(unsure_members)))
        return tf.tensor_scatter_nd_update(first, unsure, mean)

    # oneDNN's convolutions reject an empty batch: no second pass when every image is sure
    return tf.cond(tf.shape(unsure)[0] > 0, second_look, lambda: first)


def predict_logits(
    ensemble: Ensemble[keras.Model], images: np.ndarray, batch_size: int = PREDICT_BATCH_SIZE
) -> np.ndarray:
    """``ensemble_logits`` of trained Keras models on uint8 images (N, 28, 28) or (N, 28, 28, 1),
    batch by batch in one traced graph: float32 (N, 10). The models are used as trained; export
    folds their BatchNorm layers into the convolutions, which changes the logits by float rounding."""
    if images.ndim == len(INPUT_SHAPE) - 1:
        images = images[..., None]
    if len(images) == 0:
        return np.zeros((0, NUM_CLASSES), np.float32)
    networks = ensemble.map(logits_model)
    compute = tf.function(
        lambda batch: ensemble_logits(networks, batch),
        input_signature=[tf.TensorSpec(INPUT_SHAPE, INPUT_DTYPE)],
    )
    return np.concatenate(
        [
            compute(tf.constant(images[start : start + batch_size])).numpy()
            for start in range(0, len(images), batch_size)
        ]
    )
