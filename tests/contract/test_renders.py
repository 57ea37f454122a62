"""The render set file as bench writes it and training reads it: round trip and strict reading."""

from __future__ import annotations

import numpy as np
import pytest

from contract.renders import RenderSet, RenderSetError, read_render_set


def _set(count: int = 3) -> RenderSet:
    rng = np.random.default_rng(0)
    return RenderSet(
        images=rng.integers(0, 256, (count, 28, 28), dtype=np.uint8),
        labels=np.array([0, 9, 4][:count], np.uint8),
        sources=np.array([7, 49_999, 123][:count], np.int32),
        conditions=np.array([0, 1, 0][:count], np.uint8),
        condition_names=("dark belt", "label in frame"),
    )


def test_a_saved_render_set_reads_back_the_same(tmp_path):
    made = _set()
    made.save(tmp_path / "sub" / "renders")  # no .npz added to the name the caller chose
    back = read_render_set(tmp_path / "sub" / "renders")
    np.testing.assert_array_equal(back.images, made.images)
    np.testing.assert_array_equal(back.labels, made.labels)
    np.testing.assert_array_equal(back.sources, made.sources)
    np.testing.assert_array_equal(back.conditions, made.conditions)
    assert back.condition_names == ("dark belt", "label in frame")


def test_what_is_not_a_render_set_is_refused_by_name(tmp_path):
    (tmp_path / "text.npz").write_text("not numpy")
    with pytest.raises(RenderSetError, match=r"text\.npz: not a render set"):
        read_render_set(tmp_path / "text.npz")
    np.savez(tmp_path / "partial.npz", images=np.zeros((1, 28, 28), np.uint8))
    with pytest.raises(RenderSetError, match="no labels, sources, conditions, condition_names"):
        read_render_set(tmp_path / "partial.npz")
    made = _set()
    RenderSet(made.images[:2], made.labels, made.sources, made.conditions, made.condition_names).save(tmp_path / "a")
    with pytest.raises(RenderSetError, match="differ in length"):
        read_render_set(tmp_path / "a")
    RenderSet(made.images, np.array([0, 10, 1], np.uint8), made.sources, made.conditions, made.condition_names).save(
        tmp_path / "b"
    )
    with pytest.raises(RenderSetError, match="out of range"):
        read_render_set(tmp_path / "b")
    RenderSet(made.images.astype(np.float32), made.labels, made.sources, made.conditions, made.condition_names).save(
        tmp_path / "c"
    )
    with pytest.raises(RenderSetError, match=r"float32 \(3, 28, 28\), expected uint8"):
        read_render_set(tmp_path / "c")
