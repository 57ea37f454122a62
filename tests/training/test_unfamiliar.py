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
from contract.versions import latest, versions
from training import export
from training.unfamiliar import calibrate_unfamiliar, derive_version

MODEL_ROOT = Path(__file__).resolve().parents[2] / "models" / "fashion-cnn"


# The tree holds the served version and, below it, its held-out twin (trained without the
# validation split): models/fashion-cnn/CHANGELOG.md.
TWIN = str(versions(MODEL_ROOT)[0])


@pytest.fixture(scope="module")
def held_out_copy(tmp_path_factory):
    """The held-out twin alone in a model directory of its own."""
    root = tmp_path_factory.mktemp("models")
    shutil.copytree(MODEL_ROOT / TWIN, root / TWIN)
    return root / TWIN


def test_a_held_out_export_calibrates_on_itself_and_the_next_version_serves_it(held_out_copy, split):
    block = calibrate_unfamiliar(held_out_copy, None, trip_rate=0.02)
    assert block["calibrated_on"] == f"validation split (10000 images) through version {TWIN}"
    scores = energy(export.predict_exported(held_out_copy, split.x_val)["logits"])
    assert np.mean(scores >= block["threshold"]) == block["trip_rate"] <= 0.02
    derived = derive_version(held_out_copy, block)
    after = int(TWIN) + 1
    assert derived == held_out_copy.parent / str(after)
    # The same graph and variables, byte for byte; only metadata.json differs.
    for name in ("saved_model.pb", "variables/variables.index"):
        assert filecmp.cmp(held_out_copy / name, derived / name, shallow=False)
    meta = json.loads((derived / "metadata.json").read_text())
    assert meta["version"] == after and meta["derived_from"]["version"] == int(TWIN)
    assert read_metadata(derived).unfamiliar is not None
    model = load_tensorflow_model(derived.parent, 8, 1, 1, "float32")  # serves the highest
    assert model.version == after
    flags = model.infer(split.x_val[:8]).unfamiliar
    assert flags.tolist() == (scores[:8] >= block["threshold"]).tolist()


def test_a_full_train_export_needs_its_held_out_twin(tmp_path):
    served = latest(MODEL_ROOT)
    full = tmp_path / served.name
    full.mkdir()
    shutil.copy(served / "metadata.json", full / "metadata.json")
    with pytest.raises(ValueError, match="held-out-twin"):
        calibrate_unfamiliar(full, None)
