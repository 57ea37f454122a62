"""The belt's fit: the light on it from the border, robust to what lies over the border."""

from __future__ import annotations

import numpy as np
import pytest

from app.inference.segmentation import belt


def test_an_even_belt_is_its_own_colour_everywhere():
    photo = np.broadcast_to(np.float32([40, 60, 50]), (90, 120, 3)).copy()
    fitted = belt.fit_background(photo)
    assert np.allclose(fitted.colour, [40, 60, 50], atol=0.5)
    assert np.allclose(fitted.light, 40 * 0.299 + 60 * 0.587 + 50 * 0.114, atol=0.5)


def test_a_lamp_gradient_is_evened_out():
    gradient = np.linspace(0.4, 1.0, 120, dtype=np.float32)[None, :, None]
    photo = np.full((90, 120, 3), 240.0, np.float32) * gradient
    photo[30:60, 40:80] = np.float32([200, 40, 40]) * gradient[:, 40:80]  # a garment under the same lamp
    even = belt.flat_field(photo, belt.fit_background(photo))
    assert np.allclose(even[5, 5], even[5, 115], atol=2.0)  # the belt: one colour
    assert np.allclose(even[45, 42], even[45, 78], atol=2.0)  # the garment: one colour
    assert even[45, 78] == pytest.approx([200, 40, 40], abs=2.0)  # its own, under the lamp's full light


def test_what_lies_over_the_border_is_not_belt():
    photo = np.full((90, 120, 3), 250.0, np.float32)
    photo[:, 50:80] = 10.0  # a dark garment over the top and bottom edges
    fitted = belt.fit_background(photo)
    assert np.allclose(fitted.light, 250.0, atol=1.0)
    _, cols, _ = belt.border_samples(90, 120)
    assert not fitted.inlier[(cols >= 50) & (cols < 80)].any()


def test_distance_is_in_lightness_units():
    photo = np.full((2, 2, 3), 100.0, np.float32)
    photo[0, 0] = 130.0  # 30 levels lighter, no colour
    assert belt.distance(photo, np.float32([100, 100, 100]))[0, 0] == pytest.approx(30.0, abs=1e-4)


def vignetted(level: float, height: int = 150, width: int = 200) -> np.ndarray:
    """An even belt through a lens: a cos^4 falloff of the light, 1 / (1 + k r^2)^2, seen through
    a display gamma of 2.2 (brightest in the middle, 28 % darker in the corners)."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    r2 = ((xs - width / 2) ** 2 + (ys - height / 2) ** 2) / (width / 2) ** 2
    return (level / (1.0 + 0.25 * r2) ** (2 / 2.2))[..., None] * np.ones(3, np.float32)


def test_the_refit_follows_vignetting_the_border_fit_misses():
    photo = vignetted(250.0)
    border_fit = belt.fit_background(photo)
    refit = belt.refit_background(photo, border_fit, np.ones(photo.shape[:2], bool))
    truth = photo[..., 0]
    # The border fit extrapolates the middle from the edges and misses it by 8 levels.
    assert np.abs(border_fit.light - truth)[60:90, 80:120].max() > 6.0
    assert np.abs(refit.light - truth).max() < 1.0
    assert refit.colour == pytest.approx([250.0] * 3, abs=0.5)  # under the light at its peak
    np.testing.assert_array_equal(refit.inlier, border_fit.inlier)


def test_the_refit_leaves_out_what_is_not_clear():
    photo = vignetted(250.0)
    # A dark garment over most of the frame: too much of it for the fit to drop as outliers.
    photo[25:125, 30:170] = 20.0
    clear = np.ones(photo.shape[:2], bool)
    clear[22:128, 27:173] = False
    refit = belt.refit_background(photo, belt.fit_background(photo), clear)
    assert np.abs(refit.light - vignetted(250.0)[..., 0]).max() < 1.0


def test_a_frame_with_no_clear_belt_keeps_the_border_fit():
    photo = vignetted(250.0)
    border_fit = belt.fit_background(photo)
    assert belt.refit_background(photo, border_fit, np.zeros(photo.shape[:2], bool)) is border_fit
