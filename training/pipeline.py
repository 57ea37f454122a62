"""The tf.data input pipeline: scaled images and one-hot labels, shuffled, batched and augmented."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from contract.classes import IMAGE_SHAPE
from training.data import one_hot, to_model_inputs

SCANNER_ROTATION_DEG = 20.0  # with scanner augmentation: rotations up to this either way
SCANNER_SHIFT = 0.08  # ... and shifts up to this fraction of the image


class RandomErasing(layers.Layer):  # type: ignore[misc]  # keras has no type information: Layer is Any to mypy
    """Zero a random rectangle in each image with probability `rate` (Zhong et al. 2017)."""

    def __init__(self, rate: float = 0.5, max_size: int = 12, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rate = rate
        self.max_size = max_size
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images: tf.Tensor, training: bool = True) -> tf.Tensor:
        if not training:
            return images
        batch = tf.shape(images)[0]
        height, width = images.shape[1], images.shape[2]
        draws = keras.random.uniform((batch, 5), seed=self.seed_generator)
        size_h = tf.cast(2 + draws[:, 0] * (self.max_size - 2), tf.int32)
        size_w = tf.cast(2 + draws[:, 1] * (self.max_size - 2), tf.int32)
        top = tf.cast(draws[:, 2] * tf.cast(height - size_h, tf.float32), tf.int32)
        left = tf.cast(draws[:, 3] * tf.cast(width - size_w, tf.float32), tf.int32)
        apply = draws[:, 4] < self.rate
        rows = tf.range(height)[None, :, None]
        cols = tf.range(width)[None, None, :]
        inside = (
            (rows >= top[:, None, None])
            & (rows < (top + size_h)[:, None, None])
            & (cols >= left[:, None, None])
            & (cols < (left + size_w)[:, None, None])
            & apply[:, None, None]
        )
        return tf.where(inside[..., None], tf.zeros_like(images), images)


class ScannerLook(layers.Layer):  # type: ignore[misc]  # keras has no type information: Layer is Any to mypy
    """What the service's segmentation leaves of a scanner photo, beyond the dataset's own look.

    Per image: the same garment lighter or darker (its intensities, garment bright on black, raised
    to a random power in ``gamma_range`` and scaled by a random gain; black stays black), and, on a
    share ``blur_rate`` of the images, soft edges (a 3x3 binomial blur: defocus, motion along the belt,
    the segmentation's feathering)."""

    def __init__(
        self,
        gamma_range: tuple[float, float] = (0.6, 1.7),
        gain_range: tuple[float, float] = (0.75, 1.15),
        blur_rate: float = 0.3,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.gamma_range = gamma_range
        self.gain_range = gain_range
        self.blur_rate = blur_rate
        self.seed_generator = keras.random.SeedGenerator(seed)
        binomial = np.array([1.0, 2.0, 1.0]) / 4.0
        self.kernel = tf.constant(np.outer(binomial, binomial)[..., None, None], tf.float32)

    def call(self, images: tf.Tensor, training: bool = True) -> tf.Tensor:
        if not training:
            return images
        draws = keras.random.uniform((tf.shape(images)[0], 3), seed=self.seed_generator)
        low, high = np.log(self.gamma_range[0]), np.log(self.gamma_range[1])
        gamma = tf.exp(low + draws[:, 0] * (high - low))[:, None, None, None]
        gain = (self.gain_range[0] + draws[:, 1] * (self.gain_range[1] - self.gain_range[0]))[:, None, None, None]
        toned = tf.clip_by_value(tf.pow(images, gamma) * gain, 0.0, 1.0)
        blurred = tf.nn.depthwise_conv2d(toned, self.kernel, [1, 1, 1, 1], "SAME")
        return tf.where((draws[:, 2] < self.blur_rate)[:, None, None, None], blurred, toned)


def make_augmenter(seed: int | None = None, zoom: float = 0.0, scanner: bool = False) -> keras.Sequential:
    """Keras preprocessing layers: today's equivalent of the study's ImageDataGenerator.

    Random crop after 2-pixel padding (translation), horizontal flip (garments are
    left-right symmetric in the dataset), and random erasing of one small patch. ``zoom`` > 0
    first rescales each image by a random factor in [1 - zoom, 1 + zoom] (aspect kept): photos
    trimmed and resized by the service come out a few per cent larger or smaller than the
    dataset's own renderings, and a model that has seen that generalises to them.

    ``scanner`` adds what remains of a scanner photo after the service's segmentation: small
    rotations (the tilt left after deskewing, up to 20 degrees), a position jitter of up to 8 %, and
    ``ScannerLook`` (lighter or darker garments, soft edges); random erasing stands for the parts of
    a dark garment lost on a dark belt.
    """
    zoom_layers = [layers.RandomZoom((-zoom, zoom), fill_mode="constant", seed=seed)] if zoom > 0 else []
    pose_layers = (
        [
            layers.RandomRotation(SCANNER_ROTATION_DEG / 360.0, fill_mode="constant", seed=seed),
            layers.RandomTranslation(SCANNER_SHIFT, SCANNER_SHIFT, fill_mode="constant", seed=seed),
        ]
        if scanner
        else []
    )
    return keras.Sequential(
        [
            *zoom_layers,
            *pose_layers,
            layers.ZeroPadding2D(2),
            layers.RandomCrop(*IMAGE_SHAPE, seed=seed),
            layers.RandomFlip("horizontal", seed=seed),
            *([ScannerLook(seed=seed)] if scanner else []),
            RandomErasing(seed=seed),
        ],
        name="augment",
    )


def make_dataset(
    images: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    shuffle: bool = False,
    augment: bool = False,
    seed: int = 0,
    zoom: float = 0.0,
    scanner: bool = False,
    targets: np.ndarray | None = None,
) -> tf.data.Dataset:
    """tf.data pipeline of (float32 images in [0,1], one-hot labels), batched and prefetched.
    ``targets`` (float32 (N, 10), e.g. a teacher's probabilities mixed in, or (N, 20) for
    training.losses) replace the one-hot labels."""
    ds = tf.data.Dataset.from_tensor_slices((to_model_inputs(images), one_hot(labels) if targets is None else targets))
    if shuffle:
        ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    if augment:
        augmenter = make_augmenter(seed, zoom, scanner)
        ds = ds.map(lambda x, y: (augmenter(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)
