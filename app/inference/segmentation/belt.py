"""The belt and the light on it, fitted along the photo's border, then again over all the belt in
view; the photo under even light; each pixel's distance from the belt's colour.

The belt is sampled along the whole image border and fitted, per channel, with a smooth quadratic
surface, robustly: border samples that do not fit (a label, a garment over the edge) are dropped and
the fit repeated. The surface is the belt's colour times the light falling on it, so a lamp to one
side, a shadow or vignetting is in it too. Dividing the photo by the surface's lightness, scaled to
its brightest point, evens the light: the garment keeps its own colour and lightness. Distance is
measured in an opponent colour space on gamma-encoded values (lightness and two chroma axes; gamma
encoding is close to perceptually uniform), in the units of lightness (0-255).

The border alone leaves the frame's middle to extrapolation, and a lens's vignetting (brightest in
the middle, falling off faster than a quadratic towards the corners) is where that fails: the middle
of the belt comes out lighter than the fit and is taken for garment. So the surface is fitted a
second time (``refit_background``) on a grid over the whole frame, leaving out whatever the first
fit showed standing out from the belt and a margin around it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

BORDER_FRACTION = 0.04  # of the short edge: the band the belt is sampled from
GRID_STEPS = 50  # the whole-frame refit samples a grid this many steps along the short edge
# The border fit is a quadratic: from the border alone a radial r^4 term would set the middle by
# extrapolation, and it swings (measured: the belt taken for garment quadrupled). The whole-frame refit
# sees the middle, and the r^4 term follows a lens's falloff there (cos^4: no quadratic).
BORDER_TERMS, FULL_TERMS = 6, 7
FIT_FLOOR = 5.0  # border samples within this distance of the fit always count as belt
MIN_SAMPLES = 12  # fewer samples than this fit no surface (6 terms, with room for noise)
_OPPONENT = np.array(  # rows: lightness (luma), red-green, yellow-blue; on gamma-encoded RGB
    [[0.299, 0.587, 0.114], [0.5, -0.5, 0.0], [0.25, 0.25, -0.5]], dtype=np.float32
)


def _coordinates(rows: np.ndarray, cols: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel positions -> (y, x), each -0.5..0.5 across the frame."""
    return rows / max(1, height - 1) - 0.5, cols / max(1, width - 1) - 0.5


def _radius4(ys: np.ndarray, xs: np.ndarray, height: int, width: int) -> np.ndarray:
    """The fourth power of the distance from the frame's centre, in units of its longest edge: a
    lens's falloff is round whatever the frame's shape."""
    longest = max(height, width)
    r2 = (xs * (width / longest)) ** 2 + (ys * (height / longest)) ** 2
    return r2 * r2


def _design(ys: np.ndarray, xs: np.ndarray, height: int, width: int) -> np.ndarray:
    """The surface's terms: a quadratic in x and y, then the radial r^4 (FULL_TERMS)."""
    quadratic = [np.ones_like(xs), xs, ys, xs * xs, xs * ys, ys * ys]
    return np.stack([*quadratic, _radius4(ys, xs, height, width)], axis=1).astype(np.float64)


@functools.lru_cache(maxsize=64)  # a scanner sends one or two sizes: computed once per size
def border_samples(height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The border band's sample positions (rows, cols) and their design matrix."""
    band = max(2, round(BORDER_FRACTION * min(height, width)))
    step = max(1, band // 3)  # a few rows of the band are enough, and cheap
    rows, cols = np.mgrid[0:height:step, 0:width:step]
    keep = (rows < band) | (rows >= height - band) | (cols < band) | (cols >= width - band)
    rows, cols = rows[keep], cols[keep]
    design = _design(*_coordinates(rows, cols, height, width), height, width)[:, :BORDER_TERMS]
    for array in (rows, cols, design):
        array.flags.writeable = False  # shared by every call: nobody may change them
    return rows, cols, design


@functools.lru_cache(maxsize=64)
def grid_samples(height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A grid over the whole frame: its sample positions (rows, cols) and their design matrix."""
    step = max(1, min(height, width) // GRID_STEPS)
    rows, cols = np.mgrid[step // 2 : height : step, step // 2 : width : step]
    rows, cols = rows.ravel(), cols.ravel()
    design = _design(*_coordinates(rows, cols, height, width), height, width)
    for array in (rows, cols, design):
        array.flags.writeable = False
    return rows, cols, design


@dataclass(frozen=True)
class Belt:
    """The fitted background: the light on it and its colour under the brightest light."""

    light: np.ndarray  # float32 (h, w): the belt's lightness as lit, a smooth surface
    colour: np.ndarray  # (3,) RGB where the light peaks: the whole belt's colour once evened
    inlier: np.ndarray  # bool, per border sample: fitted the surface (else: a label, a garment)


def _robust_fit(design: np.ndarray, values: np.ndarray, inlier: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fit, drop the samples that do not fit, refit: the coefficients and the samples kept."""
    terms = design.shape[1]
    coef = np.zeros((terms, 3))
    for _ in range(3):
        kept = design[inlier]
        # Normal equations: a 6x6 or 7x7 solve, far cheaper than a general least squares. The
        # products go to BLAS, which the service keeps to one thread (app/inference/blas.py):
        # several times faster than einsum's loops here.
        normal = kept.T @ kept + 1e-6 * np.eye(terms)
        coef = np.linalg.solve(normal, kept.T @ values[inlier])
        residual = np.abs(values - design @ coef).max(axis=1)
        keep = residual <= max(3.0 * 1.4826 * float(np.median(residual[inlier])), FIT_FLOOR)
        if keep.sum() < MIN_SAMPLES or (keep == inlier).all():
            break
        inlier = keep
    return coef, inlier


def _surface(coef: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The fitted lightness over the whole image, and the belt's colour where it peaks."""
    # Only the lightness is needed over the whole image: one channel, not three.
    c = (coef @ _OPPONENT[0].astype(np.float64)).astype(np.float32)
    gy, gx = _coordinates(
        np.arange(height, dtype=np.float32)[:, None], np.arange(width, dtype=np.float32)[None, :], height, width
    )
    # c0 + c1 x + c2 y + c3 x^2 + c4 xy + c5 y^2 = (c0 + c2 y + c5 y^2) + (c1 + c4 y) x + c3 x^2
    surface = (c[0] + gy * c[2] + gy * gy * c[5]) + (c[1] + gy * c[4]) * gx + (gx * gx) * c[3]
    if len(c) == FULL_TERMS:
        surface = surface + c[6] * _radius4(gy, gx, height, width)
    light = np.maximum(surface, 1.0)
    peak_row, peak_col = np.unravel_index(int(np.argmax(light)), light.shape)
    y, x = _coordinates(np.array([peak_row]), np.array([peak_col]), height, width)
    colour = _design(y, x, height, width)[0, : len(coef)] @ coef
    return light.astype(np.float32), colour.astype(np.float32)


def fit_background(rgb: np.ndarray) -> Belt:
    """(h, w, 3) float32 -> the belt, fitted per channel along the border."""
    height, width, _ = rgb.shape
    rows, cols, design = border_samples(height, width)
    values = rgb[rows, cols]
    # Start from the median colour: whatever lies far from it (a garment running over the edge, a
    # label) must not pull the first fit, or the surface bends to it and it is kept as belt.
    residual = np.abs(values - np.median(values, axis=0)).max(axis=1)
    inlier = residual <= max(3.0 * 1.4826 * float(np.median(residual)), FIT_FLOOR)
    coef, inlier = _robust_fit(design, values, inlier)
    return Belt(*_surface(coef, height, width), inlier)


def refit_background(rgb: np.ndarray, border_fit: Belt, clear: np.ndarray) -> Belt:
    """The belt fitted again over the whole frame, on the grid samples where ``clear`` (bool, h x w:
    nothing stands out from the border's fit there); the border fit where too few are clear."""
    height, width, _ = rgb.shape
    rows, cols, design = grid_samples(height, width)
    on_belt = clear[rows, cols]
    if on_belt.sum() < MIN_SAMPLES:  # a garment filling the frame: the border is all there is
        return border_fit
    rows, cols = rows[on_belt], cols[on_belt]
    values = rgb[rows, cols]
    coef, kept = _robust_fit(design[on_belt], values, np.ones(len(rows), bool))
    light, _ = _surface(coef, height, width)
    # The colour as the belt itself shows it once evened, the mean over the samples that fit: the
    # surface's own value at its peak is the top of a fitted, noisy surface, biased upwards (by a
    # level or so: enough to lift a label's paper, 5 levels off a light belt, over the floor).
    gain = float(light.max()) / light[rows[kept], cols[kept]]
    colour = np.mean(values[kept] * gain[:, None], axis=0).astype(np.float32)
    return Belt(light, colour, border_fit.inlier)


def flat_field(rgb: np.ndarray, belt: Belt) -> np.ndarray:
    """Even the light: divide by the belt's lightness, scaled to its brightest point."""
    gain = (float(belt.light.max()) / belt.light)[..., None]
    even: np.ndarray = rgb * gain
    return even


def lightness(rgb: np.ndarray) -> np.ndarray:
    """(h, w, 3) -> (h, w): the opponent space's lightness axis (luma)."""
    weights = _OPPONENT[0]
    # Per channel, as in distance().
    result: np.ndarray = rgb[..., 0] * weights[0] + rgb[..., 1] * weights[1] + rgb[..., 2] * weights[2]
    return result


def distance(rgb: np.ndarray, belt: np.ndarray) -> np.ndarray:
    """Per-pixel distance from the belt colour in the opponent space (same units as lightness)."""
    # Per channel, not a matrix product: BLAS would spread a 3x3 product over threads that then
    # spin, costing more CPU than the arithmetic (a millisecond per photo, measured).
    diff = [rgb[..., channel] - belt[channel] for channel in range(3)]
    squares = sum((row[0] * diff[0] + row[1] * diff[1] + row[2] * diff[2]) ** 2 for row in _OPPONENT)
    result: np.ndarray = np.sqrt(squares)
    return result
