"""Train one architecture on the 50k/10k split, with the study's callbacks and a resumable run dir.

A run directory holds everything one training produced:
    best.keras          the weights with the best validation loss (ModelCheckpoint)
    backup/             the last finished epoch, for --resume (BackupAndRestore)
    history.csv/.json   per-epoch metrics
    learning_curves.png loss and accuracy, train vs validation
    tensorboard/        graph, weight and gradient histograms
    run.json            config and final accuracies (train/val/test)
"""

from __future__ import annotations

import csv
import json
import logging
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from contract.renders import read_render_set
from contract.warehouse import WarehouseSet, read_warehouse_set
from training import architectures, data, losses, pipeline, report
from training.optimizers import OPTIMIZERS, make_optimizer

log = logging.getLogger(__name__)

STRATEGIES = ("default", "mirrored", "multiworker")
# (uint8 images (N, 28, 28), labels (N,)) -> float32 targets in place of the one-hot labels: (N, 10),
# or (N, 20) for a softening teacher (training.losses)
Targets = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass
class TrainConfig:
    """One training run's settings; config.json records them and the held-out twin check compares them."""

    arch: str
    epochs: int = 20
    batch_size: int = 128
    augment: bool = False
    zoom: float = 0.0  # with augment: random rescale by up to this fraction either way
    scanner: bool = False  # with augment: also what remains of scanner photos (pipeline.make_augmenter)
    seed: int = 42
    patience: int = 50
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    label_smoothing: float = 0.0
    lr_schedule: str = "constant"  # constant | cosine (linear warm-up, then cosine decay)
    warmup_epochs: int = 0
    strategy: str = "default"
    limit_train: int | None = None  # first N training images only (smoke runs)
    full_train: bool = False  # also train on the validation split (no early stopping)
    histograms: bool = True
    split_seed: int = data.DEFAULT_SPLIT_SEED
    extra_data: str | None = None  # a warehouse export (contract/warehouse.py): mixed in, a slice held out
    init_from: str | None = None  # fine-tune: start from this run's best weights (same architecture)
    renders: str | None = None  # a render set (contract/renders.py): scanner photos as preprocessed, mixed in
    freeze_batch_norm: bool = False  # BatchNormalization in inference mode, its weights fixed (fine-tuning)
    teacher: str | None = None  # distil: a calibrated run whose served probabilities join the labels (training.distill)
    teacher_weight: float = 0.7  # with teacher: its share of each image's target, the one-hot label the rest
    # with teacher: Hinton's softening of both sides (training.losses); None mixes the served probabilities in
    teacher_temperature: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        """Raise UnknownArchitecture or ValueError (naming the command-line flag) for a bad setting."""
        if self.arch not in architectures.ARCHITECTURES:
            raise architectures.UnknownArchitecture(
                f"unknown architecture {self.arch!r}; known: {', '.join(architectures.ARCHITECTURES)}"
            )
        checks = [
            (self.epochs >= 1, f"--epochs must be >= 1 (got {self.epochs})"),
            (0 <= self.zoom < 1, f"--zoom must be in [0, 1) (got {self.zoom})"),
            (self.augment or not self.scanner, "--scanner needs --augment"),
            (self.batch_size >= 1, f"--batch-size must be >= 1 (got {self.batch_size})"),
            (self.patience >= 1, f"--patience must be >= 1 (got {self.patience})"),
            (self.learning_rate > 0, f"--learning-rate must be > 0 (got {self.learning_rate})"),
            (0 <= self.label_smoothing < 1, f"--label-smoothing must be in [0, 1) (got {self.label_smoothing})"),
            (self.strategy in STRATEGIES, f"--strategy must be one of {', '.join(STRATEGIES)} (got {self.strategy})"),
            (
                self.optimizer in OPTIMIZERS,
                f"--optimizer must be one of {', '.join(OPTIMIZERS)} (got {self.optimizer})",
            ),
            (
                self.lr_schedule in ("constant", "cosine"),
                f"--lr-schedule must be constant or cosine (got {self.lr_schedule})",
            ),
            (0 < self.teacher_weight <= 1, f"--teacher-weight must be in (0, 1] (got {self.teacher_weight})"),
            (
                self.teacher_temperature is None or self.teacher_temperature > 0,
                f"--teacher-temperature must be > 0 (got {self.teacher_temperature})",
            ),
            (
                self.teacher_temperature is None or self.teacher is not None,
                "--teacher-temperature needs --teacher",
            ),
            (
                self.limit_train is None or self.limit_train >= 10,
                f"--limit-train must be >= 10 (got {self.limit_train})",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)


@dataclass
class RunResult:
    """What a finished run measured (run.json)."""

    run_dir: Path
    config: TrainConfig
    params: int
    epochs_run: int
    best_epoch: int
    wall_time_s: float
    train_accuracy: float
    val_accuracy: float
    test_accuracy: float
    history: dict[str, list[float]]
    warehouse: dict[str, Any] | None = None  # with --extra-data: what was mixed in, the held-out slice's accuracy

    def to_json(self) -> dict[str, Any]:
        """run.json: every field, the run directory as a string."""
        out = asdict(self)
        out["run_dir"] = str(self.run_dir)
        return out


EVALUATION_BATCH_SIZE = 1024
GRADIENT_PROBE_IMAGES = 256  # validation images whose gradients the histograms show


def make_strategy(name: str) -> tf.distribute.Strategy:
    """Distribution strategy by name; mirrored uses every GPU, or every logical CPU when there is none."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        return tf.distribute.MirroredStrategy(devices=devices)
    if name == "multiworker":
        # Reads the cluster from TF_CONFIG; see docs/training.md.
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"unknown strategy {name!r}")


def _optimizer(config: TrainConfig, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    return make_optimizer(
        config.optimizer,
        config.learning_rate,
        weight_decay=config.weight_decay,
        lr_schedule=config.lr_schedule,
        warmup_epochs=config.warmup_epochs,
        epochs=config.epochs,
        steps_per_epoch=steps_per_epoch,
    )


def _gradient_histogram_callback(
    log_dir: Path, model: keras.Model, images: tf.Tensor, labels: tf.Tensor, loss_fn: keras.losses.Loss
) -> keras.callbacks.Callback:
    """Keras 3's TensorBoard callback writes weight histograms only; this adds gradients."""
    writer = tf.summary.create_file_writer(str(log_dir / "gradients"))

    def on_epoch_end(epoch: int, logs: dict[str, float] | None = None) -> None:
        with tf.GradientTape() as tape:
            loss = loss_fn(labels, model(images, training=False))
        grads = tape.gradient(loss, model.trainable_weights)
        with writer.as_default(step=epoch):
            for weight, grad in zip(model.trainable_weights, grads, strict=True):
                if grad is not None:
                    tf.summary.histogram(weight.path.replace("/", "_") + "_grad", grad)
        writer.flush()

    return keras.callbacks.LambdaCallback(on_epoch_end=on_epoch_end)


def _wall_clock_callback(path: Path, resume: bool) -> keras.callbacks.Callback:
    """Cumulative training wall time, kept across --resume so a resumed run reports its whole cost."""
    before_s = float(path.read_text()) if resume and path.exists() else 0.0
    started = time.monotonic()
    path.write_text(f"{before_s:.1f}")

    def on_epoch_end(epoch: int, logs: dict[str, float] | None = None) -> None:
        path.write_text(f"{before_s + time.monotonic() - started:.1f}")

    return keras.callbacks.LambdaCallback(on_epoch_end=on_epoch_end)


def _accuracy(model: keras.Model, images: np.ndarray, labels: np.ndarray) -> float:
    probs = model.predict(data.to_model_inputs(images), batch_size=EVALUATION_BATCH_SIZE, verbose=0)
    return float(np.mean(np.argmax(probs, axis=1) == labels))


def _monitored(config: TrainConfig) -> str:
    """The loss that picks the best epoch: validation's, unless the run trains on the validation split."""
    return "loss" if config.full_train else "val_loss"


def _prepare_run_dir(out_dir: Path, config: TrainConfig, resume: bool) -> None:
    """A fresh run directory (or, resuming, the interrupted one) holding the config."""
    if not resume and out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.json").write_text(json.dumps(asdict(config), indent=2))


def _training_images(
    config: TrainConfig, split: data.Split, warehouse: WarehouseSet | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The images to train on: the 50,000 (or, full-train, 60,000), maybe cut to --limit-train,
    plus the warehouse's own photos outside the held-out slice, plus the render set's photos."""
    x_train, y_train = split.x_train, split.y_train
    if config.full_train:
        x_train = np.concatenate([x_train, split.x_val])
        y_train = np.concatenate([y_train, split.y_val])
    if config.limit_train:
        x_train, y_train = x_train[: config.limit_train], y_train[: config.limit_train]
    if warehouse is not None and len(warehouse.labels):
        x_train = np.concatenate([x_train, warehouse.images])
        y_train = np.concatenate([y_train, warehouse.labels.astype(y_train.dtype)])
    if config.renders is not None:
        renders = read_render_set(Path(config.renders))
        x_train = np.concatenate([x_train, renders.images])
        y_train = np.concatenate([y_train, renders.labels.astype(y_train.dtype)])
    return x_train, y_train


def _warehouse_parts(config: TrainConfig) -> tuple[WarehouseSet, WarehouseSet] | None:
    """(trained on, held out) of --extra-data, or None without it."""
    if config.extra_data is None:
        return None
    photos = read_warehouse_set(Path(config.extra_data))
    held_out = photos.held_out()
    return photos.subset(~held_out), photos.subset(held_out)


def _warehouse_figures(model: keras.Model, parts: tuple[WarehouseSet, WarehouseSet]) -> dict[str, Any]:
    trained_on, held_out = parts
    figures: dict[str, Any] = {
        "images": {"trained_on": len(trained_on.labels), "held_out": len(held_out.labels)},
        "held_out_accuracy": _accuracy(model, held_out.images, held_out.labels) if len(held_out.labels) else None,
    }
    for source in ("review", "audit"):
        mask = np.array([s == source for s in held_out.sources], dtype=bool)
        if mask.any():
            figures[f"held_out_{source}_accuracy"] = _accuracy(model, held_out.images[mask], held_out.labels[mask])
    return figures


def _initial_weights(model: keras.Model, config: TrainConfig) -> None:
    """Fine-tuning: copy the weights of --init-from's best epoch (the same architecture)."""
    if config.init_from is None:
        return
    source = Path(config.init_from)
    recorded = json.loads((source / "config.json").read_text())["arch"]
    if recorded != config.arch:
        raise ValueError(f"--init-from {source} is a {recorded} run; this one trains {config.arch}")
    model.set_weights(load_best(source).get_weights())


def _compiled_model(config: TrainConfig, steps_per_epoch: int) -> tuple[keras.Model, keras.losses.Loss]:
    """The untrained network, compiled under the configured distribution strategy, and its loss."""
    with make_strategy(config.strategy).scope():
        model = architectures.build(config.arch)
        if config.freeze_batch_norm:
            # Keras 3 runs a BatchNormalization that is not trainable in inference mode: an unpacked
            # network's identity BatchNorm stays the identity, and a trained one keeps its statistics.
            for layer in model.layers:
                if isinstance(layer, keras.layers.BatchNormalization):
                    layer.trainable = False
        loss, accuracy = _loss_and_accuracy(config)
        model.compile(optimizer=_optimizer(config, steps_per_epoch), loss=loss, metrics=[accuracy])
    return model, loss


def _loss_and_accuracy(config: TrainConfig) -> tuple[keras.losses.Loss, Any]:
    """Cross-entropy, or with a softening teacher Hinton's loss on 20-wide targets (training.losses),
    whose accuracy reads the label half: history keeps its ``accuracy`` either way."""
    if config.teacher_temperature is None:
        return keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing), "accuracy"
    loss = losses.DistillationLoss(config.teacher_temperature, config.teacher_weight, config.label_smoothing)
    return loss, keras.metrics.MeanMetricWrapper(losses.label_accuracy, name="accuracy")


def _callbacks(
    config: TrainConfig, out_dir: Path, resume: bool, model: keras.Model, loss: keras.losses.Loss, split: data.Split
) -> list[keras.callbacks.Callback]:
    """Checkpoints (best and, for --resume, last epoch), logs, TensorBoard, early stopping and wall time."""
    tensorboard_dir = out_dir / "tensorboard"
    callbacks = [
        keras.callbacks.BackupAndRestore(str(out_dir / "backup")),
        keras.callbacks.ModelCheckpoint(str(out_dir / "best.keras"), monitor=_monitored(config), save_best_only=True),
        keras.callbacks.CSVLogger(str(out_dir / "history.csv"), append=resume),
        keras.callbacks.TensorBoard(
            str(tensorboard_dir), histogram_freq=1 if config.histograms else 0, write_graph=True
        ),
    ]
    if not config.full_train:
        callbacks.append(
            keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.patience, restore_best_weights=False)
        )
    if config.histograms:
        probe = slice(0, GRADIENT_PROBE_IMAGES)
        callbacks.append(
            _gradient_histogram_callback(
                tensorboard_dir,
                model,
                tf.constant(data.to_model_inputs(split.x_val[probe])),
                tf.constant(data.one_hot(split.y_val[probe])),
                loss,
            )
        )
    callbacks.append(_wall_clock_callback(out_dir / "wall_time_s.txt", resume))
    return callbacks


def _save_history(out_dir: Path, title: str) -> dict[str, list[float]]:
    """history.json and the learning curves, from the epochs CSVLogger recorded."""
    history = _read_history(out_dir / "history.csv")
    (out_dir / "history.json").write_text(json.dumps(history, indent=2))
    report.learning_curves(history, out_dir / "learning_curves.png", title=title)
    return history


def _evaluate(
    config: TrainConfig,
    out_dir: Path,
    history: dict[str, list[float]],
    split: data.Split,
    training_images: tuple[np.ndarray, np.ndarray],
    warehouse: tuple[WarehouseSet, WarehouseSet] | None = None,
) -> RunResult:
    """The best checkpoint on every split it can be measured on, once, at the end."""
    best = load_best(out_dir)
    losses = history.get(_monitored(config), [])
    best_epoch = int(np.argmin(losses)) + 1 if losses else len(history.get("epoch", []))
    return RunResult(
        run_dir=out_dir,
        config=config,
        params=int(best.count_params()),
        epochs_run=len(history.get("epoch", [])),
        best_epoch=best_epoch,
        wall_time_s=round(float((out_dir / "wall_time_s.txt").read_text()), 1),
        train_accuracy=_accuracy(best, *training_images),
        val_accuracy=_accuracy(best, split.x_val, split.y_val),
        test_accuracy=_accuracy(best, split.x_test, split.y_test),
        history=history,
        warehouse=None if warehouse is None else _warehouse_figures(best, warehouse),
    )


def train(
    config: TrainConfig,
    out_dir: Path,
    resume: bool = False,
    verbose: int = 2,
    extra_callbacks: list[keras.callbacks.Callback] | None = None,
    teacher_targets: Targets | None = None,
) -> RunResult:
    """Train, checkpoint the best validation epoch, evaluate train/val/test once at the end.
    With ``config.teacher``, ``teacher_targets`` (training.distill.teacher_targets) gives each
    training image's target: passed in, because the teacher is a calibrated run and calibrate
    imports this module."""
    config.validate()
    if (config.teacher is None) != (teacher_targets is None):
        raise ValueError("a teacher's targets come with --teacher and only with it (training.distill.teacher_targets)")
    # the dataset is found before the run directory is touched: a missing one leaves nothing behind
    split = data.split_train_validation(data.load_fashion_mnist(), seed=config.split_seed)
    out_dir = Path(out_dir)
    _prepare_run_dir(out_dir, config, resume)

    keras.utils.set_random_seed(config.seed)
    warehouse = _warehouse_parts(config)
    x_train, y_train = _training_images(config, split, None if warehouse is None else warehouse[0])
    model, loss = _compiled_model(config, steps_per_epoch=math.ceil(len(x_train) / config.batch_size))
    _initial_weights(model, config)
    train_ds = pipeline.make_dataset(
        x_train,
        y_train,
        config.batch_size,
        targets=None if teacher_targets is None else teacher_targets(x_train, y_train),
        shuffle=True,
        augment=config.augment,
        seed=config.seed,
        zoom=config.zoom,
        scanner=config.scanner,
    )
    val_ds = pipeline.make_dataset(split.x_val, split.y_val, EVALUATION_BATCH_SIZE)
    model.fit(
        train_ds,
        validation_data=val_ds,
        epochs=config.epochs,
        callbacks=[*_callbacks(config, out_dir, resume, model, loss, split), *(extra_callbacks or [])],
        shuffle=False,  # the tf.data pipeline shuffles, seeded
        verbose=verbose,
    )
    history = _save_history(out_dir, config.arch)
    result = _evaluate(config, out_dir, history, split, (x_train, y_train), warehouse)
    (out_dir / "run.json").write_text(json.dumps(result.to_json(), indent=2))
    log.info(
        "%s: train %.4f val %.4f test %.4f (%d epochs, %.0f s)",
        config.arch,
        result.train_accuracy,
        result.val_accuracy,
        result.test_accuracy,
        result.epochs_run,
        result.wall_time_s,
    )
    return result


def _read_history(csv_path: Path) -> dict[str, list[float]]:
    history: dict[str, list[float]] = {}
    if not csv_path.exists():
        return history
    with open(csv_path, newline="") as fh:
        for row in csv.DictReader(fh):
            for key, value in row.items():
                history.setdefault(key, []).append(float(value))
    if "epoch" in history:
        # A resumed run appends; keep the last record of each epoch.
        last_index = {int(e): i for i, e in enumerate(history["epoch"])}
        order = [last_index[e] for e in sorted(last_index)]
        history = {k: [v[i] for i in order] for k, v in history.items()}
    return history


def load_best(run_dir: Path) -> keras.Model:
    """The run's best checkpoint, uncompiled (for inference and export)."""
    return keras.models.load_model(Path(run_dir) / "best.keras", compile=False)
