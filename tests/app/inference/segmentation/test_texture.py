"""What lies smooth on a textured belt: found on grooved rubber, never on an even belt."""

from __future__ import annotations

import numpy as np
import pytest

from app.inference.segmentation import texture

HEIGHT, WIDTH = 150, 200


def grooved(level: float, period_px: float, amplitude: float = 12.0) -> np.ndarray:
    xs = np.arange(WIDTH, dtype=np.float32)
    return np.broadcast_to(level + amplitude * np.sin(2 * np.pi * xs / period_px), (HEIGHT, WIDTH)).copy()


def border() -> tuple[np.ndarray, np.ndarray]:
    rows, cols = np.mgrid[0:HEIGHT, 0:WIDTH]
    ring = (rows < 6) | (rows >= HEIGHT - 6) | (cols < 6) | (cols >= WIDTH - 6)
    return rows[ring], cols[ring]


def test_an_even_surface_has_no_texture_and_grooves_do():
    assert np.abs(texture.texture(np.full((40, 40), 90.0, np.float32))).max() == pytest.approx(0.0, abs=1e-4)
    assert float(np.median(texture.texture(grooved(30.0, 3.0)))) > 5.0


def test_an_even_belt_tells_nothing_by_smoothness():
    noisy = np.float32(200.0) + np.random.default_rng(0).normal(0.0, 2.0, (HEIGHT, WIDTH)).astype(np.float32)
    assert texture.smooth_on_textured_belt(noisy, border()) is None


def test_a_smooth_item_on_grooves_is_found_to_its_edge():
    lightness = grooved(30.0, 3.0)
    lightness[40:110, 60:140] = 30.0  # as dark as the belt, but smooth
    smooth = texture.smooth_on_textured_belt(lightness, border())
    assert smooth is not None
    rows, cols = smooth.nonzero()
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == pytest.approx((40, 109, 60, 139), abs=2)
    assert smooth[42:108, 62:138].all()  # to within 2 px of its edge (the corners round)
    assert not smooth[:30].any() and not smooth[:, :50].any()  # the belt itself: never smooth
