"""The photo store: content-addressed, whole files, purged by age, never reached by a path."""

from __future__ import annotations

import hashlib
import io
import os
import time

import numpy as np
from PIL import Image

from app.records.photos import PhotoStore, media_type

SEEN = np.arange(784, dtype=np.uint8).reshape(28, 28)


def test_a_photo_is_stored_under_its_hash_with_the_image_the_model_saw(tmp_path):
    store = PhotoStore(tmp_path)
    reference = store.put(b"\xff\xd8 camera bytes", SEEN)
    assert reference == hashlib.sha256(b"\xff\xd8 camera bytes").hexdigest()
    assert store.read(reference) == b"\xff\xd8 camera bytes"
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(store.read(reference, seen=True)))), SEEN)
    assert store.put(b"\xff\xd8 camera bytes", SEEN) == reference  # the same photo again: one copy
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == [f"{reference}.orig", f"{reference}.seen.png"]


def test_only_a_sha256_names_a_photo(tmp_path):
    store = PhotoStore(tmp_path)
    (tmp_path / "secret").write_bytes(b"not a photo")
    for reference in ("../secret", "secret", "/etc/passwd", "A" * 64, "0" * 63, "0" * 64 + "/x"):
        assert store.read(reference) is None


def test_purge_removes_what_is_past_retention_and_keeps_the_rest(tmp_path):
    store = PhotoStore(tmp_path)
    old, new = store.put(b"old photo", SEEN), store.put(b"new photo", SEEN)
    past = time.time() - 10 * 86400
    for path in tmp_path.glob(f"*/{old}*"):
        os.utime(path, (past, past))
    assert store.purge(older_than_s=7 * 86400) == 2
    assert store.read(old) is None and store.read(new) == b"new photo"


def test_media_type_comes_from_the_content():
    buffer = io.BytesIO()
    Image.new("L", (4, 4)).save(buffer, "PNG")
    assert media_type(buffer.getvalue()) == "image/png"
    assert media_type(b"neither") == "application/octet-stream"
