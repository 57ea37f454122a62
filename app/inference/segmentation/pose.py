"""The minimum-area rectangle around a shape: how far a garment is turned, and how rectangular a
piece is (a label nearly fills its rectangle; a garment never does).

The dataset photographs garments square to the frame, so a garment whose minimum-area rectangle is
turned 3-35 degrees, and clearly smaller than its upright box, is turned back.
"""

from __future__ import annotations

import numpy as np

MIN_TILT_DEG = 3.0  # smaller tilts are left alone (and are within what training saw)
MAX_TILT_DEG = 35.0
MIN_TILT_GAIN = 0.05  # the turned rectangle must be this much smaller than the upright box
COARSE_STEP_DEG = 5.0  # then 1-degree steps around the best


def min_area_rect(points: np.ndarray) -> tuple[float, float, float]:
    """The minimum-area rectangle around (row, col) points, searched within MAX_TILT_DEG: (its area,
    the garment's tilt counter-clockwise in degrees, its area gain over the upright box). A box's
    extent is decided by the outline alone: pass ``outline_points`` (a hull would cost more than
    it saves on a few hundred points: Qhull's set-up alone is about a millisecond)."""
    upright = float(box_areas(points, np.zeros(1))[0])
    coarse = np.arange(-MAX_TILT_DEG, MAX_TILT_DEG + 0.5, COARSE_STEP_DEG)
    best = float(coarse[int(np.argmin(box_areas(points, coarse)))])
    fine = np.clip(np.arange(best - COARSE_STEP_DEG + 1, best + COARSE_STEP_DEG), -MAX_TILT_DEG, MAX_TILT_DEG)
    areas = box_areas(points, fine)
    index = int(np.argmin(areas))
    # Coordinates turned by +a square a garment turned by -a (y points down): the tilt is -a.
    return float(areas[index]), -float(fine[index]), 1.0 - float(areas[index]) / upright


def box_areas(points: np.ndarray, angles_deg: np.ndarray) -> np.ndarray:
    """Axis-aligned box area of the (row, col) points turned by each angle."""
    angles = np.deg2rad(angles_deg)
    cos, sin = np.cos(angles)[:, None], np.sin(angles)[:, None]
    u = points[:, 1] * cos + points[:, 0] * sin
    v = -points[:, 1] * sin + points[:, 0] * cos
    areas: np.ndarray = (np.ptp(u, axis=1) + 1.0) * (np.ptp(v, axis=1) + 1.0)
    return areas


def outline_points(mask: np.ndarray, origin: tuple[int, int] = (0, 0)) -> np.ndarray:
    """Each row's leftmost and rightmost true pixel, as (row, col) float64 in the frame (``origin``:
    where the mask lies in it). The shape's convex hull is theirs: the minimum-area rectangle gets
    the exact outline from a few hundred points, not a sample of the thousands inside."""
    rows = np.flatnonzero(mask.any(axis=1))
    lines = mask[rows]
    first = lines.argmax(axis=1)
    last = lines.shape[1] - 1 - lines[:, ::-1].argmax(axis=1)
    points = np.concatenate([np.stack([rows, first], axis=1), np.stack([rows, last], axis=1)])
    placed: np.ndarray = (points + np.array(origin)).astype(np.float64)
    return placed


def tilt_of(mask: np.ndarray, origin: tuple[int, int] = (0, 0)) -> float:
    """The garment's tilt to undo, in degrees (0: leave it as it lies). ``origin``: where the mask
    lies in the frame (row, col), so that float rounding is the whole frame's."""
    _, tilt, gain = min_area_rect(outline_points(mask, origin))
    return tilt if gain >= MIN_TILT_GAIN and abs(tilt) >= MIN_TILT_DEG else 0.0
