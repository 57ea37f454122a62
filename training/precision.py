"""Reduced-precision copies of a trained model for serving.

CPUs with AVX512-BF16 or AMX (and recent GPUs) run bfloat16 convolutions about twice as fast as
float32 through oneDNN. The copy computes every layer in bfloat16 except the final ``logits``
layer, which stays float32 so the temperature-scaled softmax keeps its resolution; variables
stay float32 (cast on use), so the weights are exactly those of the float32 model.
"""

from __future__ import annotations

import keras

from contract.signature import PRECISIONS

_POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16"}
FLOAT32_LAYERS = ("logits",)


def with_precision(model: keras.Model, precision: str) -> keras.Model:
    """A copy of ``model`` (same weights) computing in ``precision``; float32 returns ``model``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)} (got {precision!r})")
    if precision == "float32":
        return model

    def clone(layer: keras.layers.Layer) -> keras.layers.Layer:
        policy = "float32" if layer.name in FLOAT32_LAYERS else _POLICIES[precision]
        return layer.__class__.from_config({**layer.get_config(), "dtype": policy})

    copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy
