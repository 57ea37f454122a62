"""Fixtures of the client tests: a real keyed `garment-sorter serve` and real photos to send it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from client_helpers import MODEL_DIR, SORTER_API_KEYS, Photo

from bench.photos import load_test_set, render_photos
from bench.server import Server, running_server
from contract.classes import CLASS_NAMES
from contract.versions import latest

PHOTOS = 4  # test images 0-3: an ankle boot, a pullover, two trousers


@pytest.fixture(scope="session")
def sorter() -> Iterator[Server]:
    """The shipped model behind default settings plus API keys (a scanner's and a reviewer's)."""
    latest(MODEL_DIR)  # a clear VersionError when no version is there
    with running_server({"SORTER_MODEL_DIR": str(MODEL_DIR), "SORTER_API_KEYS": SORTER_API_KEYS}) as server:
        yield server


@pytest.fixture(scope="session")
def photos(tmp_path_factory: pytest.TempPathFactory) -> list[Photo]:
    """Fashion-MNIST test images rendered as catalog photos (JPEG files, as a scanner would send)."""
    images, labels = load_test_set()
    folder = tmp_path_factory.mktemp("photos")
    found = []
    for index, data in enumerate(render_photos(images[:PHOTOS])):
        path = folder / f"test-{index}.jpg"
        path.write_bytes(data)
        found.append(Photo(path, CLASS_NAMES[int(labels[index])]))
    return found


@pytest.fixture
def boot(photos: list[Photo]) -> Path:
    assert photos[0].label == "Ankle boot"
    return photos[0].path
