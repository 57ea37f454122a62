"""`garment-sorter score-renders`: runs calibrated on raw validation, scored on a render set."""

from __future__ import annotations

import numpy as np
import pytest

from contract.renders import RenderSet
from training.ensemble import Ensemble
from training.render_scores import score_renders, sorting_of, table


def test_sorting_counts_review_and_the_wrong_bin_per_photo():
    # Classes 0 (T-shirt/top) and 3 (Dress) share the summer bin; 4 (Coat) is winter's.
    probabilities = np.zeros((4, 10))
    probabilities[0, 0] = 1.0  # right, sure
    probabilities[1, 3] = 1.0  # wrong class, right bin, sure
    probabilities[2, 4] = 1.0  # wrong bin, sure: the costly one
    probabilities[3, [0, 4]] = 0.5  # unsure: review
    labels = np.array([0, 0, 0, 4])
    assert sorting_of(probabilities, labels, threshold=0.9) == {
        "top1": 0.25,
        "review_share": 0.25,
        "wrong_bin_share": 0.25,
        "images": 4,
    }


def test_validation_images_as_a_render_set_score_as_raw_validation(smoke_run, split, tmp_path):
    count = len(split.y_val)
    RenderSet(
        images=split.x_val,
        labels=split.y_val.astype(np.uint8),
        sources=np.arange(count, dtype=np.int32),
        conditions=(np.arange(count) % 2).astype(np.uint8),
        condition_names=("even", "odd"),
    ).save(tmp_path / "renders.npz")
    scores = score_renders(Ensemble((smoke_run.run_dir,)), tmp_path / "renders.npz")
    assert scores["renders"] == scores["raw_validation"]
    assert scores["raw_validation"]["top1"] == smoke_run.val_accuracy
    assert scores["raw_validation"]["wrong_bin_share"] <= 0.01  # the threshold's promise on validation
    halves = scores["conditions"]
    assert halves["even"]["images"] + halves["odd"]["images"] == count
    assert (halves["even"]["top1"] + halves["odd"]["top1"]) / 2 == pytest.approx(scores["renders"]["top1"], abs=1e-12)
    lines = table(scores)
    assert lines[4].startswith("| raw validation | 10,000 |") and lines[-1].startswith("| odd | 5,000 |")
