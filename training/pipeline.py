"""The tf.data input pipeline: scaled images and one-hot labels, shuffled, batched and augmented."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from contract.classes import IMAGE_SHAPE
from training.data import one_hot, to_model_inputs


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


def make_augmenter(seed: int | None = None, zoom: float = 0.0) -> keras.Sequential:
    """Keras preprocessing layers: today's equivalent of the study's ImageDataGenerator.

    Random crop after 2-pixel padding (translation), horizontal flip (garments are
    left-right symmetric in the dataset), and random erasing of one small patch. ``zoom`` > 0
    first rescales each image by a random factor in [1 - zoom, 1 + zoom] (aspect kept): photos
    trimmed and resized by the service come out a few per cent larger or smaller than the
    dataset's own renderings, and a model that has seen that generalises to them.
    """
    zoom_layers = [layers.RandomZoom((-zoom, zoom), fill_mode="constant", seed=seed)] if zoom > 0 else []
    return keras.Sequential(
        [
            *zoom_layers,
            layers.ZeroPadding2D(2),
            layers.RandomCrop(*IMAGE_SHAPE, seed=seed),
            layers.RandomFlip("horizontal", seed=seed),
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
) -> tf.data.Dataset:
    """tf.data pipeline of (float32 images in [0,1], one-hot labels), batched and prefetched."""
    ds = tf.data.Dataset.from_tensor_slices((to_model_inputs(images), one_hot(labels)))
    if shuffle:
        ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    if augment:
        augmenter = make_augmenter(seed, zoom)
        ds = ds.map(lambda x, y: (augmenter(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)
