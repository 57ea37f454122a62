"""Unpacking a version: its networks back out of the SavedModel, exact, and fine-tunable."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from contract.versions import latest, versions
from training import calibrate
from training.architectures import logits_model
from training.members import RUN_FIGURES, unpack
from training.train import TrainConfig, _compiled_model, _initial_weights, _training_images, load_best

MODEL_ROOT = Path(__file__).resolve().parents[2] / "models" / "fashion-cnn"


@pytest.fixture(scope="module")
def unpacked(tmp_path_factory):
    version_dir = latest(MODEL_ROOT)
    return version_dir, unpack(version_dir, tmp_path_factory.mktemp("unpacked"))


def _batch_norm(model: keras.Model) -> list[list[np.ndarray]]:
    return [layer.get_weights() for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]


def test_the_unpacked_networks_compute_the_served_graph(unpacked, fashion):
    version_dir, run_dirs = unpacked
    metadata = json.loads((version_dir / "metadata.json").read_text())
    members = metadata["ensemble_size"]
    assert [d.name for d in run_dirs] == [f"member-{i}" for i in range(members)] + [
        f"unsure-{i}" for i in range(metadata["unsure_members"])
    ]
    config = json.loads((run_dirs[0] / "config.json").read_text())
    recorded = metadata["ensemble_members"][0]["training"]
    assert config == {
        **{k: v for k, v in recorded.items() if k not in RUN_FIGURES},
        "unpacked": {"from": str(version_dir), "network": 0, "role": "member"},
    }
    images = fashion.x_test[:400]
    served = tf.saved_model.load(str(version_dir)).signatures["serving_default"]
    expected = served(images=tf.constant(images[..., None]))["logits"].numpy()
    scaled = images[..., None].astype(np.float32) / 255.0
    first_look = np.mean([logits_model(load_best(d)).predict(scaled, verbose=0) for d in run_dirs[:members]], axis=0)
    # Where the ensemble is sure the graph serves the members' mean alone (no second look).
    probabilities = np.exp(first_look - first_look.max(axis=1, keepdims=True))
    sure = probabilities.max(axis=1) / probabilities.sum(axis=1) >= metadata["flip_below"]
    assert sure.mean() > 0.8
    np.testing.assert_allclose(first_look[sure], expected[sure], atol=1e-4)


def _version_made_from(root: Path, runs: list[str]) -> tuple[Path, dict]:
    """The version under ``root`` whose networks are these runs (a full-train version's held-out twin)."""
    for version in versions(root):
        metadata = json.loads((root / str(version) / "metadata.json").read_text())
        if [member["run"] for member in metadata.get("ensemble_members", [])] == runs:
            return root / str(version), metadata
    raise AssertionError(f"no version under {root} was made from {runs}")


CANDIDATES = MODEL_ROOT.parent / "candidates" / "fashion-cnn"


def _metadata(version_dir: Path) -> dict:
    return json.loads((version_dir / "metadata.json").read_text())


def _candidates(held_out: bool) -> list[Path]:
    """Candidates calibrated on the validation split (held-out twins) or through such a twin (full-train)."""
    return [
        CANDIDATES / str(v)
        for v in versions(CANDIDATES)
        if (_metadata(CANDIDATES / str(v))["validation_accuracy"] is not None) == held_out
    ]


def _in_repo(version_dir: Path) -> str:
    return version_dir.relative_to(MODEL_ROOT.parents[1]).as_posix()


@pytest.mark.parametrize("full_train_dir", [latest(MODEL_ROOT), *_candidates(held_out=False)], ids=_in_repo)
def test_a_full_train_version_restored_takes_the_calibration_of_its_held_out_twin_restored(
    full_train_dir, fashion, tmp_path, monkeypatch
):
    """Both versions back as the runs they were made from (their recorded run directories), the
    full-train one calibrated through its twin: its temperature, threshold and test accuracy."""
    monkeypatch.chdir(tmp_path)
    served = _metadata(full_train_dir)
    twin_dir, twin = _version_made_from(full_train_dir.parent, served["calibrated_by"]["runs"])
    twin_runs = unpack(twin_dir)
    runs = unpack(full_train_dir)
    assert [str(d) for d in twin_runs] == served["calibrated_by"]["runs"]
    assert [str(d) for d in runs] == [m["run"] for m in served["ensemble_members"]]
    restored = json.loads((twin_runs[0] / "calibration.json").read_text())
    members = served["ensemble_size"]
    assert restored["ensemble_with"] == [str(d) for d in twin_runs[1:members]]
    assert restored["unsure_with"] == [str(d) for d in twin_runs[members:]]
    assert json.loads((twin_runs[-1] / "run.json").read_text())["params"] == served["params"] // len(runs)
    assert json.loads((runs[0] / "run.json").read_text())["train_accuracy"] == served["train_accuracy"]

    calibration = calibrate.calibrate_run(
        calibrate.calibrated_runs(runs[0], json.loads((runs[0] / "calibration.json").read_text())),
        held_out_twin=twin_runs[0],
    )
    assert calibration["temperature"] == served["temperature"] == twin["temperature"]
    assert calibration["review_threshold"] == served["review_threshold"]
    assert calibration["calibrated_by"]["runs"] == served["calibrated_by"]["runs"]
    assert calibration["test_accuracy"] == pytest.approx(served["test_accuracy"], abs=0.0005)
    with pytest.raises(FileExistsError):  # a restored run is never overwritten
        unpack(twin_dir)


@pytest.mark.parametrize("candidate_dir", _candidates(held_out=True), ids=_in_repo)
def test_a_candidate_restores_as_a_calibrated_twin_whose_borrowed_networks_have_full_train_twins(
    candidate_dir, tmp_path, monkeypatch
):
    """A held-out candidate (models/candidates/README.md), restored, is the calibrated ensemble it was
    exported from, and each network it shares with the served version's held-out twin has its
    full-train twin in the served version, so only its new networks needed training again."""
    monkeypatch.chdir(tmp_path)
    metadata = _metadata(candidate_dir)
    runs = unpack(candidate_dir)
    calibration = json.loads((runs[0] / "calibration.json").read_text())
    assert calibration["temperature"] == metadata["temperature"] and metadata["validation_accuracy"] is not None
    restored = calibrate.calibrated_runs(runs[0], calibration)
    assert restored.networks == tuple(runs) and restored.flip_below == metadata["flip_below"]

    served = json.loads((latest(MODEL_ROOT) / "metadata.json").read_text())
    full_train_of = dict(zip(served["calibrated_by"]["runs"], served["ensemble_members"], strict=True))
    borrowed = [run_dir for run_dir in runs if str(run_dir) in full_train_of]
    assert borrowed
    for run_dir in borrowed:
        recorded = full_train_of[str(run_dir)]["training"]
        settings = {k: v for k, v in recorded.items() if k not in RUN_FIGURES}
        assert recorded["full_train"] and calibrate.recipe(settings) == calibrate.recipe(
            json.loads((run_dir / "config.json").read_text())
        )


def test_fine_tuning_with_frozen_batch_norm_moves_the_convolutions_only(unpacked, split):
    _, run_dirs = unpacked
    start = load_best(run_dirs[0])
    config = TrainConfig(arch="fashion-cnn", init_from=str(run_dirs[0]), freeze_batch_norm=True)
    model, _ = _compiled_model(config, steps_per_epoch=2)
    _initial_weights(model, config)
    images = split.x_train[:256, ..., None].astype(np.float32) / 255.0
    model.fit(images, keras.utils.to_categorical(split.y_train[:256], 10), batch_size=128, epochs=1, verbose=0)
    for before, after in zip(_batch_norm(start), _batch_norm(model), strict=True):
        for a, b in zip(before, after, strict=True):
            np.testing.assert_array_equal(a, b)  # the identity, kept: gamma, beta, mean and variance
    first_conv = next(i for i, layer in enumerate(model.layers) if isinstance(layer, keras.layers.Conv2D))
    assert not np.array_equal(start.layers[first_conv].get_weights()[0], model.layers[first_conv].get_weights()[0])
    # Without the flag the same step would re-estimate the statistics from the batches.
    loose = TrainConfig(arch="fashion-cnn", init_from=str(run_dirs[0]))
    model, _ = _compiled_model(loose, steps_per_epoch=2)
    _initial_weights(model, loose)
    model.fit(images, keras.utils.to_categorical(split.y_train[:256], 10), batch_size=128, epochs=1, verbose=0)
    assert not np.array_equal(_batch_norm(start)[0][2], _batch_norm(model)[0][2])


def test_a_render_set_joins_the_training_images(split, tmp_path):
    from contract.renders import RenderSet

    rendered = RenderSet(
        images=np.full((3, 28, 28), 7, np.uint8),
        labels=np.array([1, 2, 3], np.uint8),
        sources=np.arange(3, dtype=np.int32),
        conditions=np.zeros(3, np.uint8),
        condition_names=("dark belt",),
    )
    rendered.save(tmp_path / "renders.npz")
    config = TrainConfig(arch="fashion-cnn", limit_train=10, renders=str(tmp_path / "renders.npz"))
    images, labels = _training_images(config, split)
    assert images.shape == (13, 28, 28)
    np.testing.assert_array_equal(images[:10], split.x_train[:10])
    np.testing.assert_array_equal(images[10:], rendered.images)
    assert labels[10:].tolist() == [1, 2, 3] and labels.dtype == split.y_train.dtype


def test_the_metadata_file_name_is_the_contracts():
    from contract.metadata import METADATA_FILE
    from training import members

    assert members.METADATA_FILE == METADATA_FILE
