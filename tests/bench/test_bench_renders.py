"""`python -m bench renders`: each chosen image once, under the next garment condition in turn,
as the service's preprocessing leaves it; the summary counts what was left out, not what the split
could not give."""

from __future__ import annotations

import argparse

import numpy as np

from bench import renders
from contract.renders import read_render_set


def test_a_count_past_the_split_renders_each_image_once_and_drops_nothing(monkeypatch, tmp_path):
    images, labels = renders._split("validation")
    monkeypatch.setattr(renders, "_split", lambda split: (images[:12], labels[:12]))  # forked workers see it too
    args = argparse.Namespace(
        renders_split="validation", renders_count=15, workers=1, renders_out=str(tmp_path / "r.npz")
    )
    summary = renders.bench_renders(args)
    assert (summary["images"], summary["dropped"]) == (12, 0)
    made = read_render_set(tmp_path / "r.npz")
    assert made.sources.tolist() == list(range(12))
    assert made.labels.tolist() == labels[:12].tolist()
    assert made.conditions.tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    assert made.condition_names == renders.GARMENT_CONDITIONS
    assert all(image.any() for image in made.images) and made.images.dtype == np.uint8
