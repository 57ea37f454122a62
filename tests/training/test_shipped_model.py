"""The production model committed under models/fashion-cnn: accuracy regression and its metadata."""

import json
from pathlib import Path

import numpy as np
import pytest

from contract.unfamiliar import energy
from contract.versions import latest, versions
from training import calibrate, export, sorting

MODEL_ROOT = Path(__file__).resolve().parents[2] / "models" / "fashion-cnn"


@pytest.fixture(scope="module")
def shipped():
    version_dir = latest(MODEL_ROOT)
    return version_dir, json.loads((version_dir / "metadata.json").read_text())


@pytest.fixture(scope="module")
def predicted(fashion, split):
    """predicted(version_dir, "test" | "val", precision): an export's outputs on a split, computed once
    per module (each costs seconds, and several tests look at the same ones)."""
    images = {"test": fashion.x_test, "val": split.x_val}
    done: dict[tuple[Path, str, str], dict[str, np.ndarray]] = {}

    def outputs_of(version_dir: Path, split_name: str, precision: str = "float32") -> dict[str, np.ndarray]:
        key = (Path(version_dir), split_name, precision)
        if key not in done:
            done[key] = export.predict_exported(key[0], images[split_name], precision)
        return done[key]

    return outputs_of


@pytest.fixture(scope="module")
def outputs(shipped, predicted):
    version_dir, _ = shipped
    return {"test": predicted(version_dir, "test"), "val": predicted(version_dir, "val")}


# What the exported graph computes besides its weights: a twin must match the shipped model in all of it.
GRAPH_KEYS = ("tta_flip", "flip_below", "ensemble_size", "unsure_members")


@pytest.fixture(scope="module")
def held_out(shipped):
    """The export whose validation split is clean: the shipped model itself or, when it trained on all
    60,000 images, its held-out twin (the same recipes on the 50,000 only), shipped as an earlier version
    because it chose the temperature and review threshold the shipped model serves."""
    _, meta = shipped
    twin = meta.get("calibrated_by")
    if twin is None:
        return shipped
    for version in reversed(versions(MODEL_ROOT)):
        candidate = json.loads((MODEL_ROOT / str(version) / "metadata.json").read_text())
        runs = [m["run"] for m in candidate.get("ensemble_members", [])] or [candidate.get("run")]
        same_graph = [candidate.get(k) for k in GRAPH_KEYS] == [meta.get(k) for k in GRAPH_KEYS]
        if runs == twin["runs"] and same_graph and "calibrated_by" not in candidate:
            return MODEL_ROOT / str(version), candidate
    pytest.fail(f"the held-out twin {twin['runs']} is not among the shipped versions")


# Issue 3's goal is 95.0 %; the shipped version 8 measures 95.05 % (float32 and bfloat16, see
# models/fashion-cnn/README.md). This guards against regressions below what is shipped, and must
# be raised with the next model.
MIN_TEST_ACCURACY = 0.9505


def test_shipped_model_keeps_its_test_accuracy(outputs, fashion):
    accuracy = np.mean(outputs["test"]["probabilities"].argmax(axis=1) == fashion.y_test)
    assert accuracy >= MIN_TEST_ACCURACY


def test_metadata_matches_what_is_measured(shipped, outputs, fashion, split):
    version_dir, meta = shipped
    assert meta["name"] == "fashion-cnn" and meta["version"] == int(version_dir.name)
    assert meta["architecture"] == "fashion-cnn" and meta["params"] <= 1_500_000
    test_accuracy = np.mean(outputs["test"]["probabilities"].argmax(axis=1) == fashion.y_test)
    val_accuracy = np.mean(outputs["val"]["probabilities"].argmax(axis=1) == split.y_val)
    assert meta["test_accuracy"] == pytest.approx(test_accuracy, abs=0.001)
    if meta.get("calibrated_by"):  # it trained on the validation split: no validation figure to claim
        assert meta["validation_accuracy"] is None and val_accuracy > meta["test_accuracy"]
    else:
        assert meta["validation_accuracy"] == pytest.approx(val_accuracy, abs=0.001)
    assert len(meta["dataset_sha256"]) == 4


def test_temperature_is_baked_into_the_probabilities(shipped, outputs):
    _, meta = shipped
    assert meta["temperature"] > 0
    logits = outputs["test"]["logits"]
    assert np.allclose(outputs["test"]["probabilities"], calibrate.softmax(logits, meta["temperature"]), atol=1e-5)
    assert meta["ece_test_after"] <= 0.015


def test_review_threshold_keeps_wrong_bins_under_one_percent_on_validation(shipped, held_out, predicted, split):
    _, meta = shipped
    held_out_dir, held_out_meta = held_out
    threshold = meta["review_threshold"]
    assert 0 < threshold < 1
    assert threshold == held_out_meta["review_threshold"] and meta["temperature"] == held_out_meta["temperature"]
    val = predicted(held_out_dir, "val")
    figures = sorting.sorting_figures(val["probabilities"], split.y_val, threshold)
    assert figures["wrong_bin_rate"] <= 0.01
    claimed = (meta.get("calibrated_by") or meta)["sorting_validation"]
    assert figures["review_share"] == pytest.approx(claimed["review_share"], abs=0.001)


def test_measured_ece_on_test_matches_metadata(shipped, outputs, fashion):
    _, meta = shipped
    ece = calibrate.expected_calibration_error(outputs["test"]["probabilities"], fashion.y_test)
    assert ece == pytest.approx(meta["ece_test_after"], abs=0.001)


def _exported_precisions() -> list[str]:
    version_dir = latest(MODEL_ROOT)
    return list(json.loads((version_dir / "metadata.json").read_text()).get("signatures", {"float32": None}))


@pytest.mark.parametrize("precision", _exported_precisions())
def test_every_exported_precision_serves_what_metadata_says(
    precision, shipped, held_out, outputs, predicted, fashion, split
):
    """The service may serve any exported signature (bfloat16 on CPUs that compute it natively):
    each must keep the accuracy floor, agree with float32 and keep the review threshold's promise
    (on validation, through the held-out model that chose it)."""
    version_dir, meta = shipped
    held_out_dir, _ = held_out
    test = predicted(version_dir, "test", precision)["probabilities"]
    val = predicted(held_out_dir, "val", precision)["probabilities"]
    test_accuracy = np.mean(test.argmax(axis=1) == fashion.y_test)
    assert test_accuracy >= MIN_TEST_ACCURACY - 0.001
    assert meta["accuracy_by_precision"][precision]["test"] == pytest.approx(test_accuracy, abs=0.001)
    if held_out_dir == version_dir:
        assert meta["accuracy_by_precision"][precision]["validation"] == pytest.approx(
            np.mean(val.argmax(axis=1) == split.y_val), abs=0.001
        )
    assert np.mean(test.argmax(axis=1) == outputs["test"]["probabilities"].argmax(axis=1)) >= 0.995
    # Each precision has its own review threshold (the service applies the served one's).
    claimed = meta["sorting_by_precision"][precision]
    assert 0 < claimed["review_threshold"] < 1
    figures = sorting.sorting_figures(val, split.y_val, claimed["review_threshold"])
    # The threshold sits exactly at 1 % on the exporting machine; bfloat16 kernels round a little
    # differently on CPUs without native bfloat16, which may move one item of 10,000 across it.
    assert figures["wrong_bin_rate"] <= (0.01 if precision == "float32" else 0.0101)
    if held_out_dir == version_dir:
        assert figures["review_share"] == pytest.approx(claimed["validation"]["review_share"], abs=0.001)
    if precision == "float32":
        assert claimed["review_threshold"] == pytest.approx(meta["review_threshold"], abs=1e-6)


def test_the_unfamiliar_threshold_keeps_its_promise_on_validation(shipped, held_out, predicted):
    """At most 1 % of clean validation images trip it, through the export that chose it; the test
    split's share is what metadata says (measured there, never chosen on)."""
    version_dir, meta = shipped
    held_out_dir, _ = held_out
    block = meta["unfamiliar"]
    assert block["score"] == "energy" and block["calibrated_on"].endswith(f"version {held_out_dir.name}")
    val_scores = energy(predicted(held_out_dir, "val")["logits"])
    assert np.mean(val_scores >= block["threshold"]) == pytest.approx(block["trip_rate"], abs=1e-4)
    assert block["trip_rate"] <= 0.01
    test_scores = energy(predicted(version_dir, "test")["logits"])
    assert np.mean(test_scores >= block["threshold"]) == pytest.approx(block["test_trip_rate"], abs=1e-4)
