import json
import shutil

import numpy as np
import pytest
from smoke_runs import SMOKE_PARAMS, train_smoke

from training import calibrate, data, export
from training.calibrate import calibrate_run, recipe, softmax
from training.ensemble import Ensemble, predict_logits
from training.sorting import sorting_figures
from training.train import load_best


def test_fit_temperature_recovers_the_true_temperature():
    rng = np.random.default_rng(0)
    true_logits = rng.normal(0, 2.0, size=(20000, 10))
    probs = calibrate.softmax(true_logits)
    labels = np.array([rng.choice(10, p=p) for p in probs])
    # A model that is over-confident by a factor of 2.5: the fitted T should undo it.
    fitted = calibrate.fit_temperature(true_logits * 2.5, labels)
    assert fitted == pytest.approx(2.5, rel=0.05)


def test_ece_is_zero_when_confidence_matches_accuracy_and_measures_the_gap():
    probs = np.full((100, 10), 0.0)
    probs[:, 0] = 1.0
    labels = np.zeros(100, dtype=int)
    assert calibrate.expected_calibration_error(probs, labels) == 0.0
    labels[:30] = 1  # 100 % confident, 70 % right
    assert calibrate.expected_calibration_error(probs, labels) == pytest.approx(0.30)


def test_a_recipe_compares_settings_a_run_predates_at_their_defaults():
    before_zoom = {"arch": "fashion-cnn", "seed": 42, "patience": 45, "histograms": True, "full_train": False}
    now = {
        "arch": "fashion-cnn",
        "seed": 42,
        "zoom": 0.0,
        "extra": {},
        "patience": 50,
        "histograms": False,
        "full_train": True,
    }
    assert recipe(before_zoom) == recipe(now)
    assert recipe(before_zoom) != recipe({**now, "zoom": 0.05})


def test_ensemble_is_calibrated_and_exported_as_the_mean_of_its_members(smoke_run, other_run, tmp_path, fashion):
    first, second = tmp_path / "first", other_run.run_dir
    shutil.copytree(smoke_run.run_dir, first)  # calibrate writes into the run; keep the fixture clean
    models = Ensemble((load_best(first), load_best(second)), tta_flip=True)

    calibration = calibrate_run(Ensemble((first, second), tta_flip=True), tmp_path / "figures")
    split = data.split_train_validation(fashion)
    val_logits = predict_logits(models, split.x_val)
    assert calibration["ensemble_with"] == [str(second)]
    assert calibration["validation_accuracy"] == float(np.mean(val_logits.argmax(1) == split.y_val))

    version_dir = export.export_run(first, tmp_path / "m")
    images = fashion.x_test[:64]
    served = export.predict_exported(version_dir, images)["logits"]
    assert np.abs(served - predict_logits(models, images)).max() < 1e-4
    for alone in models.members:  # the graph really averages both networks
        assert np.abs(served - predict_logits(Ensemble((alone,), tta_flip=True), images)).max() > 1e-3
    metadata = json.loads((version_dir / "metadata.json").read_text())
    assert metadata["params"] == 2 * SMOKE_PARAMS and metadata["ensemble_size"] == 2
    assert [m["run"] for m in metadata["ensemble_members"]] == [str(first), str(second)]
    assert [m["training"]["seed"] for m in metadata["ensemble_members"]] == [3, 4]
    assert metadata["validation_accuracy"] == calibration["validation_accuracy"]
    assert "ensemble_with" not in metadata


def test_ensemble_refuses_a_member_that_trained_on_the_validation_split(smoke_run, tmp_path):
    full = tmp_path / "full"
    train_smoke(full, epochs=1, full_train=True, histograms=False)
    refusal = r"^ensemble members must share one validation split and none may train on it$"
    with pytest.raises(ValueError, match=refusal):
        calibrate_run(Ensemble((smoke_run.run_dir, full)))
    assert not (smoke_run.run_dir / "calibration.json").exists()


def test_full_train_run_serves_its_held_out_twins_calibration(smoke_run, tmp_path, fashion):
    twin, full = tmp_path / "twin", tmp_path / "full"
    shutil.copytree(smoke_run.run_dir, twin)
    twin_calibration = calibrate_run(Ensemble((twin,)))
    train_smoke(full, full_train=True, histograms=False)

    with pytest.raises(ValueError, match=r"^the held-out twin was calibrated with tta_flip=False, flip_below=None; "):
        calibrate_run(Ensemble((full,), flip_below=0.6), held_out_twin=twin)
    calibration = calibrate_run(Ensemble((full,)), tmp_path / "figures", held_out_twin=twin)
    temperature, threshold = twin_calibration["temperature"], twin_calibration["review_threshold"]
    assert calibration["temperature"] == temperature and calibration["review_threshold"] == threshold
    assert calibration["validation_accuracy"] is None
    assert calibration["calibrated_by"]["runs"] == [str(twin)]
    assert calibration["calibrated_by"]["sorting_validation"] == twin_calibration["sorting_validation"]
    logits = predict_logits(Ensemble((load_best(full),)), fashion.x_test)
    assert calibration["test_accuracy"] == float(np.mean(logits.argmax(1) == fashion.y_test))
    assert calibration["sorting_test"] == sorting_figures(softmax(logits, temperature), fashion.y_test, threshold)
    assert (tmp_path / "figures" / "risk_coverage.png").is_file() and (
        tmp_path / "figures" / "reliability.png"
    ).is_file()

    metadata = json.loads((export.export_run(full, tmp_path / "m") / "metadata.json").read_text())
    assert metadata["validation_accuracy"] is None and metadata["temperature"] == temperature
    assert metadata["calibrated_by"]["runs"] == [str(twin)]
    for precision in metadata["signatures"]:  # no clean validation split: every precision serves the twin's threshold
        assert metadata["sorting_by_precision"][precision]["review_threshold"] == threshold
        assert set(metadata["accuracy_by_precision"][precision]) == {"test"}


def test_held_out_twin_must_be_the_same_recipe_without_the_validation_split(smoke_run, other_run, tmp_path):
    twin, other_seed, full = tmp_path / "twin", tmp_path / "other-seed", tmp_path / "full"
    shutil.copytree(smoke_run.run_dir, twin)
    calibrate_run(Ensemble((twin,)))
    shutil.copytree(other_run.run_dir, other_seed)
    calibrate_run(Ensemble((other_seed,)))
    train_smoke(full, epochs=1, full_train=True, histograms=False)

    with pytest.raises(ValueError, match=r"must be the same recipes, member for member"):
        calibrate_run(Ensemble((full,)), held_out_twin=other_seed)  # seed 4: not full's recipe
    wider = tmp_path / "wider"  # the same name and settings, another width of the architecture
    shutil.copytree(twin, wider)
    run = json.loads((wider / "run.json").read_text())
    (wider / "run.json").write_text(json.dumps({**run, "params": run["params"] * 2}))
    with pytest.raises(ValueError, match=r"must be the same recipes, member for member"):
        calibrate_run(Ensemble((full,)), held_out_twin=wider)
    with pytest.raises(ValueError, match=r"calibrates runs trained on all 60,000 images"):
        calibrate_run(Ensemble((other_seed,)), held_out_twin=twin)
    with pytest.raises(ValueError, match=r"has no calibration\.json; calibrate it first"):
        calibrate_run(Ensemble((full,)), held_out_twin=smoke_run.run_dir)
    assert not (full / "calibration.json").exists()


def test_unsure_members_are_calibrated_exported_and_twinned_with_the_others(smoke_run, other_run, tmp_path, fashion):
    twin, full, other_full = tmp_path / "twin", tmp_path / "full", tmp_path / "other-full"
    shutil.copytree(smoke_run.run_dir, twin)
    twin_calibration = calibrate_run(Ensemble((twin,), (other_run.run_dir,), flip_below=0.9))
    models = Ensemble((load_best(twin),), (load_best(other_run.run_dir),), flip_below=0.9)
    split = data.split_train_validation(fashion)
    val_logits = predict_logits(models, split.x_val)
    assert twin_calibration["unsure_with"] == [str(other_run.run_dir)] and twin_calibration["ensemble_with"] == []
    assert twin_calibration["validation_accuracy"] == float(np.mean(val_logits.argmax(1) == split.y_val))
    metadata = json.loads((export.export_run(twin, tmp_path / "m") / "metadata.json").read_text())
    assert [(m["run"], m.get("unsure_only", False)) for m in metadata["ensemble_members"]] == [
        (str(twin), False),
        (str(other_run.run_dir), True),
    ]
    assert "unsure_with" not in metadata and metadata["unsure_members"] == 1

    train_smoke(full, full_train=True, histograms=False)
    train_smoke(other_full, seed=4, epochs=1, full_train=True, histograms=False)
    with pytest.raises(ValueError, match=r"and the same ones unsure-only$"):
        calibrate_run(Ensemble((full, other_full), flip_below=0.9), held_out_twin=twin)
    calibration = calibrate_run(Ensemble((full,), (other_full,), flip_below=0.9), held_out_twin=twin)
    assert calibration["calibrated_by"]["runs"] == [str(twin), str(other_run.run_dir)]
    assert calibration["temperature"] == twin_calibration["temperature"]
    logits = predict_logits(Ensemble((load_best(full),), (load_best(other_full),), flip_below=0.9), fashion.x_test)
    assert calibration["test_accuracy"] == float(np.mean(logits.argmax(1) == fashion.y_test))
