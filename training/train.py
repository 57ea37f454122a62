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

import json
import logging
import math
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from training import architectures, data

log = logging.getLogger(__name__)

STRATEGIES = ("default", "mirrored", "multiworker")
OPTIMIZERS = ("adam", "adamw", "sgd")


@dataclass
class TrainConfig:
    arch: str
    epochs: int = 20
    batch_size: int = 128
    augment: bool = False
    zoom: float = 0.0  # with augment: random rescale by up to this fraction either way
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
    extra: dict = field(default_factory=dict)

    def validate(self) -> None:
        if self.arch not in architectures.ARCHITECTURES:
            raise architectures.UnknownArchitecture(
                f"unknown architecture {self.arch!r}; known: {', '.join(architectures.ARCHITECTURES)}"
            )
        checks = [
            (self.epochs >= 1, f"--epochs must be >= 1 (got {self.epochs})"),
            (0 <= self.zoom < 1, f"--zoom must be in [0, 1) (got {self.zoom})"),
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

    def to_json(self) -> dict:
        out = asdict(self)
        out["run_dir"] = str(self.run_dir)
        return out


def make_strategy(name: str):
    """Distribution strategy by name; mirrored uses every GPU, or every logical CPU when there is none."""
    import tensorflow as tf

    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        return tf.distribute.MirroredStrategy(devices=devices)
    if name == "multiworker":
        # Reads the cluster from TF_CONFIG; see docs in training/README.md.
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"unknown strategy {name!r}")


def _optimizer(config: TrainConfig, steps_per_epoch: int):
    import keras

    lr = config.learning_rate
    if config.lr_schedule == "cosine":
        warmup_steps = config.warmup_epochs * steps_per_epoch
        total_steps = config.epochs * steps_per_epoch
        lr = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=0.0 if warmup_steps else config.learning_rate,
            decay_steps=max(1, total_steps - warmup_steps),
            warmup_target=config.learning_rate if warmup_steps else None,
            warmup_steps=warmup_steps,
            alpha=0.0,
        )
    if config.optimizer == "adamw":
        return keras.optimizers.AdamW(learning_rate=lr, weight_decay=config.weight_decay)
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate=lr, momentum=0.9, nesterov=True)
    return keras.optimizers.Adam(learning_rate=lr)


def _gradient_histogram_callback(log_dir: Path, model, images: np.ndarray, labels: np.ndarray, loss_fn):
    """Keras 3's TensorBoard callback writes weight histograms only; this adds gradients."""
    import keras
    import tensorflow as tf

    class GradientHistograms(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.writer = tf.summary.create_file_writer(str(log_dir / "gradients"))

        def on_epoch_end(self, epoch, logs=None):
            with tf.GradientTape() as tape:
                loss = loss_fn(labels, model(images, training=False))
            grads = tape.gradient(loss, model.trainable_weights)
            with self.writer.as_default(step=epoch):
                for weight, grad in zip(model.trainable_weights, grads):
                    if grad is not None:
                        tf.summary.histogram(weight.path.replace("/", "_") + "_grad", grad)
            self.writer.flush()

    return GradientHistograms()


def _accuracy(model, images: np.ndarray, labels: np.ndarray, batch_size: int = 1024) -> float:
    probs = model.predict(data.to_model_inputs(images), batch_size=batch_size, verbose=0)
    return float(np.mean(np.argmax(probs, axis=1) == labels))


def train(
    config: TrainConfig, out_dir: Path, resume: bool = False, verbose: int = 2, extra_callbacks: list | None = None
) -> RunResult:
    """Train, checkpoint the best validation epoch, evaluate train/val/test once at the end."""
    import keras
    import tensorflow as tf

    from training import report

    config.validate()
    dataset = data.load_fashion_mnist()
    split = data.split_train_validation(dataset, seed=config.split_seed)

    out_dir = Path(out_dir)
    backup_dir = out_dir / "backup"
    if not resume and out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.json").write_text(json.dumps(asdict(config), indent=2))

    keras.utils.set_random_seed(config.seed)
    x_train, y_train = split.x_train, split.y_train
    if config.full_train:
        x_train = np.concatenate([x_train, split.x_val])
        y_train = np.concatenate([y_train, split.y_val])
    if config.limit_train:
        x_train, y_train = x_train[: config.limit_train], y_train[: config.limit_train]

    strategy = make_strategy(config.strategy)
    global_batch = config.batch_size
    steps_per_epoch = math.ceil(len(x_train) / global_batch)
    with strategy.scope():
        model = architectures.build(config.arch)
        loss = keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing)
        model.compile(optimizer=_optimizer(config, steps_per_epoch), loss=loss, metrics=["accuracy"])

    train_ds = data.make_dataset(
        x_train,
        y_train,
        global_batch,
        shuffle=True,
        augment=config.augment,
        seed=config.seed,
        zoom=config.zoom,
    )
    val_ds = data.make_dataset(split.x_val, split.y_val, 1024)

    monitor = "loss" if config.full_train else "val_loss"
    tensorboard_dir = out_dir / "tensorboard"
    callbacks = [
        keras.callbacks.BackupAndRestore(str(backup_dir)),
        keras.callbacks.ModelCheckpoint(str(out_dir / "best.keras"), monitor=monitor, save_best_only=True),
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
        probe = slice(0, 256)
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
    callbacks += extra_callbacks or []
    model.fit(
        train_ds,
        validation_data=val_ds,
        epochs=config.epochs,
        callbacks=callbacks,
        shuffle=False,  # the tf.data pipeline shuffles, seeded
        verbose=verbose,
    )
    history = _read_history(out_dir / "history.csv")
    (out_dir / "history.json").write_text(json.dumps(history, indent=2))
    report.learning_curves(history, out_dir / "learning_curves.png", title=config.arch)

    best = keras.models.load_model(out_dir / "best.keras", compile=False)
    val_losses = history.get(monitor, [])
    best_epoch = int(np.argmin(val_losses)) + 1 if val_losses else len(history.get("epoch", []))
    result = RunResult(
        run_dir=out_dir,
        config=config,
        params=int(best.count_params()),
        epochs_run=len(history.get("epoch", [])),
        best_epoch=best_epoch,
        wall_time_s=round(float((out_dir / "wall_time_s.txt").read_text()), 1),
        train_accuracy=_accuracy(best, x_train, y_train),
        val_accuracy=_accuracy(best, split.x_val, split.y_val),
        test_accuracy=_accuracy(best, split.x_test, split.y_test),
        history=history,
    )
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


def _wall_clock_callback(path: Path, resume: bool):
    """Cumulative training wall time, kept across --resume so a resumed run reports its whole cost."""
    import keras

    class WallClock(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.before_s = float(path.read_text()) if resume and path.exists() else 0.0
            self.started = time.monotonic()
            path.write_text(f"{self.before_s:.1f}")

        def on_epoch_end(self, epoch, logs=None):
            path.write_text(f"{self.before_s + time.monotonic() - self.started:.1f}")

    return WallClock()


def _read_history(csv_path: Path) -> dict[str, list[float]]:
    import csv

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


def load_best(run_dir: Path):
    import keras

    return keras.models.load_model(Path(run_dir) / "best.keras", compile=False)
