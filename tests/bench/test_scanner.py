"""The scanner renderer: camera-size JPEGs of the dataset's own garments, the same for the same seed."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from bench.garment import DUST, EMPTY, LIGHT, garment, outside, unmix_edge
from bench.photos import load_test_set
from bench.scanner import CONDITIONS, FRAME, render, stratified


@pytest.mark.parametrize("condition", sorted(CONDITIONS))
def test_every_condition_renders_a_camera_jpeg_reproducibly(condition):
    images, _ = load_test_set()
    data = render(condition, images[0], seed=5)
    photo = Image.open(io.BytesIO(data))
    assert (photo.format, photo.size, photo.mode) == ("JPEG", FRAME, "RGB")
    assert render(condition, images[0], seed=5) == data


def test_the_silhouette_keeps_enclosed_holes_and_drops_the_outside():
    ring = np.zeros((7, 7), np.uint8)
    ring[1:6, 1:6] = 200
    ring[3, 3] = 0  # a light patch inside the garment: still garment
    background = outside(ring == 0)
    assert background[0].all() and background[:, 0].all() and not background[3, 3]
    assert not background[1:6, 1:6].any()
    item = garment(ring, 70)
    assert item.alpha[35, 35] == 1.0 and item.alpha[0, 0] == 0.0


def test_the_garment_is_the_dataset_image_negated_on_the_light_background():
    images, _ = load_test_set()
    item = garment(images[0], 28)
    on_light = item.alpha * item.lightness + (1.0 - item.alpha) * LIGHT
    # The dataset pixel, up to the 8-bit steps the coverage and alpha are stored in; the faint
    # dust around the garment is the background it was.
    expected = np.where(outside(images[0] <= DUST), LIGHT, LIGHT * (1.0 - images[0] / 255.0))
    np.testing.assert_allclose(on_light, expected, atol=2.5)


def test_an_even_garment_has_no_light_rim_on_a_dark_belt():
    # A garment of one shade whose outline pixels are half covered (the dataset's anti-aliasing
    # against its white background): on a dark belt its edge must not turn light.
    flat = np.zeros((28, 28), np.uint8)
    flat[6:22, 6:22] = 200
    flat[5, 6:22] = flat[22, 6:22] = flat[6:22, 5] = flat[6:22, 22] = 100
    coverage, alpha = unmix_edge(flat)
    assert np.allclose(coverage[5, 6:22], 200 / 255) and np.allclose(alpha[5, 6:22], 0.5)
    assert np.allclose(coverage[10, 10], 200 / 255) and alpha[10, 10] == 1.0
    assert alpha[0, 0] == 0.0


def test_an_empty_belt_holds_no_garment_whatever_the_image():
    images, _ = load_test_set()
    assert render(EMPTY, images[0], seed=9) == render(EMPTY, images[1], seed=9)


def test_the_sample_is_stratified_and_fixed():
    _, labels = load_test_set()
    chosen = stratified(labels, 20)
    assert np.bincount(labels[chosen], minlength=10).tolist() == [20] * 10
    assert (stratified(labels, 20) == chosen).all() and len(set(chosen.tolist())) == 200
