"""`garment-sorter unfamiliar`: the next version is the same graph with the threshold in its metadata."""

from __future__ import annotations

import filecmp
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from app.inference.tensorflow_model import load_tensorflow_model
from contract.metadata import read_metadata
from contract.unfamiliar import energy
from training import export
from training.unfamiliar import calibrate_unfamiliar, derive_version

MODEL_ROOT = Path(__file__).resolve().parents[2] / "models" / "fashion-cnn"


@pytest.fixture(scope="module")
def held_out_copy(tmp_path_factory):
    """Version 7 (trained without the validation split) alone in a model directory of its own."""
    root = tmp_path_factory.mktemp("models")
    shutil.copytree(MODEL_ROOT / "7", root / "7")
    return root / "7"


def test_a_held_out_export_calibrates_on_itself_and_the_next_version_serves_it(held_out_copy, split):
    block = calibrate_unfamiliar(held_out_copy, None, trip_rate=0.02)
    assert block["calibrated_on"] == "validation split (10000 images) through version 7"
    scores = energy(export.predict_exported(held_out_copy, split.x_val)["logits"])
    assert np.mean(scores >= block["threshold"]) == block["trip_rate"] <= 0.02
    derived = derive_version(held_out_copy, block)
    assert derived == held_out_copy.parent / "8"
    # The same graph and variables, byte for byte; only metadata.json differs.
    for name in ("saved_model.pb", "variables/variables.index"):
        assert filecmp.cmp(held_out_copy / name, derived / name, shallow=False)
    meta = json.loads((derived / "metadata.json").read_text())
    assert meta["version"] == 8 and meta["derived_from"]["version"] == 7
    assert read_metadata(derived).unfamiliar is not None
    model = load_tensorflow_model(derived.parent, 8, 1, 1, "float32")  # serves the highest: 8
    assert model.version == 8
    flags = model.infer(split.x_val[:8]).unfamiliar
    assert flags.tolist() == (scores[:8] >= block["threshold"]).tolist()


def test_a_full_train_export_needs_its_held_out_twin(tmp_path):
    full = tmp_path / "9"
    full.mkdir()
    shutil.copy(MODEL_ROOT / "9" / "metadata.json", full / "metadata.json")
    with pytest.raises(ValueError, match="held-out-twin"):
        calibrate_unfamiliar(full, None)
