"""A Fashion-MNIST garment as a scanner renderer lays it on a belt: its shape and lightness as the
dataset gives them (shared by bench.scanner and bench.second_renderer; nothing else is shared
between the two), and the name of the condition with no garment at all.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

LIGHT = 253.0  # the dataset's photo background, #fdfdfd
DUST = 8  # dataset pixels this faint or fainter are the white background's noise, not garment
EMPTY = "empty belt"  # the condition with no garment: the only right answer is review


@dataclass
class Garment:
    """A dataset image at photo size: its lightness (the negated dataset image) and its shape."""

    lightness: np.ndarray  # float32 (h, w), 0..LIGHT: the photo's luma where the garment is
    alpha: np.ndarray  # float32 (h, w), 0..1: the garment's silhouette, soft at the edge


def garment(image: np.ndarray, size_px: int, angle_deg: float = 0.0) -> Garment:
    """The 28x28 dataset image scaled to ``size_px``, optionally rotated (bilinear both)."""
    coverage, alpha = unmix_edge(image)
    value = Image.fromarray(np.rint(255 * coverage).astype(np.uint8), "L")
    value = value.resize((size_px, size_px), Image.Resampling.BILINEAR)
    shape = Image.fromarray(np.rint(255 * alpha).astype(np.uint8), "L")
    shape = shape.resize((size_px, size_px), Image.Resampling.BILINEAR)
    if angle_deg:
        value = value.rotate(angle_deg, Image.Resampling.BILINEAR, expand=True)
        shape = shape.rotate(angle_deg, Image.Resampling.BILINEAR, expand=True)
    photo_coverage = np.asarray(value, np.float32) / 255.0
    return Garment(LIGHT * (1.0 - photo_coverage), np.asarray(shape, np.float32) / 255.0)


def unmix_edge(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The garment's own coverage and its alpha, from a dataset image (28x28 uint8).

    The silhouette is every pixel the image is not black in (fainter than DUST: the dataset's
    photos had specks of JPEG noise on their white background), holes included (a light patch
    inside a garment is still garment). Its outline pixels, though, are part garment and part the white
    background the dataset's photo had: taken as they are, a garment on a dark belt would wear a
    white rim no real garment has. So an outline pixel is unmixed: its garment part has the
    coverage of its densest neighbour in the silhouette, and its alpha is the share that explains
    its own value. On the dataset's light background the result is the same pixel as before."""
    value = image.astype(np.float32) / 255.0
    silhouette = ~outside(image <= DUST)
    height, width = image.shape
    padded = np.pad(np.where(silhouette, value, 0.0), 1)
    densest = np.max([padded[dy : dy + height, dx : dx + width] for dy in range(3) for dx in range(3)], axis=0)
    inside = np.pad(silhouette, 1)
    interior = np.min([inside[dy : dy + height, dx : dx + width] for dy in range(3) for dx in range(3)], axis=0)
    edge = silhouette & ~interior & (densest > 0)
    # Outside the silhouette (alpha 0) the coverage continues the edge's, so that upscaling
    # between the two does not blend a white fringe back in.
    coverage = np.where(edge | ~silhouette, densest, value)
    alpha = np.where(edge, value / np.maximum(densest, 1e-6), silhouette.astype(np.float32))
    return coverage, alpha


def outside(background: np.ndarray) -> np.ndarray:
    """The background pixels connected to the image border (4-neighbours); the rest is the garment."""
    reached = np.zeros_like(background)
    reached[0, :], reached[-1, :], reached[:, 0], reached[:, -1] = (
        background[0, :],
        background[-1, :],
        background[:, 0],
        background[:, -1],
    )
    while True:
        grown = reached.copy()
        grown[1:] |= reached[:-1]
        grown[:-1] |= reached[1:]
        grown[:, 1:] |= reached[:, :-1]
        grown[:, :-1] |= reached[:, 1:]
        grown &= background
        if (grown == reached).all():
            return reached
        reached = grown
