"""The production model committed under models/fashion-cnn: accuracy regression and its metadata."""

import json
from pathlib import Path

import numpy as np
import pytest

from training import calibrate, export

MODEL_ROOT = Path(__file__).resolve().parents[2] / "models" / "fashion-cnn"


@pytest.fixture(scope="module")
def shipped():
    version_dir = MODEL_ROOT / str(export.versions(MODEL_ROOT)[-1])
    return version_dir, json.loads((version_dir / "metadata.json").read_text())


@pytest.fixture(scope="module")
def outputs(shipped, fashion, split):
    version_dir, _ = shipped
    return {
        "test": export.predict_exported(version_dir, fashion.x_test),
        "val": export.predict_exported(version_dir, split.x_val),
    }


# Issue 3's goal is 95.0 %; the shipped version measures 94.15 % (see models/fashion-cnn/README.md).
# This guards against regressions below what is shipped, and must be raised with the next model.
MIN_TEST_ACCURACY = 0.9415


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
    assert meta["validation_accuracy"] == pytest.approx(val_accuracy, abs=0.001)
    assert len(meta["dataset_sha256"]) == 4


def test_temperature_is_baked_into_the_probabilities(shipped, outputs):
    _, meta = shipped
    assert meta["temperature"] > 0
    logits = outputs["test"]["logits"]
    assert np.allclose(outputs["test"]["probabilities"], calibrate.softmax(logits, meta["temperature"]), atol=1e-5)
    assert meta["ece_test_after"] <= 0.015


def test_review_threshold_keeps_wrong_bins_under_one_percent_on_validation(shipped, outputs, split):
    _, meta = shipped
    threshold = meta["review_threshold"]
    assert 0 < threshold < 1
    figures = calibrate.sorting_figures(outputs["val"]["probabilities"], split.y_val, threshold)
    assert figures["wrong_bin_rate"] <= 0.01
    assert figures["review_share"] == pytest.approx(meta["sorting_validation"]["review_share"], abs=0.001)


def test_measured_ece_on_test_matches_metadata(shipped, outputs, fashion):
    _, meta = shipped
    ece = calibrate.expected_calibration_error(outputs["test"]["probabilities"], fashion.y_test)
    assert ece == pytest.approx(meta["ece_test_after"], abs=0.001)
