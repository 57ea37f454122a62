"""An exported version's networks, taken back out of its SavedModel, to fine-tune or to run elsewhere.

Export folds each network's BatchNormalization into its convolutions and bakes the ensemble into one
graph; the run directories behind a version are not kept in the tree. `garment-sorter unpack`
recovers each network as a run directory that `garment-sorter train --init-from` accepts: the
production architecture with its BatchNormalization layers set to the identity (gamma 1, beta the
folded bias, mean 0, variance 1 - epsilon), which computes the folded network's function exactly as
long as those layers stay in inference mode (train with --freeze-batch-norm).

TensorFlow is imported only where a SavedModel is read: bench.gpu_weights uses ``folded_network``
on machines without it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import keras
import numpy as np
from keras import layers

from training.architectures import PRODUCTION_ARCHITECTURE, build, logits_model
from training.fold import fold_batch_norm

FLOAT32_SIGNATURE = "serving_default"
METADATA_FILE = "metadata.json"  # contract.metadata's name; that module needs pydantic, which the GPU fallback lacks
BEST_FILE, CONFIG_FILE = "best.keras", "config.json"


def folded_network(name: str = "network") -> keras.Model:
    """The production architecture as exported: BatchNorm folded into the convolutions, ending in
    the logits. Its weights are freshly initialised."""
    model = logits_model(fold_batch_norm(build(PRODUCTION_ARCHITECTURE)))
    return keras.Model(model.inputs[0], model.outputs[0], name=name)


def network_counts(version_dir: Path) -> tuple[int, int]:
    """(members averaged for every image, members that join only for unsure images)."""
    metadata: dict[str, Any] = json.loads((Path(version_dir) / METADATA_FILE).read_text())
    return int(metadata.get("ensemble_size") or 1), int(metadata.get("unsure_members") or 0)


def captured_networks(version_dir: Path) -> list[list[Any]]:
    """Each network's variables in the version's float32 signature (tf.Variable), in the order the
    folded network's layers use them: members first, then the unsure-only members."""
    import tensorflow as tf

    loaded = tf.saved_model.load(str(version_dir))
    signature = loaded.signatures[FLOAT32_SIGNATURE]
    by_handle = {variable.handle.ref(): variable for variable in loaded.variables}
    # The signature captures each network's variables in the order its layers use them.
    captured = [by_handle[c.ref()] for c in signature.captured_inputs if c.ref() in by_handle]
    template = [tuple(w.shape) for w in folded_network().weights]
    n_members, n_unsure = network_counts(version_dir)
    if len(captured) != len(template) * (n_members + n_unsure):
        raise ValueError(
            f"{version_dir}: the float32 signature uses {len(captured)} variables; "
            f"{n_members + n_unsure} folded {PRODUCTION_ARCHITECTURE} networks have {len(template)} each"
        )
    networks = [captured[start : start + len(template)] for start in range(0, len(captured), len(template))]
    for network in networks:
        for variable, shape in zip(network, template, strict=True):
            if variable.dtype != tf.float32 or tuple(variable.shape) != shape:
                raise ValueError(f"{variable.name}: {variable.dtype} {tuple(variable.shape)}, expected float32 {shape}")
    return networks


def unfolded(folded_weights: list[np.ndarray]) -> keras.Model:
    """The production architecture, BatchNormalization as the identity, computing the folded network
    whose weights these are (in inference mode)."""
    model = build(PRODUCTION_ARCHITECTURE)
    source = fold_batch_norm(build(PRODUCTION_ARCHITECTURE))
    source.set_weights(folded_weights)
    sources = iter(layer for layer in source.layers if layer.weights)
    stack = model.layers
    for index, layer in enumerate(stack):
        if not layer.weights or isinstance(layer, layers.BatchNormalization):
            continue
        weights = next(sources).get_weights()
        following = stack[index + 1] if index + 1 < len(stack) else None
        if isinstance(layer, layers.Conv2D) and isinstance(following, layers.BatchNormalization):
            kernel, bias = weights
            layer.set_weights([kernel] + ([np.zeros_like(bias)] if layer.use_bias else []))
            identity_variance = np.full_like(bias, 1.0 - following.epsilon)
            following.set_weights([np.ones_like(bias), bias, np.zeros_like(bias), identity_variance])
        else:
            layer.set_weights(weights)
    return model


def unpack(version_dir: Path, out_dir: Path) -> list[Path]:
    """One run directory per network of the version (member-<i>, then unsure-<i>), each with
    best.keras and a config.json naming the architecture and where it came from."""
    version_dir, out_dir = Path(version_dir), Path(out_dir)
    n_members, _ = network_counts(version_dir)
    written = []
    for number, variables in enumerate(captured_networks(version_dir)):
        role, index = ("member", number) if number < n_members else ("unsure", number - n_members)
        run_dir = out_dir / f"{role}-{index}"
        run_dir.mkdir(parents=True, exist_ok=True)
        unfolded([v.numpy() for v in variables]).save(run_dir / BEST_FILE)
        config = {"arch": PRODUCTION_ARCHITECTURE, "unpacked_from": str(version_dir), "network": number, "role": role}
        (run_dir / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
        written.append(run_dir)
    return written
