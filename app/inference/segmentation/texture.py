"""What lies smooth on a textured belt.

On grooved or ribbed black rubber a black garment can be as dark as the belt: its distance from
the belt's colour is within the belt's own texture, and the colour threshold, set above that
texture, loses most of it (measured on the second renderer's rubber belt: 44 % of the garment's
pixels missed on average, and a dark T-shirt reduced to its printed logo). What still tells it
apart is that it is smooth where the belt is not. The texture is the mean absolute deviation of
the lightness from its 3x3 mean, averaged over 5x5: a groove or rib a few pixels apart raises it,
an even surface leaves it at the noise. On a belt whose border shows texture well above the noise,
regions much smoother than the belt are something lying on it.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

TEXTURED_BELT = 2.0  # the belt's median texture (lightness levels) from which it counts as textured
SMOOTH_RATIO = 0.5  # a pixel with texture under this share of the belt's is smooth
# The texture's 5x5 window straddles a smooth region's edge, where the belt's texture reaches into
# it: grown back by this much.
SMOOTH_GROW_PX = 2


def texture(lightness: np.ndarray) -> np.ndarray:
    """(h, w) float32 -> the local texture: mean absolute deviation from the 3x3 mean, over 5x5."""
    deviation = np.abs(lightness - ndimage.uniform_filter(lightness, 3))
    result: np.ndarray = ndimage.uniform_filter(deviation, 5)
    return result


def smooth_on_textured_belt(lightness: np.ndarray, belt_samples: tuple[np.ndarray, np.ndarray]) -> np.ndarray | None:
    """The regions much smoother than the belt (bool, h x w), or None where the belt, sampled at
    ``belt_samples`` (rows, cols), is not textured: there smoothness tells nothing apart."""
    local = texture(lightness)
    rows, cols = belt_samples
    if rows.size == 0:
        return None
    belt_texture = float(np.median(local[rows, cols]))
    if belt_texture < TEXTURED_BELT:
        return None
    # Opening drops the single smooth pixels any texture has; growing restores the edge.
    smooth = ndimage.binary_opening(local < SMOOTH_RATIO * belt_texture)
    grown: np.ndarray = ndimage.binary_dilation(smooth, iterations=SMOOTH_GROW_PX)
    return grown
