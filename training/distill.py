"""Knowledge distillation: one network trained on what a calibrated ensemble serves.

The ensemble a version serves (several networks, on one or two views) is more accurate and better
calibrated than any one of its networks, and costs several times one network's passes. A student
trained towards the ensemble's probabilities instead of the bare labels learns which classes an
image could be mistaken for, as well as which it is (Hinton, Vinyals & Dean 2015, "Distilling the
Knowledge in a Neural Network").

The teacher is a calibrated run (``garment-sorter calibrate``): the networks and views its
calibration.json names, at its temperature, exactly as export would serve them. Its probabilities
are computed once, on the un-augmented training images (the dataset's and any render set's); the
augmented views of an image train towards the same target, as the one-hot label does without a
teacher. The target is ``weight`` times the teacher's probabilities plus the rest of the one-hot
label; the loss's label smoothing applies to the whole. With a softening temperature (Hinton's
way), teacher and label stay apart and training.losses weighs them.

A held-out student (trained on the 50,000) needs a held-out teacher: a network trained on the
validation split would carry it into the targets, and the student's validation figures, on which
its calibration and every choice rest, would flatter it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from training import data
from training.calibrate import calibrated_runs, member_configs, read_calibration, softmax
from training.ensemble import Ensemble, predict_logits
from training.train import Targets, TrainConfig, load_best


class TeacherError(ValueError):
    """The teacher cannot teach this student."""


def teacher_runs(teacher_dir: Path, full_train: bool, split_seed: int) -> tuple[Ensemble[Path], float]:
    """The teacher's networks and views, and its temperature; TeacherError when a held-out
    student's teacher saw the validation split, or the two split the 60,000 differently."""
    calibration = read_calibration(teacher_dir)
    runs = calibrated_runs(teacher_dir, calibration)
    for run, config in zip(runs.networks, member_configs(runs.networks), strict=True):
        if not full_train and config.get("full_train", False):
            raise TeacherError(
                f"{run} was trained on the validation split: a held-out student needs a held-out teacher"
            )
        if config.get("split_seed", data.DEFAULT_SPLIT_SEED) != split_seed:
            raise TeacherError(f"{run} split the training images with another seed than this run")
    return runs, float(calibration["temperature"])


def soft_targets(
    teacher_dir: Path,
    images: np.ndarray,
    labels: np.ndarray,
    weight: float,
    full_train: bool,
    split_seed: int,
    softening: float | None = None,
) -> np.ndarray:
    """float32 targets for uint8 ``images`` (N, 28, 28) with ``labels`` (N,).

    Without ``softening``, (N, 10): ``weight`` times the teacher's calibrated probabilities plus
    ``1 - weight`` times the one-hot label. With it, (N, 20) for training.losses: the calibrated
    probabilities softened by that temperature (the served logits divided by it), then the one-hot
    label; the loss weighs the two."""
    runs, temperature = teacher_runs(Path(teacher_dir), full_train, split_seed)
    logits = predict_logits(runs.map(load_best), images)
    if softening is not None:
        softened = softmax(logits, temperature * softening)
        return np.concatenate([softened, data.one_hot(labels)], axis=1).astype(np.float32)
    probabilities = softmax(logits, temperature)
    targets: np.ndarray = (weight * probabilities + (1.0 - weight) * data.one_hot(labels)).astype(np.float32)
    return targets


def teacher_targets(config: TrainConfig) -> Targets:
    """What ``train`` needs for ``config.teacher``: images and labels -> their targets. A teacher
    that cannot teach is refused here, before the run directory is touched."""
    if config.teacher is None:
        raise ValueError("no --teacher to learn from")
    teacher_dir = Path(config.teacher)
    teacher_runs(teacher_dir, config.full_train, config.split_seed)

    def targets(images: np.ndarray, labels: np.ndarray) -> np.ndarray:
        return soft_targets(
            teacher_dir,
            images,
            labels,
            config.teacher_weight,
            config.full_train,
            config.split_seed,
            softening=config.teacher_temperature,
        )

    return targets
