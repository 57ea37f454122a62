"""The images the benchmarks and tests send: the Fashion-MNIST test set, as PNGs or rendered as
catalog photos (a few hundred pixels, a tinted garment on a light background, JPEG)."""

from __future__ import annotations

import functools
import io

import numpy as np
from PIL import Image

from training import data

BACKGROUND = 253  # #fdfdfd, the dataset's photo background


LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R 601-2, as Pillow's convert("L")


@functools.cache
def load_test_set() -> tuple[np.ndarray, np.ndarray]:
    """The 10,000 Fashion-MNIST test images (uint8 N x 28 x 28) and labels, read and checked by
    training.data (apt-get install dataset-fashion-mnist)."""
    dataset = data.load_fashion_mnist()
    return dataset.x_test, dataset.y_test


def png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image, "L").save(buffer, "PNG")
    return buffer.getvalue()


UPSCALE = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}


def render_catalog_photo(image: np.ndarray, rng: np.random.Generator, upscale: str = "bilinear") -> bytes:
    """A 28x28 dataset image as a shop photo: upscaled to a few hundred pixels, dark garment of
    some colour on a light background with margins, a little sensor noise, JPEG.

    Bilinear upscaling by default: bicubic overshoots at the garment's edge, a halo that moves
    where the 5 % trim cuts by about half a dataset pixel (the benchmark reports both)."""
    scale = int(rng.integers(8, 15))  # 224..392 px
    big = Image.fromarray(image, "L").resize((28 * scale, 28 * scale), UPSCALE[upscale])
    coverage = np.asarray(big, dtype=np.float32) / 255.0  # dataset: garment bright = photo dark
    gray = BACKGROUND * (1.0 - coverage)  # the photo's luma: the dataset image, negated
    # A colour of that same luma: chroma added along a direction of zero luma, strongest in the
    # mid-tones and none at black or at the background, so no channel clips and no gray level
    # (what the model sees) is lost to the tint.
    direction = rng.uniform(-1.0, 1.0, 3).astype(np.float32)
    direction -= (direction @ LUMA) / LUMA.sum()  # zero-luma component only
    direction /= max(1e-6, float(np.abs(direction).max()))
    saturation = float(rng.uniform(0.3, 0.8)) * 127.0
    amplitude = np.minimum(4.0 * coverage * (1.0 - coverage) * saturation, np.minimum(gray, 255.0 - gray))
    garment = gray[..., None] + amplitude[..., None] * direction
    height, width = coverage.shape
    top, bottom, left, right = (int(rng.integers(0.05 * height, 0.25 * height)) for _ in range(4))
    canvas = np.full((top + height + bottom, left + width + right, 3), BACKGROUND, np.float32)
    canvas[top : top + height, left : left + width] = garment
    canvas += np.asarray(rng.normal(0.0, 1.0, canvas.shape), dtype=np.float32)
    photo = Image.fromarray(np.clip(np.rint(canvas), 0, 255).astype(np.uint8), "RGB")
    buffer = io.BytesIO()
    photo.save(buffer, "JPEG", quality=int(rng.integers(85, 96)))
    return buffer.getvalue()


def render_photos(images: np.ndarray, seed: int = 2017, upscale: str = "bilinear") -> list[bytes]:
    rng = np.random.default_rng(seed)
    return [render_catalog_photo(image, rng, upscale) for image in images]
