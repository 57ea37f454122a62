import json

import numpy as np
import pytest

from contract.metadata import MetadataError
from contract.versions import next_version
from training import data, export
from training.train import TrainConfig, load_best, train

SMOKE = dict(arch="a3-model2", epochs=2, batch_size=128, limit_train=2000, seed=3)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "smoke"
    return train(TrainConfig(**SMOKE), out, verbose=0)


def test_smoke_run_writes_the_run_directory(smoke_run):
    run_dir = smoke_run.run_dir
    for name in ("best.keras", "history.csv", "history.json", "learning_curves.png", "run.json", "config.json"):
        assert (run_dir / name).is_file(), name
    assert any((run_dir / "tensorboard").rglob("*.tfevents*"))
    assert any((run_dir / "tensorboard" / "gradients").rglob("*.tfevents*"))
    history = json.loads((run_dir / "history.json").read_text())
    assert history["epoch"] == [0.0, 1.0]
    assert set(history) >= {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert smoke_run.epochs_run == 2 and smoke_run.params == 34_826
    # 2 epochs on 2,000 images learn something real: far above the 10 % of chance.
    assert smoke_run.val_accuracy > 0.5 and smoke_run.test_accuracy > 0.5


def test_export_reload_reproduces_keras_predictions(smoke_run, tmp_path, fashion):
    model = load_best(smoke_run.run_dir)
    version_dir = export.export(model, tmp_path / "fashion-cnn", {"validation_accuracy": smoke_run.val_accuracy})
    assert version_dir == tmp_path / "fashion-cnn" / "1"
    images = fashion.x_test[:256]
    served = export.predict_exported(version_dir, images)
    expected = model.predict(data.to_model_inputs(images), verbose=0)
    assert served["probabilities"].dtype == np.float32 and served["probabilities"].shape == (256, 10)
    assert served["logits"].shape == (256, 10)
    assert np.abs(served["probabilities"] - expected).max() < 1e-5

    metadata = json.loads((version_dir / "metadata.json").read_text())
    assert metadata["name"] == "fashion-cnn" and metadata["version"] == 1
    assert metadata["architecture"] == "a3-model2" and metadata["params"] == 34_826
    assert metadata["class_names"][0] == "T-shirt/top" and metadata["class_names"][9] == "Ankle boot"
    assert metadata["input"]["dtype"] == "uint8" and metadata["input"]["shape"] == [None, 28, 28, 1]
    assert metadata["temperature"] == 1.0

    assert next_version(tmp_path / "fashion-cnn") == 2


def test_bfloat16_signature_shares_the_weights_and_records_its_accuracy(smoke_run, tmp_path, fashion):
    model = load_best(smoke_run.run_dir)
    images, labels = fashion.x_test[:512], fashion.y_test[:512]
    version_dir = export.export(model, tmp_path / "m", {}, temperature=1.5, evaluate_on={"test": (images, labels)})
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


def test_temperature_is_baked_into_probabilities(smoke_run, tmp_path, fashion):
    model = load_best(smoke_run.run_dir)
    version_dir = export.export(model, tmp_path / "m", {}, temperature=2.0)
    served = export.predict_exported(version_dir, fashion.x_test[:32])
    logits = served["logits"]
    z = np.exp((logits - logits.max(axis=1, keepdims=True)) / 2.0)
    assert np.allclose(served["probabilities"], z / z.sum(axis=1, keepdims=True), atol=1e-6)


def test_failed_export_leaves_nothing_behind(smoke_run, tmp_path, monkeypatch):
    root = tmp_path / "fashion-cnn"

    def write_half_then_fail(model, path, temperature, tta_flip, flip_below, unsure_models):
        (path / "saved_model.pb").write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(export, "_write_savedmodel", write_half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        export.export(load_best(smoke_run.run_dir), root, {})
    assert list(root.iterdir()) == []


def test_metadata_the_service_would_refuse_is_never_written(smoke_run, tmp_path):
    root = tmp_path / "fashion-cnn"
    with pytest.raises(MetadataError) as err:
        export.export(load_best(smoke_run.run_dir), root, {"review_threshold": 1.5})
    assert str(err.value) == (
        f"metadata for {root / '1'}: review_threshold: Input should be less than or equal to 1 (got 1.5)"
    )
    assert list(root.iterdir()) == []


def test_existing_version_is_never_overwritten(smoke_run, tmp_path):
    root = tmp_path / "fashion-cnn"
    (root / "3").mkdir(parents=True)
    with pytest.raises(FileExistsError):
        export.export(load_best(smoke_run.run_dir), root, {}, version=3)
    assert next_version(root) == 4


class Interrupted(Exception):
    pass


def test_resume_continues_from_the_last_finished_epoch(tmp_path):
    import keras

    class StopAfterSecondEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise Interrupted()

    out = tmp_path / "resumable"
    config = TrainConfig(arch="a3-model2", epochs=3, limit_train=500, seed=1, histograms=False)
    with pytest.raises(Interrupted):
        train(config, out, verbose=0, extra_callbacks=[StopAfterSecondEpoch()])
    assert (out / "backup").is_dir()

    result = train(config, out, resume=True, verbose=0)
    # Only the third epoch ran again: the CSV holds epochs 0, 1 from the first attempt and 2 after it.
    rows = (out / "history.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == [0, 1, 2]
    assert result.epochs_run == 3
    assert not (out / "backup").exists()  # a finished run leaves no backup


def test_folding_batch_norm_keeps_predictions(fashion):
    from keras import layers

    from training import architectures
    from training.fold import fold_batch_norm

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


def test_flip_averaging_export_matches_calibration_logits(smoke_run, tmp_path, fashion):
    from training.calibrate import model_logits

    model = load_best(smoke_run.run_dir)
    version_dir = export.export(model, tmp_path / "m", {}, tta_flip=True)
    served = export.predict_exported(version_dir, fashion.x_test[:64])
    expected = model_logits(model, fashion.x_test[:64], tta_flip=True)
    assert np.abs(served["logits"] - expected).max() < 1e-4
    assert np.abs(served["logits"] - model_logits(model, fashion.x_test[:64])).max() > 1e-3


def test_flip_below_mirrors_only_the_unsure_images_in_the_graph_as_in_calibration(smoke_run, tmp_path, fashion):
    from training.calibrate import model_logits, softmax

    model = load_best(smoke_run.run_dir)
    images = fashion.x_test[:256]
    plain, always = model_logits(model, images), model_logits(model, images, tta_flip=True)
    unsure = softmax(plain).max(axis=1) < 0.9
    assert 0 < unsure.sum() < len(images)  # the smoke model is unsure of some images, sure of others
    expected = model_logits(model, images, flip_below=0.9)
    assert np.abs(expected[unsure] - always[unsure]).max() < 1e-4
    assert np.array_equal(expected[~unsure], plain[~unsure])

    version_dir = export.export(model, tmp_path / "m", {}, flip_below=0.9)
    assert json.loads((version_dir / "metadata.json").read_text())["flip_below"] == 0.9
    for precision, tolerance in (("float32", 1e-4), ("bfloat16", 0.5)):
        served = export.predict_exported(version_dir, images, precision)["logits"]
        assert np.abs(served - expected).max() < tolerance
    for batch in (images[:1], images[unsure][:3], images[~unsure][:3]):  # all, some or none mirrored
        served = export.predict_exported(version_dir, batch)["logits"]
        assert np.abs(served - model_logits(model, batch, flip_below=0.9)).max() < 1e-4


@pytest.fixture(scope="module")
def other_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "other"
    return train(TrainConfig(**{**SMOKE, "seed": 4, "epochs": 1, "histograms": False}), out, verbose=0)


def test_unsure_members_join_the_mean_for_the_unsure_images_only(smoke_run, other_run, tmp_path, fashion):
    from training.calibrate import model_logits, softmax

    model, second = load_best(smoke_run.run_dir), load_best(other_run.run_dir)
    images = fashion.x_test[:256]
    plain = model_logits(model, images)
    unsure = softmax(plain).max(axis=1) < 0.9
    assert 0 < unsure.sum() < len(images)
    expected = model_logits(model, images, flip_below=0.9, unsure_models=[second])
    both_views = model_logits([model, second], images, tta_flip=True)  # both networks, both views
    assert np.abs(expected[unsure] - both_views[unsure]).max() < 1e-4
    assert np.array_equal(expected[~unsure], plain[~unsure])

    version_dir = export.export(model, tmp_path / "m", {}, flip_below=0.9, unsure_with=[second])
    metadata = json.loads((version_dir / "metadata.json").read_text())
    assert (metadata["ensemble_size"], metadata["unsure_members"], metadata["params"]) == (1, 1, 2 * 34_826)
    for precision, tolerance in (("float32", 1e-4), ("bfloat16", 0.5)):
        served = export.predict_exported(version_dir, images, precision)["logits"]
        assert np.abs(served - expected).max() < tolerance
    for batch in (images[:1], images[unsure][:3], images[~unsure][:3]):  # all, some or none take the second look
        served = export.predict_exported(version_dir, batch)["logits"]
        assert np.abs(served - model_logits(model, batch, flip_below=0.9, unsure_models=[second])).max() < 1e-4


@pytest.mark.parametrize(
    ("flip_below", "tta_flip", "message"),
    [
        (0.0, False, r"flip_below must be in \(0, 1\] \(got 0.0\)"),
        (1.5, False, r"flip_below must be in \(0, 1\] \(got 1.5\)"),
        (0.8, True, "tta_flip already mirrors every image"),
        (None, False, "^unsure-only members need flip_below: it decides which images they see$"),
    ],
)
def test_flip_below_is_checked_before_anything_is_written(smoke_run, tmp_path, flip_below, tta_flip, message):
    model = load_best(smoke_run.run_dir)
    with pytest.raises(ValueError, match=message):
        export.export(model, tmp_path / "m", {}, tta_flip=tta_flip, flip_below=flip_below, unsure_with=[model])
    assert not (tmp_path / "m").exists() or not any((tmp_path / "m").iterdir())


def test_ensemble_is_calibrated_and_exported_as_the_mean_of_its_members(smoke_run, tmp_path, fashion):
    import shutil

    from training.calibrate import calibrate_run, model_logits
    from training.cli import _export_run

    first, second = tmp_path / "first", tmp_path / "second"
    shutil.copytree(smoke_run.run_dir, first)  # calibrate writes into the run; keep the fixture clean
    train(TrainConfig(**{**SMOKE, "seed": 4, "epochs": 1, "histograms": False}), second, verbose=0)
    models = [load_best(first), load_best(second)]

    calibration = calibrate_run(first, tmp_path / "figures", tta_flip=True, ensemble_with=[second])
    split = data.split_train_validation(fashion)
    val_logits = model_logits(models, split.x_val, tta_flip=True)
    assert calibration["ensemble_with"] == [str(second)]
    assert calibration["validation_accuracy"] == float(np.mean(val_logits.argmax(1) == split.y_val))

    version_dir = _export_run(first, tmp_path / "m", None)
    images = fashion.x_test[:64]
    served = export.predict_exported(version_dir, images)["logits"]
    assert np.abs(served - model_logits(models, images, tta_flip=True)).max() < 1e-4
    for alone in models:  # the graph really averages both networks
        assert np.abs(served - model_logits(alone, images, tta_flip=True)).max() > 1e-3
    metadata = json.loads((version_dir / "metadata.json").read_text())
    assert metadata["params"] == 2 * 34_826 and metadata["ensemble_size"] == 2
    assert [m["run"] for m in metadata["ensemble_members"]] == [str(first), str(second)]
    assert [m["training"]["seed"] for m in metadata["ensemble_members"]] == [3, 4]
    assert metadata["validation_accuracy"] == calibration["validation_accuracy"]
    assert "ensemble_with" not in metadata


def test_ensemble_refuses_a_member_that_trained_on_the_validation_split(smoke_run, tmp_path):
    from training.calibrate import calibrate_run

    full = tmp_path / "full"
    train(TrainConfig(**{**SMOKE, "epochs": 1, "full_train": True, "histograms": False}), full, verbose=0)
    with pytest.raises(ValueError, match="^ensemble members must share one validation split and none may train on it$"):
        calibrate_run(smoke_run.run_dir, ensemble_with=[full])
    assert not (smoke_run.run_dir / "calibration.json").exists()


def test_full_train_run_serves_its_held_out_twins_calibration(smoke_run, tmp_path, fashion):
    import shutil

    from training.calibrate import calibrate_run, model_logits, softmax
    from training.cli import _export_run
    from training.sorting import sorting_figures

    twin, full = tmp_path / "twin", tmp_path / "full"
    shutil.copytree(smoke_run.run_dir, twin)
    twin_calibration = calibrate_run(twin)
    train(TrainConfig(**{**SMOKE, "full_train": True, "histograms": False}), full, verbose=0)

    with pytest.raises(ValueError, match=r"^the held-out twin was calibrated with tta_flip=False, flip_below=None; "):
        calibrate_run(full, held_out_twin=twin, flip_below=0.6)
    calibration = calibrate_run(full, tmp_path / "figures", held_out_twin=twin)
    temperature, threshold = twin_calibration["temperature"], twin_calibration["review_threshold"]
    assert calibration["temperature"] == temperature and calibration["review_threshold"] == threshold
    assert calibration["validation_accuracy"] is None
    assert calibration["calibrated_by"]["runs"] == [str(twin)]
    assert calibration["calibrated_by"]["sorting_validation"] == twin_calibration["sorting_validation"]
    logits = model_logits(load_best(full), fashion.x_test)
    assert calibration["test_accuracy"] == float(np.mean(logits.argmax(1) == fashion.y_test))
    assert calibration["sorting_test"] == sorting_figures(softmax(logits, temperature), fashion.y_test, threshold)
    assert (tmp_path / "figures" / "risk_coverage.png").is_file() and (
        tmp_path / "figures" / "reliability.png"
    ).is_file()

    metadata = json.loads((_export_run(full, tmp_path / "m", None) / "metadata.json").read_text())
    assert metadata["validation_accuracy"] is None and metadata["temperature"] == temperature
    assert metadata["calibrated_by"]["runs"] == [str(twin)]
    for precision in metadata["signatures"]:  # no clean validation split: every precision serves the twin's threshold
        assert metadata["sorting_by_precision"][precision]["review_threshold"] == threshold
        assert set(metadata["accuracy_by_precision"][precision]) == {"test"}


def test_held_out_twin_must_be_the_same_recipe_without_the_validation_split(smoke_run, tmp_path):
    import shutil

    from training.calibrate import calibrate_run

    twin, other_seed, full = tmp_path / "twin", tmp_path / "other-seed", tmp_path / "full"
    shutil.copytree(smoke_run.run_dir, twin)
    calibrate_run(twin)
    train(TrainConfig(**{**SMOKE, "epochs": 1, "seed": 4, "histograms": False}), other_seed, verbose=0)
    calibrate_run(other_seed)
    train(TrainConfig(**{**SMOKE, "epochs": 1, "full_train": True, "histograms": False}), full, verbose=0)

    with pytest.raises(ValueError, match="must be the same recipes, member for member"):
        calibrate_run(full, held_out_twin=other_seed)  # seed 4 and one epoch: not full's recipe
    wider = tmp_path / "wider"  # the same name and settings, another width of the architecture
    shutil.copytree(twin, wider)
    run = json.loads((wider / "run.json").read_text())
    (wider / "run.json").write_text(json.dumps({**run, "params": run["params"] * 2}))
    with pytest.raises(ValueError, match="must be the same recipes, member for member"):
        calibrate_run(full, held_out_twin=wider)
    with pytest.raises(ValueError, match="calibrates runs trained on all 60,000 images"):
        calibrate_run(other_seed, held_out_twin=twin)
    with pytest.raises(ValueError, match="has no calibration.json; calibrate it first"):
        calibrate_run(full, held_out_twin=smoke_run.run_dir)
    assert not (full / "calibration.json").exists()


def test_unsure_members_are_calibrated_exported_and_twinned_with_the_others(smoke_run, other_run, tmp_path, fashion):
    import shutil

    from training.calibrate import calibrate_run, model_logits
    from training.cli import _export_run

    twin, full, other_full = tmp_path / "twin", tmp_path / "full", tmp_path / "other-full"
    shutil.copytree(smoke_run.run_dir, twin)
    twin_calibration = calibrate_run(twin, flip_below=0.9, unsure_with=[other_run.run_dir])
    models = [load_best(twin)], [load_best(other_run.run_dir)]
    split = data.split_train_validation(fashion)
    val_logits = model_logits(models[0], split.x_val, flip_below=0.9, unsure_models=models[1])
    assert twin_calibration["unsure_with"] == [str(other_run.run_dir)] and twin_calibration["ensemble_with"] == []
    assert twin_calibration["validation_accuracy"] == float(np.mean(val_logits.argmax(1) == split.y_val))
    metadata = json.loads((_export_run(twin, tmp_path / "m", None) / "metadata.json").read_text())
    assert [(m["run"], m.get("unsure_only", False)) for m in metadata["ensemble_members"]] == [
        (str(twin), False),
        (str(other_run.run_dir), True),
    ]
    assert "unsure_with" not in metadata and metadata["unsure_members"] == 1

    train(TrainConfig(**{**SMOKE, "full_train": True, "histograms": False}), full, verbose=0)
    train(
        TrainConfig(**{**SMOKE, "seed": 4, "epochs": 1, "full_train": True, "histograms": False}), other_full, verbose=0
    )
    with pytest.raises(ValueError, match="and the same ones unsure-only$"):
        calibrate_run(full, ensemble_with=[other_full], flip_below=0.9, held_out_twin=twin)
    calibration = calibrate_run(full, flip_below=0.9, unsure_with=[other_full], held_out_twin=twin)
    assert calibration["calibrated_by"]["runs"] == [str(twin), str(other_run.run_dir)]
    assert calibration["temperature"] == twin_calibration["temperature"]
    logits = model_logits([load_best(full)], fashion.x_test, flip_below=0.9, unsure_models=[load_best(other_full)])
    assert calibration["test_accuracy"] == float(np.mean(logits.argmax(1) == fashion.y_test))
