"""The belt and the light on it, fitted along the photo's border; the photo under even light; each
pixel's distance from the belt's colour.

The belt is sampled along the whole image border and fitted, per channel, with a smooth quadratic
surface, robustly: border samples that do not fit (a label, a garment over the edge) are dropped and
the fit repeated. The surface is the belt's colour times the light falling on it, so a lamp to one
side, a shadow or vignetting is in it too. Dividing the photo by the surface's lightness, scaled to
its brightest point, evens the light: the garment keeps its own colour and lightness. Distance is
measured in an opponent colour space on gamma-encoded values (lightness and two chroma axes; gamma
encoding is close to perceptually uniform), in the units of lightness (0-255).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

BORDER_FRACTION = 0.04  # of the short edge: the band the belt is sampled from
FIT_FLOOR = 5.0  # border samples within this distance of the fit always count as belt
_OPPONENT = np.array(  # rows: lightness (luma), red-green, yellow-blue; on gamma-encoded RGB
    [[0.299, 0.587, 0.114], [0.5, -0.5, 0.0], [0.25, 0.25, -0.5]], dtype=np.float32
)


def _design(ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    return np.stack([np.ones_like(xs), xs, ys, xs * xs, xs * ys, ys * ys], axis=1)


@functools.lru_cache(maxsize=64)  # a scanner sends one or two sizes: computed once per size
def border_samples(height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The border band's sample positions (rows, cols) and their design matrix."""
    band = max(2, round(BORDER_FRACTION * min(height, width)))
    step = max(1, band // 3)  # a few rows of the band are enough, and cheap
    rows, cols = np.mgrid[0:height:step, 0:width:step]
    keep = (rows < band) | (rows >= height - band) | (cols < band) | (cols >= width - band)
    rows, cols = rows[keep], cols[keep]
    ys, xs = rows / max(1, height - 1) - 0.5, cols / max(1, width - 1) - 0.5
    for array in (rows, cols):
        array.flags.writeable = False  # shared by every call: nobody may change them
    design = _design(ys.astype(np.float64), xs.astype(np.float64))
    design.flags.writeable = False
    return rows, cols, design


@dataclass(frozen=True)
class Belt:
    """The fitted background: the light on it and its colour under the brightest light."""

    light: np.ndarray  # float32 (h, w): the belt's lightness as lit, a smooth surface
    colour: np.ndarray  # (3,) RGB where the light peaks: the whole belt's colour once evened
    inlier: np.ndarray  # bool, per border sample: fitted the surface (else: a label, a garment)


def fit_background(rgb: np.ndarray) -> Belt:
    """(h, w, 3) float32 -> the belt, fitted per channel along the border."""
    height, width, _ = rgb.shape
    rows, cols, design = border_samples(height, width)
    values = rgb[rows, cols]
    # Start from the median colour: whatever lies far from it (a garment running over the edge, a
    # label) must not pull the first fit, or the surface bends to it and it is kept as belt.
    residual = np.abs(values - np.median(values, axis=0)).max(axis=1)
    inlier = residual <= max(3.0 * 1.4826 * float(np.median(residual)), FIT_FLOOR)
    coef = np.zeros((6, 3))
    for _ in range(3):  # fit, drop what does not fit, refit
        kept = design[inlier]
        # Normal equations of a 6-term fit: a 6x6 solve, far cheaper than a general least squares.
        coef = np.linalg.solve(kept.T @ kept + 1e-6 * np.eye(6), kept.T @ values[inlier])
        residual = np.abs(values - (design @ coef)).max(axis=1)
        keep = residual <= max(3.0 * 1.4826 * float(np.median(residual[inlier])), FIT_FLOOR)
        if keep.sum() < 12 or (keep == inlier).all():
            break
        inlier = keep
    # Only the lightness is needed over the whole image: one channel, not three.
    c = (coef @ _OPPONENT[0].astype(np.float64)).astype(np.float32)
    gy = (np.arange(height, dtype=np.float32) / max(1, height - 1) - 0.5)[:, None]
    gx = (np.arange(width, dtype=np.float32) / max(1, width - 1) - 0.5)[None, :]
    # c0 + c1 x + c2 y + c3 x^2 + c4 xy + c5 y^2 = (c0 + c2 y + c5 y^2) + (c1 + c4 y) x + c3 x^2
    light = np.maximum((c[0] + gy * c[2] + gy * gy * c[5]) + (c[1] + gy * c[4]) * gx + (gx * gx) * c[3], 1.0)
    peak_row, peak_col = np.unravel_index(int(np.argmax(light)), light.shape)
    y, x = peak_row / max(1, height - 1) - 0.5, peak_col / max(1, width - 1) - 0.5
    colour = np.array([1.0, x, y, x * x, x * y, y * y]) @ coef
    return Belt(light, colour.astype(np.float32), inlier)


def flat_field(rgb: np.ndarray, belt: Belt) -> np.ndarray:
    """Even the light: divide by the belt's lightness, scaled to its brightest point."""
    gain = (float(belt.light.max()) / belt.light)[..., None]
    even: np.ndarray = rgb * gain
    return even


def distance(rgb: np.ndarray, belt: np.ndarray) -> np.ndarray:
    """Per-pixel distance from the belt colour in the opponent space (same units as lightness)."""
    # Per channel, not a matrix product: BLAS would spread a 3x3 product over threads that then
    # spin, costing more CPU than the arithmetic (a millisecond per photo, measured).
    diff = [rgb[..., channel] - belt[channel] for channel in range(3)]
    squares = sum((row[0] * diff[0] + row[1] * diff[1] + row[2] * diff[2]) ** 2 for row in _OPPONENT)
    result: np.ndarray = np.sqrt(squares)
    return result
