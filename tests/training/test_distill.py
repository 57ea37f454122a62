"""Distillation: a student trained towards what a calibrated ensemble serves (training/distill.py)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from smoke_runs import SMOKE, train_smoke

from training import data
from training.architectures import logits_model
from training.calibrate import calibrate_run, recipe, softmax
from training.distill import TeacherError, soft_targets, teacher_runs, teacher_targets
from training.ensemble import Ensemble
from training.train import TrainConfig, load_best, train


@pytest.fixture(scope="module")
def teacher(smoke_run, other_run, tmp_path_factory):
    """The two smoke networks served together, calibrated on validation (in copies: the fixtures stay clean)."""
    root = tmp_path_factory.mktemp("teacher")
    first, second = root / "first", root / "second"
    shutil.copytree(smoke_run.run_dir, first)
    shutil.copytree(other_run.run_dir, second)
    calibration = calibrate_run(Ensemble((first, second)))
    return first, second, calibration["temperature"]


def test_the_target_is_the_served_probability_plus_the_rest_of_the_label(teacher, split):
    first, second, temperature = teacher
    images, labels = split.x_train[:500], split.y_train[:500]
    # The reference: both networks through Keras itself, their mean logits at the calibrated temperature.
    scaled = data.to_model_inputs(images)
    mean = sum(logits_model(load_best(run)).predict(scaled, verbose=0) for run in (first, second)) / 2
    served = softmax(mean, temperature)
    assert temperature != pytest.approx(1.0, abs=0.05)  # else the temperature's part would go untested

    whole = soft_targets(first, images, labels, weight=1.0, full_train=False, split_seed=data.DEFAULT_SPLIT_SEED)
    assert whole.dtype == np.float32 and whole.shape == (500, 10)
    assert np.abs(whole - served).max() < 1e-5
    mixed = soft_targets(first, images, labels, weight=0.7, full_train=False, split_seed=data.DEFAULT_SPLIT_SEED)
    assert np.abs(mixed - (0.7 * served + 0.3 * data.one_hot(labels))).max() < 1e-5
    assert np.abs(mixed.sum(axis=1) - 1.0).max() < 1e-5
    # The teacher is wrong on some images; the label's share keeps the right class in every target.
    assert (served.argmax(axis=1) != labels).any()
    assert (mixed[np.arange(500), labels] >= 0.3).all()


def test_a_held_out_student_refuses_a_teacher_that_saw_the_validation_split(teacher):
    first, second, _ = teacher
    config = json.loads((second / "config.json").read_text())
    (second / "config.json").write_text(json.dumps({**config, "full_train": True}))
    try:
        with pytest.raises(TeacherError, match=r"second was trained on the validation split"):
            teacher_runs(first, full_train=False, split_seed=data.DEFAULT_SPLIT_SEED)
        runs, _ = teacher_runs(first, full_train=True, split_seed=data.DEFAULT_SPLIT_SEED)  # a full-train student may
        assert runs == Ensemble((first, second))
    finally:
        (second / "config.json").write_text(json.dumps(config))
    with pytest.raises(TeacherError, match=r"first split the training images with another seed"):
        teacher_runs(first, full_train=False, split_seed=data.DEFAULT_SPLIT_SEED + 1)
    with pytest.raises(TeacherError, match=r"first split the training images with another seed"):
        teacher_targets(TrainConfig(**{**SMOKE, "teacher": str(first), "split_seed": data.DEFAULT_SPLIT_SEED + 1}))


def test_an_uncalibrated_teacher_is_refused(smoke_run):
    with pytest.raises(ValueError, match=r"has no calibration.json; calibrate it first$"):
        teacher_runs(smoke_run.run_dir, full_train=False, split_seed=data.DEFAULT_SPLIT_SEED)


def test_a_student_trains_towards_its_teacher_and_says_whom_it_learnt_from(teacher, tmp_path):
    first, _, _ = teacher
    config = TrainConfig(**{**SMOKE, "epochs": 1, "histograms": False, "teacher": str(first), "teacher_weight": 1.0})
    with pytest.raises(ValueError, match=r"^a teacher's targets come with --teacher and only with it"):
        train(config, tmp_path / "untaught", verbose=0)
    taught = train(config, tmp_path / "taught", verbose=0, teacher_targets=teacher_targets(config))
    plain = train_smoke(tmp_path / "plain", epochs=1, histograms=False)
    config = json.loads((taught.run_dir / "config.json").read_text())
    assert (config["teacher"], config["teacher_weight"]) == (str(first), 1.0)
    assert taught.val_accuracy > 0.5  # far above chance: the soft targets carry the classes
    # The same seed and images: only the targets differ, so the weights do too.
    assert any(
        not np.array_equal(a, b)
        for a, b in zip(load_best(taught.run_dir).get_weights(), load_best(plain.run_dir).get_weights(), strict=True)
    )
    # A twin and its full-train copy learn from different teachers by design: the same recipe.
    assert recipe(config) == recipe({**config, "teacher": "runs/another-teacher"})
    assert recipe(config) != recipe({**config, "teacher": None})


def test_the_teacher_weight_is_checked(tmp_path):
    with pytest.raises(ValueError, match=r"^--teacher-weight must be in \(0, 1\] \(got 0.0\)$"):
        train_smoke(tmp_path / "run", teacher_weight=0.0)


def test_a_softening_teacher_keeps_its_probabilities_apart_from_the_label(teacher, split):
    first, second, temperature = teacher
    images, labels = split.x_train[:500], split.y_train[:500]
    scaled = data.to_model_inputs(images)
    mean = sum(logits_model(load_best(run)).predict(scaled, verbose=0) for run in (first, second)) / 2

    targets = soft_targets(
        first, images, labels, weight=0.7, full_train=False, split_seed=data.DEFAULT_SPLIT_SEED, softening=4.0
    )
    assert targets.dtype == np.float32 and targets.shape == (500, 20)
    # Softened from what is served (its calibrated temperature), not from the raw logits.
    assert np.abs(targets[:, :10] - softmax(mean, temperature * 4.0)).max() < 1e-5
    assert np.array_equal(targets[:, 10:], data.one_hot(labels))
    # Softer than served: the top class gives up share to the classes it could be mistaken for.
    assert (targets[:, :10].max(axis=1) < softmax(mean, temperature).max(axis=1)).all()


def test_a_student_of_a_softening_teacher_trains_on_hintons_loss(teacher, tmp_path):
    first, _, _ = teacher
    config = TrainConfig(**{**SMOKE, "histograms": False, "teacher": str(first), "teacher_temperature": 4.0})
    taught = train(config, tmp_path / "taught", verbose=0, teacher_targets=teacher_targets(config))
    assert json.loads((taught.run_dir / "config.json").read_text())["teacher_temperature"] == 4.0
    # Accuracy reads the label half of the 20-wide targets; validation's loss is the plain cross-entropy.
    assert set(taught.history) >= {"accuracy", "val_accuracy", "loss", "val_loss"}
    assert taught.val_accuracy > 0.5
    assert taught.history["accuracy"][-1] > 0.5  # an argmax over all 20 columns would never match: 0
    assert recipe(config.__dict__) != recipe({**config.__dict__, "teacher_temperature": None})


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"teacher": "runs/t", "teacher_temperature": 0.0}, r"^--teacher-temperature must be > 0 \(got 0.0\)$"),
        ({"teacher_temperature": 4.0}, r"^--teacher-temperature needs --teacher$"),
    ],
)
def test_the_teacher_temperature_is_checked(tmp_path, changes, message):
    with pytest.raises(ValueError, match=message):
        train_smoke(tmp_path / "run", **changes)
