"""The whole step: a working-size photo -> the garment upright on the dataset's light background
(#fdfdfd), its box, and what about the photo makes an answer unsafe (the review reasons
no_garment, multiple_items, cut_off and low_contrast)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

from app.inference.segmentation.belt import (
    Belt,
    border_samples,
    distance,
    fit_background,
    flat_field,
    lightness,
    refit_background,
)
from app.inference.segmentation.pieces import (
    Box,
    Item,
    box_of,
    clear_part,
    faint,
    fill_holes,
    foreground,
    items,
    touches_frame,
)
from app.inference.segmentation.pose import tilt_of
from app.inference.segmentation.texture import smooth_on_textured_belt
from app.reasons import Reason

LIGHT = 253.0  # the dataset's photo background, #fdfdfd
NOISE_FACTOR = 2.0  # foreground threshold: this many times the border's 99th-percentile distance
MIN_GARMENT_FRACTION = 0.005  # of the frame: a smaller item is no garment
# An item found mostly by its smoothness, not its colour, must be larger: on a grooved belt the
# grooves fade in worn spots, and those smooth spots were 0.1-0.7 % of the frame on validation
# empty belts, where the smallest black garment found that way on grooved rubber was 3.9 %.
MIN_SMOOTH_GARMENT_FRACTION = 0.015
SECOND_ITEM_RATIO = 0.25  # another item at least this large (vs the garment): multiple items
LOW_CONTRAST_DISTANCE = 12.0  # the garment's median distance from the belt below this: low contrast
FEATHER_SIGMA_PX = 0.7  # the garment's edge, softened as a photo's edge is
# The band around the mask's edge whose pixels may be part garment, part belt: the mask's edge lies
# where a pixel first differs from the belt by more than noise, so on a contrasted belt it is
# outside the garment's true edge, and a lens's blur reaches a few pixels inside it.
EDGE_OUT_PX, EDGE_IN_PX = 2, 4
# The garment's own steps (holes, edge, tilt) run on its box and this margin, not the whole frame,
# at the garment's share of the cost. Past the mask only the feather (3 px) and the edge band
# (EDGE_OUT_PX) reach; the band's local mean reaches further only over the interior, which is zero
# there. So any margin above 3 px gives the whole frame's composite; 12 leaves room for wider ones.
WINDOW_MARGIN_PX = 12
REFIT_MARGIN_PX = 3  # around what stands out after the border fit: left out of the whole-frame refit


def on_light_background(even: np.ndarray, belt_colour: np.ndarray, dist: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The garment composited onto LIGHT, its edge unmixed from the belt.

    A pixel on the garment's edge is part garment, part belt: I = a*F + (1-a)*B. The dataset's
    photos have that edge mixed with their light background instead, so the belt's share is
    replaced by it: a*F + (1-a)*LIGHT = I + (1-a)*(LIGHT - B). The share a is the pixel's distance
    from the belt over the garment's own (distance grows linearly with a on a mixed pixel); the
    garment's is the mean over its interior close by. Without this a dark belt leaves a dark rim
    around the garment, which the dataset's negation turns into a bright outline the model never
    saw in training. Away from the edge band the mask, feathered, decides alone, so belt texture
    never reaches the result."""
    feathered = ndimage.gaussian_filter(mask.astype(np.float32), FEATHER_SIGMA_PX)
    alpha = feathered[..., None]
    image = alpha * even + (1.0 - alpha) * LIGHT
    if float(np.median(dist[mask])) >= LOW_CONTRAST_DISTANCE:  # else the share cannot be told from noise
        interior = ndimage.binary_erosion(mask, iterations=EDGE_IN_PX)
        band = ndimage.binary_dilation(mask, iterations=EDGE_OUT_PX) & ~interior
        # The garment's own distance near each edge pixel: the mean over the interior close by.
        size = 2 * (EDGE_IN_PX + EDGE_OUT_PX) + 1
        weight = ndimage.uniform_filter(interior.astype(np.float32), size)[band]
        local = ndimage.uniform_filter(np.where(interior, dist, 0.0).astype(np.float32), size)[band]
        known = weight > 0.05
        share = np.ones(local.shape, np.float32)
        share[known] = np.clip(dist[band][known] * weight[known] / np.maximum(local[known], 1e-3), 0.0, 1.0)
        unmixed = even[band] + (1.0 - share)[:, None] * (LIGHT - belt_colour)
        image[band] = np.where(known[:, None], unmixed, image[band])
    composite: np.ndarray = np.rint(np.clip(image, 0.0, 255.0)).astype(np.uint8)
    return composite


@dataclass(frozen=True)
class Segmentation:
    """The garment on a light, evenly lit background, ready for the dataset recipe."""

    composite: np.ndarray  # uint8 (h, w, 3): the garment on LIGHT, upright
    box: Box | None  # the garment in the work image's pixels (before any rotation); None: none found
    reasons: tuple[Reason, ...]
    tilt_deg: float  # the rotation undone (counter-clockwise positive, as PIL's rotate)


@dataclass(frozen=True)
class Evened:
    """The photo under even light and how far each pixel lies from the belt."""

    belt: Belt
    even: np.ndarray  # float32 (h, w, 3)
    dist: np.ndarray  # float32 (h, w): distance from the belt's colour, lightness units
    threshold: float  # the distance above which a pixel is foreground


def _evened(rgb: np.ndarray, belt: Belt) -> Evened:
    even = flat_field(rgb, belt)
    dist = distance(even, belt.colour)
    rows, cols, _ = border_samples(*rgb.shape[:2])
    border = dist[rows, cols][belt.inlier]
    # Above what the border itself shows as noise (belt texture, JPEG, sensor).
    threshold = NOISE_FACTOR * float(np.quantile(border, 0.99)) if border.size else 0.0
    return Evened(belt, even, dist, threshold)


def even_out(rgb: np.ndarray) -> Evened:
    """(h, w, 3) float32 -> the belt fitted on the border, then again on all the belt it leaves
    clear, and the photo evened under the second fit."""
    first = _evened(rgb, fit_background(rgb))
    standing_out = ndimage.binary_dilation(faint(first.dist, first.threshold), iterations=REFIT_MARGIN_PX)
    return _evened(rgb, refit_background(rgb, first.belt, ~standing_out))


def _is_garment(item: Item, by_colour: np.ndarray, smooth_cue: bool) -> bool:
    """Whether ``item`` is large enough to be a garment: larger still if found mostly as smooth."""
    frame_px = item.mask.size
    if item.area < MIN_GARMENT_FRACTION * frame_px:
        return False
    if not smooth_cue or item.area >= MIN_SMOOTH_GARMENT_FRACTION * frame_px:
        return True  # most photos: no need to count how it was found
    return bool(2 * np.count_nonzero(by_colour[item.mask]) >= item.area)


def segment(rgb_u8: np.ndarray) -> Segmentation:
    """(h, w, 3) uint8 work image -> the garment composited upright on the light background."""
    rgb = rgb_u8.astype(np.float32)
    height, width, _ = rgb.shape
    evened = even_out(rgb)
    belt, even, dist, threshold = evened.belt, evened.even, evened.dist, evened.threshold
    by_colour = foreground(dist, threshold)
    rows, cols, _ = border_samples(height, width)
    smooth = smooth_on_textured_belt(lightness(even), (rows[belt.inlier], cols[belt.inlier]))
    found = items(by_colour if smooth is None else by_colour | smooth, clear_part(dist, threshold))
    if not found or not _is_garment(found[0], by_colour, smooth is not None):
        blank = np.full((height, width, 3), round(LIGHT), np.uint8)
        return Segmentation(blank, None, (Reason.NO_GARMENT,), 0.0)
    garment = found[0]
    reasons: list[Reason] = []
    if len(found) > 1 and found[1].area >= SECOND_ITEM_RATIO * garment.area:
        reasons.append(Reason.MULTIPLE_ITEMS)
    if touches_frame(garment.mask):
        reasons.append(Reason.CUT_OFF)
    if float(np.median(dist[garment.mask])) < LOW_CONTRAST_DISTANCE:
        reasons.append(Reason.LOW_CONTRAST)
    box = box_of(garment.mask)
    assert box is not None  # an item has pixels
    left, top = max(0, box[0] - WINDOW_MARGIN_PX), max(0, box[1] - WINDOW_MARGIN_PX)
    window = (slice(top, box[3] + WINDOW_MARGIN_PX), slice(left, box[2] + WINDOW_MARGIN_PX))
    # Holes: the margin is belt all round, so what reaches the window's edge reaches the frame's.
    mask = fill_holes(garment.mask[window])
    image = np.full((height, width, 3), round(LIGHT), np.uint8)
    image[window] = on_light_background(even[window], belt.colour, dist[window], mask)
    tilt = tilt_of(mask, origin=(top, left))
    if tilt:
        fill = (round(LIGHT),) * 3
        upright = Image.fromarray(image, "RGB").rotate(-tilt, Image.Resampling.BILINEAR, expand=True, fillcolor=fill)
        image = np.asarray(upright)
    return Segmentation(image, box, tuple(reasons), tilt)
