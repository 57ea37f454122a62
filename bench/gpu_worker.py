"""The GPU check's measurements that need a framework, each run in a child process of bench.gpu_check.

`python -m bench.gpu_worker --parts device,ensemble,train --json-out FILE ...` measures under the
Keras backend that KERAS_BACKEND names (it must be set before Keras is imported, hence a process
of its own) and writes what it measured to FILE as JSON:

- ``device``: the backend and the device it computes on;
- ``savedmodel`` (TensorFlow only): the exported SavedModel's signatures by batch size, as
  `python -m training bench-model` measures them;
- ``ensemble`` (any backend): the production architecture rebuilt in Keras, one network alone and
  the served ensemble (bench.gpu_weights), images/s by batch size;
- ``train`` (any backend): epochs of the production recipe (metadata.json's ``training``: optimizer,
  schedule, loss, batch size, the images it trains and validates on), each timed from its first
  step to the end of its validation pass; with ``--augment`` through training.pipeline's tf.data
  augmentation (TensorFlow only).

Nothing here imports TensorFlow unless a part that needs it runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from contract.versions import latest
from training import data

WARM_UP_CALLS = 3
MIN_TIMED_CALLS = 5
VALIDATION_BATCH_SIZE = 1024  # as training.train evaluates


def say(text: str) -> None:
    print(f"  {text}", flush=True)


# --- device -------------------------------------------------------------------------------------
def device() -> dict[str, Any]:
    """The Keras backend, its version and the device it computes on."""
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        first = jax.devices()[0]
        return {
            "backend": "jax",
            "framework": f"JAX {jax.__version__} (Keras {keras.__version__})",
            "platform": first.platform,
            "device": f"{first.platform.upper()}:{first.id} ({first.device_kind})",
            "devices": len(jax.devices()),
        }
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        name = tf.config.experimental.get_device_details(gpus[0]).get("device_name", gpus[0].name) if gpus else None
        return {
            "backend": "tensorflow",
            "framework": f"TensorFlow {tf.__version__} (Keras {keras.__version__})",
            "platform": "gpu" if gpus else "cpu",
            "device": f"GPU:0 ({name})" if gpus else f"CPU ({os.cpu_count()} cores)",
            "devices": len(gpus) or 1,
        }
    raise RuntimeError(f"Keras backend {backend!r}: the GPU check knows jax and tensorflow")


# --- raw throughput -----------------------------------------------------------------------------
def timed_rate(call: Callable[[], object], batch: int, seconds: float) -> float:
    """Images/s of ``call`` on a batch: warmed (compiled) first, then timed for ``seconds``."""
    for _ in range(WARM_UP_CALLS):
        call()
    calls, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds or calls < MIN_TIMED_CALLS:
        call()
        calls += 1
    return calls * batch / (time.perf_counter() - started)


def batch_of(images: np.ndarray, size: int) -> np.ndarray:
    """The first ``size`` images (N, 28, 28, 1), repeated if there are fewer."""
    repeats = -(-size // len(images))
    return np.ascontiguousarray(np.concatenate([images] * repeats)[:size]) if repeats > 1 else images[:size]


def savedmodel(model_dir: Path, batch_sizes: list[int], seconds: float) -> dict[str, Any]:
    """The SavedModel's signatures by batch size (TensorFlow), on the test images."""
    from training import benchmark

    version_dir = latest(model_dir)
    figures: dict[str, dict[int, float]] = {}
    for precision in benchmark.exported_precisions(version_dir):
        figures[precision] = benchmark.images_per_second(version_dir, batch_sizes, seconds, precision)
        for size, rate in figures[precision].items():
            say(f"SavedModel {precision} batch {size:>5}: {rate:10,.0f} images/s")
    return {"version": int(version_dir.name), "images_per_s": figures}


def ensemble(
    model_dir: Path, index: Path | None, images: np.ndarray, labels: np.ndarray, batch_sizes: list[int], seconds: float
) -> dict[str, Any]:
    """One network and the served ensemble, rebuilt in Keras, by batch size."""
    import keras

    from bench.gpu_weights import load_ensemble

    # the version the index was written for, else the one the service would serve
    version_dir = model_dir / str(json.loads(index.read_text())["version"]) if index else latest(model_dir)
    served = load_ensemble(version_dir, index)
    say(f"weights: {served.weights}")
    images = images[..., None] if images.ndim == 3 else images
    logits, unsure = served.logits(images[:VALIDATION_BATCH_SIZE])
    checked = min(len(images), VALIDATION_BATCH_SIZE)
    accuracy = float(np.mean(logits.argmax(axis=1) == labels[:checked]))
    say(f"served ensemble on {checked} of those images: {100 * accuracy:.2f} % right, {unsure} took the second look")
    one = keras.Model(
        inputs := keras.Input((28, 28, 1), dtype="uint8"),
        served.members[0](keras.layers.Rescaling(1.0 / 255.0)(inputs)),
        name="one_network",
    )
    rows = []
    for size in batch_sizes:
        x = batch_of(images, size)

        def network_call(x: np.ndarray = x) -> object:
            return np.asarray(one.predict_on_batch(x))

        def ensemble_call(x: np.ndarray = x) -> object:
            return served.logits(x)

        network_rate = timed_rate(network_call, size, seconds)
        second_look = served.logits(x)[1]
        ensemble_rate = timed_rate(ensemble_call, size, seconds)
        rows.append(
            {"batch": size, "network": network_rate, "ensemble": ensemble_rate, "second_look_share": second_look / size}
        )
        say(
            f"batch {size:>5}: one network {network_rate:10,.0f} images/s; served ensemble {ensemble_rate:10,.0f}"
            f" images/s ({second_look} of {size} to the second look)"
        )
    # the share of the test images the index was checked on (bench.gpu_weights) that take the second look
    checked_share = json.loads(index.read_text()).get("check", {}).get("second_look_share") if index else None
    return {
        "version": int(version_dir.name),
        "weights": served.weights,
        "test_second_look_share": checked_share,
        "networks": served.networks,
        "accuracy": {"images": checked, "top1": accuracy},
        "rows": rows,
    }


# --- training -----------------------------------------------------------------------------------
def recipe(model_dir: Path) -> dict[str, Any]:
    """The served version's training settings (metadata.json's ``training``), with its architecture."""
    metadata = json.loads((latest(model_dir) / "metadata.json").read_text())
    settings: dict[str, Any] = dict(metadata.get("training") or {})
    settings.setdefault("arch", metadata.get("architecture") or "fashion-cnn")
    return settings


def train(
    settings: dict[str, Any],
    x_train: np.ndarray,
    y_train: np.ndarray,
    epochs: int,
    limit_train: int | None,
    limit_val: int | None,
    augment: bool,
) -> dict[str, Any]:
    """``epochs`` epochs of the recipe, each timed from its first step to the end of its validation."""
    import keras

    from training import architectures
    from training.optimizers import make_optimizer

    fashion = data.FashionMNIST(x_train, y_train, x_train[:0], y_train[:0], source="", sha256={})
    split = data.split_train_validation(fashion, seed=int(settings.get("split_seed", data.DEFAULT_SPLIT_SEED)))
    x, y = split.x_train, split.y_train
    if settings.get("full_train"):  # production trains on the validation images too, and still validates on them
        x, y = np.concatenate([x, split.x_val]), np.concatenate([y, split.y_val])
    x, y = x[:limit_train], y[:limit_train]
    x_val, y_val = split.x_val[:limit_val], split.y_val[:limit_val]
    batch_size = int(settings.get("batch_size", 128))
    steps = -(-len(x) // batch_size)
    keras.utils.set_random_seed(int(settings.get("seed", 42)))
    model = architectures.build(settings["arch"])
    optimizer = make_optimizer(
        settings.get("optimizer", "adam"),
        float(settings.get("learning_rate", 1e-3)),
        weight_decay=float(settings.get("weight_decay", 0.0)),
        lr_schedule=settings.get("lr_schedule", "constant"),
        warmup_epochs=int(settings.get("warmup_epochs", 0)),
        epochs=int(settings.get("epochs", epochs)),
        steps_per_epoch=steps,
    )
    loss = keras.losses.CategoricalCrossentropy(label_smoothing=float(settings.get("label_smoothing", 0.0)))
    model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"])
    augmented = augment and bool(settings.get("augment"))
    times: list[float] = []

    class EpochTimes(keras.callbacks.Callback):  # type: ignore[misc]  # keras has no type information
        def on_epoch_begin(self, epoch: int, logs: dict[str, float] | None = None) -> None:
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
            times.append(time.perf_counter() - self.started)
            logs = logs or {}
            say(
                f"epoch {epoch + 1}: {times[-1]:.1f} s ({len(x)} images in {steps} steps of {batch_size}, then"
                f" {len(x_val)} validation images); loss {logs.get('loss', float('nan')):.3f},"
                f" accuracy {logs.get('accuracy', float('nan')):.3f}"
            )

    if augmented:
        from training import pipeline

        train_data: Any = pipeline.make_dataset(
            x,
            y,
            batch_size,
            shuffle=True,
            augment=True,
            seed=int(settings.get("seed", 42)),
            zoom=float(settings.get("zoom", 0.0)),
            scanner=bool(settings.get("scanner", False)),
        )
        validation: Any = pipeline.make_dataset(x_val, y_val, VALIDATION_BATCH_SIZE)
        model.fit(
            train_data, validation_data=validation, epochs=epochs, callbacks=[EpochTimes()], shuffle=False, verbose=0
        )
    else:
        model.fit(
            data.to_model_inputs(x),
            data.one_hot(y),
            batch_size=batch_size,
            epochs=epochs,
            validation_data=(data.to_model_inputs(x_val), data.one_hot(y_val)),
            validation_batch_size=VALIDATION_BATCH_SIZE,
            shuffle=True,
            callbacks=[EpochTimes()],
            verbose=0,
        )
    return {
        "architecture": settings["arch"],
        "params": int(model.count_params()),
        "images": len(x),
        "validation_images": len(x_val),
        "batch_size": batch_size,
        "steps": steps,
        "optimizer": settings.get("optimizer", "adam"),
        "augmented": augmented,
        "recipe_augments": bool(settings.get("augment")),
        "epoch_s": times,
    }


# --- the images ---------------------------------------------------------------------------------
def load_images(dataset_dir: Path | None) -> tuple[dict[str, np.ndarray], str]:
    """The training split, and the test split where the directory has it (else None for it)."""
    if dataset_dir is None:
        fashion = data.load_fashion_mnist(allow_download=False)
        arrays = {"x_train": fashion.x_train, "y_train": fashion.y_train}
        arrays.update({"x_test": fashion.x_test, "y_test": fashion.y_test})
        return arrays, fashion.source
    arrays, _ = data.load_arrays(dataset_dir, ("x_train", "y_train"))
    try:
        test, _ = data.load_arrays(dataset_dir, ("x_test", "y_test"))
        arrays.update(test)
    except data.DatasetError:
        pass  # the carried dataset may hold the training split alone
    return arrays, str(dataset_dir)


# --- the command --------------------------------------------------------------------------------
PARTS = ("device", "savedmodel", "ensemble", "train")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.gpu_worker", description=__doc__.split("\n\n")[0])
    p.add_argument("--parts", default="device", help=f"comma-separated, from {', '.join(PARTS)}")
    p.add_argument("--json-out", type=Path, required=True)
    p.add_argument("--model-dir", type=Path, default=Path("models/fashion-cnn"))
    p.add_argument("--weights-index", type=Path, default=None, help="bench.gpu_weights' index (else fresh weights)")
    p.add_argument("--dataset-dir", type=Path, default=None, help="the IDX files (else training.data's places)")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32, 64, 128, 256, 1024, 4096])
    p.add_argument("--seconds", type=float, default=3.0, help="timed per batch size")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--limit-train", type=int, default=None)
    p.add_argument("--limit-val", type=int, default=None)
    p.add_argument("--augment", action="store_true", help="tf.data augmentation as the recipe says (TensorFlow)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    parts = [part.strip() for part in args.parts.split(",") if part.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        print(f"python -m bench.gpu_worker: unknown part(s) {unknown}; choose from {list(PARTS)}", file=sys.stderr)
        return 2
    results: dict[str, Any] = {}
    if "device" in parts:
        results["device"] = device()
        say(f"{results['device']['framework']} computes on {results['device']['device']}")
    if "savedmodel" in parts:
        results["savedmodel"] = savedmodel(args.model_dir, args.batch_sizes, args.seconds)
    if "ensemble" in parts or "train" in parts:
        arrays, source = load_images(args.dataset_dir)
        results["dataset"] = {"source": source, "test_split": "x_test" in arrays}
        if "ensemble" in parts:
            test = "x_test" in arrays
            images, labels = (arrays["x_test"], arrays["y_test"]) if test else (arrays["x_train"], arrays["y_train"])
            results["ensemble"] = {
                "images": "test split" if test else "training split (no test split carried)",
                **ensemble(args.model_dir, args.weights_index, images, labels, args.batch_sizes, args.seconds),
            }
        if "train" in parts:
            results["train"] = train(
                recipe(args.model_dir),
                arrays["x_train"],
                arrays["y_train"],
                args.epochs,
                args.limit_train,
                args.limit_val,
                args.augment,
            )
    args.json_out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
