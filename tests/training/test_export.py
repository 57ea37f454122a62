import json

import numpy as np
import pytest
from keras import layers
from smoke_runs import SMOKE_PARAMS

from contract.metadata import MetadataError, read_metadata
from contract.versions import next_version
from training import architectures, data, export
from training.calibrate import softmax
from training.ensemble import Ensemble, predict_logits
from training.fold import fold_batch_norm
from training.train import load_best


@pytest.fixture(scope="module")
def model(smoke_run):
    return load_best(smoke_run.run_dir)


@pytest.fixture(scope="module")
def second(other_run):
    return load_best(other_run.run_dir)


def test_export_reload_reproduces_keras_predictions(model, smoke_run, tmp_path, fashion):
    version_dir = export.export(
        Ensemble((model,)), tmp_path / "fashion-cnn", {"validation_accuracy": smoke_run.val_accuracy}
    )
    assert version_dir == tmp_path / "fashion-cnn" / "1"
    images = fashion.x_test[:256]
    served = export.predict_exported(version_dir, images)
    expected = model.predict(data.to_model_inputs(images), verbose=0)
    assert served["probabilities"].dtype == np.float32 and served["probabilities"].shape == (256, 10)
    assert served["logits"].shape == (256, 10)
    assert np.abs(served["probabilities"] - expected).max() < 1e-5

    metadata = json.loads((version_dir / "metadata.json").read_text())
    assert metadata["name"] == "fashion-cnn" and metadata["version"] == 1
    assert metadata["architecture"] == "a3-model2" and metadata["params"] == SMOKE_PARAMS
    assert metadata["class_names"][0] == "T-shirt/top" and metadata["class_names"][9] == "Ankle boot"
    assert metadata["input"]["dtype"] == "uint8" and metadata["input"]["shape"] == [None, 28, 28, 1]
    assert metadata["outputs"] == {"probabilities": "float32 [None, 10]", "logits": "float32 [None, 10]"}
    assert metadata["temperature"] == 1.0
    assert read_metadata(version_dir).validation_accuracy == smoke_run.val_accuracy  # what the service reads

    assert next_version(tmp_path / "fashion-cnn") == 2


def test_bfloat16_signature_shares_the_weights_and_records_its_accuracy(model, tmp_path, fashion):
    images, labels = fashion.x_test[:512], fashion.y_test[:512]
    version_dir = export.export(
        Ensemble((model,)), tmp_path / "m", {}, temperature=1.5, evaluate_on={"test": (images, labels)}
    )
    metadata = json.loads((version_dir / "metadata.json").read_text())
    assert metadata["signatures"] == {"float32": "serving_default", "bfloat16": "serving_bfloat16"}
    full = export.predict_exported(version_dir, images, "float32")
    half = export.predict_exported(version_dir, images, "bfloat16")
    assert half["probabilities"].dtype == np.float32 and half["probabilities"].shape == (512, 10)
    # bfloat16 keeps 8 bits of mantissa: close to float32, not equal, and the same answers nearly always.
    assert 0 < np.abs(half["logits"] - full["logits"]).max() < 0.5
    assert np.mean(half["probabilities"].argmax(1) == full["probabilities"].argmax(1)) >= 0.98
    for precision, outputs in (("float32", full), ("bfloat16", half)):
        measured = float(np.mean(outputs["probabilities"].argmax(1) == labels))
        assert metadata["accuracy_by_precision"][precision] == {"test": measured}
    with pytest.raises(ValueError, match="precision must be one of float32, bfloat16"):
        export.predict_exported(version_dir, images, "float16")


def test_temperature_is_baked_into_probabilities(model, tmp_path, fashion):
    version_dir = export.export(Ensemble((model,)), tmp_path / "m", {}, temperature=2.0)
    served = export.predict_exported(version_dir, fashion.x_test[:32])
    logits = served["logits"]
    z = np.exp((logits - logits.max(axis=1, keepdims=True)) / 2.0)
    assert np.allclose(served["probabilities"], z / z.sum(axis=1, keepdims=True), atol=1e-6)


def test_failed_export_leaves_nothing_behind(model, tmp_path, monkeypatch):
    root = tmp_path / "fashion-cnn"

    def write_half_then_fail(ensemble, path, temperature):
        (path / "saved_model.pb").write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(export, "_write_savedmodel", write_half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        export.export(Ensemble((model,)), root, {})
    assert list(root.iterdir()) == []


def test_metadata_the_service_would_refuse_is_never_written(model, tmp_path):
    root = tmp_path / "fashion-cnn"
    with pytest.raises(MetadataError) as err:
        export.export(Ensemble((model,)), root, {"review_threshold": 1.5})
    assert str(err.value) == (
        f"metadata for {root / '1'}: review_threshold: Input should be less than or equal to 1 (got 1.5)"
    )
    assert list(root.iterdir()) == []


def test_existing_version_is_never_overwritten(model, tmp_path):
    root = tmp_path / "fashion-cnn"
    (root / "3").mkdir(parents=True)
    with pytest.raises(FileExistsError):
        export.export(Ensemble((model,)), root, {}, version=3)
    assert next_version(root) == 4


def test_folding_batch_norm_keeps_predictions(fashion):
    model = architectures.build("fashion-cnn")
    rng = np.random.default_rng(0)
    for layer in model.layers:  # trained-looking statistics, not the identity of a fresh layer
        if isinstance(layer, layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights(
                [
                    gamma * rng.uniform(0.5, 2, gamma.shape),
                    beta + rng.normal(0, 0.1, beta.shape),
                    mean + rng.normal(0, 0.1, mean.shape),
                    var * rng.uniform(0.5, 2, var.shape),
                ]
            )
    folded = fold_batch_norm(model)
    assert not any(isinstance(layer, layers.BatchNormalization) for layer in folded.layers)
    assert folded.count_params() < model.count_params()
    images = data.to_model_inputs(fashion.x_test[:256])
    assert np.abs(folded.predict(images, verbose=0) - model.predict(images, verbose=0)).max() < 1e-5


def test_flip_averaging_export_matches_calibration_logits(model, tmp_path, fashion):
    images = fashion.x_test[:64]
    version_dir = export.export(Ensemble((model,), tta_flip=True), tmp_path / "m", {})
    served = export.predict_exported(version_dir, images)
    expected = predict_logits(Ensemble((model,), tta_flip=True), images)
    assert np.abs(served["logits"] - expected).max() < 1e-4
    assert np.abs(served["logits"] - predict_logits(Ensemble((model,)), images)).max() > 1e-3


def clear_of_the_line(logits: np.ndarray, flip_below: float) -> dict[str, np.ndarray]:
    """Per precision, the images whose second look the served graph must decide as float32 does:
    all in float32; in bfloat16 those whose top probability is not within 0.02 of ``flip_below``,
    which bfloat16's rounding may move across it (emulated on CPUs without bfloat16, it did)."""
    top = softmax(logits).max(axis=1)
    clear = np.abs(top - flip_below) > 0.02
    assert clear.sum() > 0.8 * len(top)  # most images are judged
    return {"float32": np.ones(len(top), bool), "bfloat16": clear}


def test_flip_below_mirrors_only_the_unsure_images_in_the_graph_as_in_calibration(model, tmp_path, fashion):
    images = fashion.x_test[:256]
    flip_below = Ensemble((model,), flip_below=0.9)
    plain = predict_logits(Ensemble((model,)), images)
    always = predict_logits(Ensemble((model,), tta_flip=True), images)
    unsure = softmax(plain).max(axis=1) < 0.9
    assert 0 < unsure.sum() < len(images)  # the smoke model is unsure of some images, sure of others
    expected = predict_logits(flip_below, images)
    assert np.abs(expected[unsure] - always[unsure]).max() < 1e-4
    assert np.array_equal(expected[~unsure], plain[~unsure])

    version_dir = export.export(flip_below, tmp_path / "m", {})
    assert json.loads((version_dir / "metadata.json").read_text())["flip_below"] == 0.9
    decided = clear_of_the_line(plain, 0.9)
    for precision, tolerance in (("float32", 1e-4), ("bfloat16", 0.5)):
        served = export.predict_exported(version_dir, images, precision)["logits"]
        assert np.abs(served - expected)[decided[precision]].max() < tolerance
    for batch in (images[:1], images[unsure][:3], images[~unsure][:3]):  # all, some or none mirrored
        served = export.predict_exported(version_dir, batch)["logits"]
        assert np.abs(served - predict_logits(flip_below, batch)).max() < 1e-4


def test_unsure_members_join_the_mean_for_the_unsure_images_only(model, second, tmp_path, fashion):
    images = fashion.x_test[:256]
    with_second_look = Ensemble((model,), (second,), flip_below=0.9)
    plain = predict_logits(Ensemble((model,)), images)
    unsure = softmax(plain).max(axis=1) < 0.9
    assert 0 < unsure.sum() < len(images)
    expected = predict_logits(with_second_look, images)
    both_views = predict_logits(Ensemble((model, second), tta_flip=True), images)  # both networks, both views
    assert np.abs(expected[unsure] - both_views[unsure]).max() < 1e-4
    assert np.array_equal(expected[~unsure], plain[~unsure])

    version_dir = export.export(with_second_look, tmp_path / "m", {})
    metadata = json.loads((version_dir / "metadata.json").read_text())
    assert (metadata["ensemble_size"], metadata["unsure_members"], metadata["params"]) == (1, 1, 2 * SMOKE_PARAMS)
    decided = clear_of_the_line(plain, 0.9)
    for precision, tolerance in (("float32", 1e-4), ("bfloat16", 0.5)):
        served = export.predict_exported(version_dir, images, precision)["logits"]
        assert np.abs(served - expected)[decided[precision]].max() < tolerance
    for batch in (images[:1], images[unsure][:3], images[~unsure][:3]):  # all, some or none take the second look
        served = export.predict_exported(version_dir, batch)["logits"]
        assert np.abs(served - predict_logits(with_second_look, batch)).max() < 1e-4
