"""The minimum-area rectangle around a shape: how far a garment is turned, and how rectangular a
piece is (a label nearly fills its rectangle; a garment never does).

The dataset photographs garments square to the frame, so a garment whose minimum-area rectangle is
turned 3-35 degrees, and clearly smaller than its upright box, is turned back.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import ConvexHull, QhullError

MIN_TILT_DEG = 3.0  # smaller tilts are left alone (and are within what training saw)
MAX_TILT_DEG = 35.0
MIN_TILT_GAIN = 0.05  # the turned rectangle must be this much smaller than the upright box
COARSE_STEP_DEG = 5.0  # then 1-degree steps around the best
MAX_HULL_POINTS = 4000  # the hull needs only the outline's extremes; a sample keeps them


def min_area_rect(points: np.ndarray) -> tuple[float, float, float]:
    """The minimum-area rectangle over the hull, searched within MAX_TILT_DEG: (its area, the
    garment's tilt counter-clockwise in degrees, its area gain over the upright box)."""
    try:
        hull = points[ConvexHull(points).vertices]
    except (QhullError, ValueError):
        return float(np.ptp(points[:, 0]) + 1) * float(np.ptp(points[:, 1]) + 1), 0.0, 0.0
    upright = float(box_areas(hull, np.zeros(1))[0])
    coarse = np.arange(-MAX_TILT_DEG, MAX_TILT_DEG + 0.5, COARSE_STEP_DEG)
    best = float(coarse[int(np.argmin(box_areas(hull, coarse)))])
    fine = np.clip(np.arange(best - COARSE_STEP_DEG + 1, best + COARSE_STEP_DEG), -MAX_TILT_DEG, MAX_TILT_DEG)
    areas = box_areas(hull, fine)
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


def sample_points(points: np.ndarray, limit: int = MAX_HULL_POINTS) -> np.ndarray:
    """At most about ``limit`` of the points, evenly strided: the minimum-area rectangle needs only
    the outline's extremes, and the hull's cost grows with the points it is given."""
    return points if len(points) <= limit else points[:: len(points) // limit + 1]


def tilt_of(mask: np.ndarray) -> float:
    """The garment's tilt to undo, in degrees (0: leave it as it lies)."""
    _, tilt, gain = min_area_rect(sample_points(np.argwhere(mask)).astype(np.float64))
    return tilt if gain >= MIN_TILT_GAIN and abs(tilt) >= MIN_TILT_DEG else 0.0
