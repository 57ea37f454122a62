"""The scanner renderer: camera-size JPEGs of the dataset's own garments, the same for the same seed."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from bench.photos import load_test_set
from bench.scanner import CONDITIONS, EMPTY, FRAME, garment, outside, render, stratified


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
    np.testing.assert_allclose(item.lightness, 253.0 * (1.0 - images[0] / 255.0), atol=1e-3)


def test_an_empty_belt_holds_no_garment_whatever_the_image():
    images, _ = load_test_set()
    assert render(EMPTY, images[0], seed=9) == render(EMPTY, images[1], seed=9)


def test_the_sample_is_stratified_and_fixed():
    _, labels = load_test_set()
    chosen = stratified(labels, 20)
    assert np.bincount(labels[chosen], minlength=10).tolist() == [20] * 10
    assert (stratified(labels, 20) == chosen).all() and len(set(chosen.tolist())) == 200
