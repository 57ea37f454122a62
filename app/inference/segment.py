"""A scanner photo -> where the garment is, and what about the photo makes the answer unsafe.

The dataset recipe (``preprocess.photo_to_28``) assumes a catalog photo: an even, light background
and nothing else in frame. A belt photo breaks each assumption, so before the recipe:

1. **Background model.** The belt is sampled along the whole image border and fitted, per channel,
   with a smooth quadratic surface (robustly: border samples that do not fit, such as a label or a
   garment touching the edge, are dropped and the fit repeated). The surface is the belt's colour
   times the light falling on it, so a lamp gradient, a shadow or vignetting is in it too.
2. **Flat field.** The photo is divided by the surface's lightness and scaled to its brightest
   point: the light becomes even, and the garment keeps its own colour and lightness.
3. **Foreground.** A pixel is foreground when its distance from the belt colour in an opponent
   colour space on gamma-encoded values (lightness and two chroma axes; gamma encoding is close to
   perceptually uniform) exceeds what the border itself shows as noise (texture, JPEG, sensor).
4. **Objects.** Connected regions, specks dropped, nearby pieces grouped into one object (a sandal's
   straps are separate pieces of one item). Label-like objects (small, near-perfect rectangles) are
   not garments. The largest remaining object is the garment; its holes are filled.
5. **Pose.** The garment's minimum-area bounding box gives its rotation; the dataset photographs
   garments square to the frame, so a tilt of 3-35 degrees is undone.

The garment is then composited, feathered, onto the dataset's light background (#fdfdfd), and the
dataset recipe runs on that. Every step works on a small image (at most WORK_MAX_EDGE), so the cost
is bounded whatever the camera's resolution.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

from app.reasons import Reason

LIGHT = 253.0  # the dataset's photo background, #fdfdfd
BORDER_FRACTION = 0.04  # of the short edge: the band the belt is sampled from
MIN_DISTANCE = 5.0  # foreground threshold floor, in the opponent space's units (0-255 lightness)
HYSTERESIS_LOW = 0.5  # of the threshold: fainter pixels join where they touch foreground
NOISE_FACTOR = 2.0  # threshold: this many times the border's 99th-percentile distance
SPECK_FRACTION = 0.0005  # of the frame: smaller regions are noise
MAX_PIECES = 32  # the largest regions considered; the rest are small beside them
GROUP_GAP_FRACTION = 0.04  # of the short edge: pieces closer than this are one object
MIN_GARMENT_FRACTION = 0.005  # of the frame: a smaller object is no garment
SECOND_ITEM_RATIO = 0.25  # another object at least this large (vs the garment): multiple items
LABEL_MIN_FRACTION = 0.002  # of the frame: a label is larger than this ...
LABEL_MAX_FRACTION = 0.05  # ... smaller than this ...
LABEL_MIN_FILL = 0.93  # ... and fills this much of its minimum-area rectangle
CUT_OFF_FRACTION = 0.02  # of an edge's length touched by the garment: cut off by the frame
LOW_CONTRAST_DISTANCE = 12.0  # the garment's median distance from the belt below this: low contrast
MIN_TILT_DEG = 3.0  # smaller tilts are left alone (and are within what training saw)
MAX_TILT_DEG = 35.0
MIN_TILT_GAIN = 0.05  # the upright box must be this much smaller than the photo's box
COARSE_STEP_DEG = 5.0  # then 1-degree steps around the best
_OPPONENT = np.array(  # rows: lightness (luma), red-green, yellow-blue; on gamma-encoded RGB
    [[0.299, 0.587, 0.114], [0.5, -0.5, 0.0], [0.25, 0.25, -0.5]], dtype=np.float32
)


Box = tuple[int, int, int, int]  # left, top, right, bottom (right and bottom exclusive)


@dataclass(frozen=True)
class Segmentation:
    """The garment on a light, evenly lit background, ready for the dataset recipe."""

    composite: np.ndarray  # uint8 (h, w, 3): the garment on LIGHT, upright
    box: Box | None  # the garment in the work image's pixels (before any rotation); None: none found
    reasons: tuple[Reason, ...]
    tilt_deg: float  # the rotation undone (counter-clockwise positive, as PIL's rotate)


# --- 1-2: the belt and the light ----------------------------------------------------------------
def _design(ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    return np.stack([np.ones_like(xs), xs, ys, xs * xs, xs * ys, ys * ys], axis=1)


@functools.lru_cache(maxsize=64)  # a scanner sends one or two sizes: computed once per size
def _border_samples(height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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
    rows, cols, design = _border_samples(height, width)
    values = rgb[rows, cols]
    # Start from the median colour: whatever lies far from it (a garment running over the edge, a
    # label) must not pull the first fit, or the surface bends to it and it is kept as belt.
    residual = np.abs(values - np.median(values, axis=0)).max(axis=1)
    inlier = residual <= max(3.0 * 1.4826 * float(np.median(residual)), MIN_DISTANCE)
    coef = np.zeros((6, 3))
    for _ in range(3):  # fit, drop what does not fit, refit
        kept = design[inlier]
        # Normal equations of a 6-term fit: a 6x6 solve, far cheaper than a general least squares.
        coef = np.linalg.solve(kept.T @ kept + 1e-6 * np.eye(6), kept.T @ values[inlier])
        residual = np.abs(values - (design @ coef)).max(axis=1)
        keep = residual <= max(3.0 * 1.4826 * float(np.median(residual[inlier])), MIN_DISTANCE)
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
    diff = (rgb - belt) @ _OPPONENT.T
    result: np.ndarray = np.sqrt(np.einsum("hwc,hwc->hw", diff, diff))
    return result


# --- 3-4: objects -------------------------------------------------------------------------------
@dataclass
class _Object:
    mask: np.ndarray  # bool (h, w)
    area: int


def _min_area_rect(points: np.ndarray) -> tuple[float, float, float]:
    """The minimum-area rectangle over the hull, searched within MAX_TILT_DEG: (its area, the
    garment's tilt counter-clockwise in degrees, its area gain over the upright box)."""
    try:
        hull = points[ConvexHull(points).vertices]
    except (QhullError, ValueError):
        return float(np.ptp(points[:, 0]) + 1) * float(np.ptp(points[:, 1]) + 1), 0.0, 0.0
    upright = float(_box_areas(hull, np.zeros(1))[0])
    coarse = np.arange(-MAX_TILT_DEG, MAX_TILT_DEG + 0.5, COARSE_STEP_DEG)
    best = float(coarse[int(np.argmin(_box_areas(hull, coarse)))])
    fine = np.clip(np.arange(best - COARSE_STEP_DEG + 1, best + COARSE_STEP_DEG), -MAX_TILT_DEG, MAX_TILT_DEG)
    areas = _box_areas(hull, fine)
    index = int(np.argmin(areas))
    # Coordinates turned by +a square a garment turned by -a (y points down): the tilt is -a.
    return float(areas[index]), -float(fine[index]), 1.0 - float(areas[index]) / upright


def _box_areas(points: np.ndarray, angles_deg: np.ndarray) -> np.ndarray:
    """Axis-aligned box area of the (row, col) points turned by each angle."""
    angles = np.deg2rad(angles_deg)
    cos, sin = np.cos(angles)[:, None], np.sin(angles)[:, None]
    u = points[:, 1] * cos + points[:, 0] * sin
    v = -points[:, 1] * sin + points[:, 0] * cos
    areas: np.ndarray = (np.ptp(u, axis=1) + 1.0) * (np.ptp(v, axis=1) + 1.0)
    return areas


def largest_pieces(sizes: np.ndarray, frame: int) -> list[int]:
    """Labels of the pieces worth grouping: no specks, and only the MAX_PIECES largest, because the
    grouping is quadratic in their number and a photo of a checkerboard must cost no more than one
    of a shirt. ``sizes[label]`` is each piece's pixel count (``sizes[0]``: the background)."""
    order = np.argsort(-sizes[1:], kind="stable")[:MAX_PIECES] + 1
    return [int(i) for i in order if sizes[i] >= SPECK_FRACTION * frame]


def _objects(foreground: np.ndarray) -> list[_Object]:
    height, width = foreground.shape
    labels, count = ndimage.label(foreground, structure=np.ones((3, 3), bool))
    if count == 0:
        return []
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    slices = ndimage.find_objects(labels)
    frame = height * width
    pieces = largest_pieces(sizes, frame)
    # Labels go before grouping: one lying next to the garment must not join it.
    pieces = [i for i in pieces if not _is_label_piece(labels, slices[i - 1], i, int(sizes[i]), frame)]
    # Group pieces whose boxes are within the gap: union-find over a handful of pieces.
    gap = GROUP_GAP_FRACTION * min(height, width)
    parent = {i: i for i in pieces}

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a_index, a in enumerate(pieces):
        sa = slices[a - 1]
        assert sa is not None
        for b in pieces[a_index + 1 :]:
            sb = slices[b - 1]
            assert sb is not None
            dy = max(sa[0].start - sb[0].stop, sb[0].start - sa[0].stop, 0)
            dx = max(sa[1].start - sb[1].stop, sb[1].start - sa[1].stop, 0)
            if dx <= gap and dy <= gap:
                parent[root(a)] = root(b)
    groups: dict[int, list[int]] = {}
    for i in pieces:
        groups.setdefault(root(i), []).append(i)
    objects = []
    for members in groups.values():
        mask = np.isin(labels, members)
        area = int(sizes[members].sum())
        objects.append(_Object(mask, area))
    objects.sort(key=lambda o: o.area, reverse=True)
    return objects


def _is_label_piece(labels: np.ndarray, where: tuple[slice, ...] | None, index: int, area: int, frame: int) -> bool:
    """A label or sticker: small, and nearly fills its minimum-area rectangle (a garment never does)."""
    if where is None or not LABEL_MIN_FRACTION * frame <= area < LABEL_MAX_FRACTION * frame:
        return False
    # Its own shape: holes filled (a barcode's bars and the paper between them average out to the
    # belt's grey at working resolution), one-pixel fringes gone (belt texture touching its edge).
    piece = ndimage.binary_opening(_fill_holes(np.pad(labels[where] == index, 1)), structure=np.ones((3, 3), bool))
    points = np.argwhere(piece).astype(np.float64)
    if len(points) < 8:
        return False
    rect_area, _, _ = _min_area_rect(points[:: len(points) // 2000 + 1])
    return len(points) >= LABEL_MIN_FILL * rect_area


def _tilt(mask: np.ndarray) -> float:
    """The garment's tilt to undo, in degrees (0: leave it as it lies)."""
    points = np.argwhere(mask)
    if len(points) > 4000:  # the hull only needs the outline's extremes; a sample keeps them
        points = points[:: len(points) // 4000 + 1]
    _, tilt, gain = _min_area_rect(points.astype(np.float64))
    return tilt if gain >= MIN_TILT_GAIN and abs(tilt) >= MIN_TILT_DEG else 0.0


def _touches_frame(mask: np.ndarray) -> bool:
    edges = (mask[0], mask[-1], mask[:, 0], mask[:, -1])
    return any(int(edge.sum()) >= max(2, CUT_OFF_FRACTION * len(edge)) for edge in edges)


def _hysteresis(dist: np.ndarray, threshold: float) -> np.ndarray:
    """Pixels above the threshold, and fainter ones (above half of it) connected to them: the dark
    parts of a dark garment on a dark belt belong to it when they touch what clearly does."""
    weak = dist > max(MIN_DISTANCE, HYSTERESIS_LOW * threshold)
    regions, count = ndimage.label(weak, structure=np.ones((3, 3), bool))
    if count == 0:
        return weak
    seeded = np.zeros(count + 1, bool)
    seeded[regions[dist > threshold]] = True
    seeded[0] = False
    mask: np.ndarray = seeded[regions]
    return mask


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """The mask with every background region that does not reach the frame's edge filled in."""
    outside, count = ndimage.label(~mask)
    if count == 0:
        return mask
    edge_labels = np.unique(np.concatenate([outside[0], outside[-1], outside[:, 0], outside[:, -1]]))
    filled: np.ndarray = ~np.isin(outside, edge_labels[edge_labels > 0])
    return filled


def box_of(mask: np.ndarray) -> Box | None:
    """The bounding box of a mask's true pixels; None when there are none."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


# --- the whole step -----------------------------------------------------------------------------
def segment(rgb_u8: np.ndarray) -> Segmentation:
    """(h, w, 3) uint8 work image -> the garment composited upright on the light background."""
    rgb = rgb_u8.astype(np.float32)
    height, width, _ = rgb.shape
    belt = fit_background(rgb)
    even = flat_field(rgb, belt)
    dist = distance(even, belt.colour)
    rows, cols, _ = _border_samples(height, width)
    border = dist[rows, cols][belt.inlier]
    threshold = max(MIN_DISTANCE, NOISE_FACTOR * float(np.quantile(border, 0.99)) if border.size else 0.0)
    objects = _objects(_hysteresis(dist, threshold))
    blank = np.full((height, width, 3), round(LIGHT), np.uint8)
    if not objects or objects[0].area < MIN_GARMENT_FRACTION * height * width:
        return Segmentation(blank, None, (Reason.NO_GARMENT,), 0.0)
    garment = objects[0]
    reasons: list[Reason] = []
    if len(objects) > 1 and objects[1].area >= SECOND_ITEM_RATIO * garment.area:
        reasons.append(Reason.MULTIPLE_ITEMS)
    if _touches_frame(garment.mask):
        reasons.append(Reason.CUT_OFF)
    mask = _fill_holes(garment.mask)
    if float(np.median(dist[garment.mask])) < LOW_CONTRAST_DISTANCE:
        reasons.append(Reason.LOW_CONTRAST)
    alpha = ndimage.gaussian_filter(mask.astype(np.float32), 0.7)[..., None]
    composite = np.clip(alpha * even + (1.0 - alpha) * LIGHT, 0.0, 255.0)
    image = np.rint(composite).astype(np.uint8)
    tilt = _tilt(mask)
    if tilt:
        fill = (round(LIGHT),) * 3
        rotated = Image.fromarray(image, "RGB").rotate(-tilt, Image.Resampling.BILINEAR, expand=True, fillcolor=fill)
        image = np.asarray(rotated)
    return Segmentation(image, box_of(mask), tuple(reasons), tilt)
