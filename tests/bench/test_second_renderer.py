"""The second scanner renderer: camera JPEGs formed in linear light, the same for the same seed."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from bench import second_renderer
from bench.garment import EMPTY, LIGHT
from bench.photos import load_test_set
from bench.scanner import renderer
from bench.second_renderer import CONDITIONS, FRAME, LUMINANCE, lay_garment, render, to_linear, to_srgb


@pytest.mark.parametrize("condition", CONDITIONS)
def test_every_condition_renders_a_2_mp_jpeg_reproducibly(condition):
    images, _ = load_test_set()
    data = render(condition, images[0], seed=5)
    photo = Image.open(io.BytesIO(data))
    assert (photo.format, photo.size, photo.mode) == ("JPEG", FRAME, "RGB")
    assert render(condition, images[0], seed=5) == data
    assert render(condition, images[0], seed=6) != data


def test_an_empty_belt_holds_no_garment_whatever_the_image():
    images, _ = load_test_set()
    assert render(EMPTY, images[0], seed=9) == render(EMPTY, images[1], seed=9)


def test_the_srgb_curve_round_trips_and_has_its_standard_values():
    values = np.linspace(0.0, 1.0, 256, dtype=np.float32)
    np.testing.assert_allclose(to_srgb(to_linear(values)), values, atol=1e-5)
    np.testing.assert_allclose(to_linear(np.array([0.5, 1.0], np.float32)), [0.21404, 1.0], atol=1e-5)


def test_the_garment_covers_its_silhouette_with_its_own_lightness_and_leaves_the_belt_elsewhere():
    square = np.zeros((28, 28), np.uint8)
    square[4:24, 4:24] = 200  # a garment of one shade, 20 of 28 pixels wide
    belt = np.full((FRAME[1], FRAME[0], 3), 0.02, np.float32)
    scene = lay_garment(belt, square, np.random.default_rng(3))
    luminance = scene @ LUMINANCE
    garment = to_linear(np.float32(LIGHT * (1 - 200 / 255) / 255))
    covered = np.isclose(luminance, garment, rtol=1e-3)
    untouched = np.isclose(luminance, 0.02, rtol=1e-4)
    # The square's core is the garment (its hue keeps its luminance); the frame around it is belt;
    # between them a ramp about one dataset pixel (~20 photo pixels) wide mixes the two.
    rows = np.nonzero(covered)[0]
    assert rows.max() - rows.min() > 0.45 * FRAME[1] * 18 / 28  # >= 45 % of the frame's height, less the edge
    assert covered.sum() + untouched.sum() > 0.97 * luminance.size
    assert luminance.min() >= 0.02 * 0.999 and luminance.max() <= garment * 1.001


def test_the_benchmark_takes_either_renderer_by_name():
    assert renderer("second") == (render, second_renderer.CONDITIONS)
    first_render, first_conditions = renderer("first")
    assert first_render is not render and "dark belt" in first_conditions
