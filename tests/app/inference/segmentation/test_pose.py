"""The minimum-area rectangle: a turned shape's tilt, as PIL would turn it, and its area."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from app.inference.segmentation import pose


def turned_bar(angle_deg: float) -> np.ndarray:
    bar = np.zeros((200, 200), np.uint8)
    bar[60:140, 80:120] = 255  # 80 x 40
    return np.asarray(Image.fromarray(bar).rotate(angle_deg, Image.Resampling.BILINEAR)) > 128


@pytest.mark.parametrize("angle_deg", [-30.0, -20.0, -7.0, 4.0, 13.0, 27.0])
def test_the_tilt_is_the_angle_pil_turned_it_by(angle_deg):
    area, tilt, gain = pose.min_area_rect(np.argwhere(turned_bar(angle_deg)).astype(np.float64))
    assert tilt == pytest.approx(angle_deg, abs=1.0)
    assert area == pytest.approx(81 * 41, rel=0.06) and gain > 0.05


def test_an_upright_shape_has_no_tilt_and_no_gain():
    area, tilt, gain = pose.min_area_rect(np.argwhere(turned_bar(0.0)).astype(np.float64))
    assert (tilt, gain) == (0.0, 0.0) and area == 80 * 40
    assert pose.tilt_of(turned_bar(0.0)) == 0.0
    assert pose.tilt_of(turned_bar(2.0)) == 0.0  # below MIN_TILT_DEG: left as it lies


def test_a_degenerate_shape_has_a_box_not_an_error():
    line = np.array([[5.0, 1.0], [5.0, 2.0], [5.0, 3.0]])  # collinear: no hull
    assert pose.min_area_rect(line) == (3.0, 0.0, 0.0)


@pytest.mark.parametrize("angle_deg", [-30.0, -7.0, 0.0, 13.0, 27.0])
def test_the_outline_gives_the_rectangle_all_the_pixels_give(angle_deg):
    mask = turned_bar(angle_deg)
    mask[100:110, 95:105] = False  # a hole: inside the outline, no concern of the rectangle's
    outline = pose.outline_points(mask, origin=(7, 11))
    assert len(outline) == 2 * int(mask.any(axis=1).sum())
    everything = np.argwhere(mask).astype(np.float64) + np.array([7.0, 11.0])
    assert pose.min_area_rect(outline) == pose.min_area_rect(everything)
