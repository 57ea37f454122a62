"""The study's CNNs, layer for layer, and the production CNN, buildable by name.

Every model takes float32 (28, 28, 1) images in [0, 1] and ends in a linear Dense(10)
named ``logits`` followed by a softmax, so export can serve both logits and
(temperature-scaled) probabilities without changing any parameter count.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
from keras import layers

from contract.classes import IMAGE_SHAPE, NUM_CLASSES

INPUT_SHAPE = (*IMAGE_SHAPE, 1)  # one grey channel
STUDY_DROPOUT = 0.5


def _head(hidden: list[layers.Layer]) -> list[layers.Layer]:
    return [*hidden, layers.Dense(NUM_CLASSES, name="logits"), layers.Activation("softmax", name="softmax")]


def _conv(filters: int, padding: str = "valid") -> layers.Layer:
    return layers.Conv2D(filters, 3, padding=padding, activation="relu")


def _sequential(name: str, stack: list[layers.Layer]) -> keras.Model:
    return keras.Sequential([keras.Input(INPUT_SHAPE), *stack], name=name.replace("-", "_"))


# Assignment 3 of the study (valid padding, as the study's parameter counts show).
def a3_model1() -> keras.Model:
    return _sequential("a3-model1", [_conv(32), _conv(64), layers.Flatten(), *_head([])])


def a3_model2() -> keras.Model:
    return _sequential(
        "a3-model2",
        [_conv(32), layers.MaxPooling2D(), _conv(64), layers.MaxPooling2D(), layers.Flatten(), *_head([])],
    )


def a3_model3() -> keras.Model:
    return _sequential(
        "a3-model3",
        [
            _conv(32),
            layers.BatchNormalization(),
            layers.MaxPooling2D(),
            layers.Dropout(STUDY_DROPOUT),
            _conv(64),
            layers.BatchNormalization(),
            layers.MaxPooling2D(),
            layers.Dropout(STUDY_DROPOUT),
            layers.Flatten(),
            *_head([layers.Dense(256, activation="relu"), layers.Dropout(STUDY_DROPOUT)]),
        ],
    )


# The final report's Sequential 2..6: 3x3 'same' convolutions, Dropout 0.5.
def _dense_head() -> list[layers.Layer]:
    return _head([layers.Dense(256, activation="relu"), layers.Dropout(STUDY_DROPOUT)])


def seq2() -> keras.Model:
    return _sequential(
        "seq2",
        [
            _conv(8, "same"),
            _conv(16, "same"),
            layers.MaxPooling2D(),
            _conv(32, "same"),
            _conv(64, "same"),
            layers.MaxPooling2D(),
            layers.Flatten(),
            layers.BatchNormalization(),
            *_dense_head(),
        ],
    )


def seq3() -> keras.Model:
    return _sequential(
        "seq3",
        [
            _conv(32, "same"),
            layers.BatchNormalization(),
            layers.MaxPooling2D(),
            _conv(64, "same"),
            layers.BatchNormalization(),
            layers.MaxPooling2D(),
            layers.Flatten(),
            *_dense_head(),
        ],
    )


def _four_conv(name: str, widths: tuple[int, int, int, int]) -> keras.Model:
    a, b, c, d = widths
    return _sequential(
        name,
        [
            _conv(a, "same"),
            _conv(b, "same"),
            layers.MaxPooling2D(),
            _conv(c, "same"),
            _conv(d, "same"),
            layers.MaxPooling2D(),
            layers.Flatten(),
            *_dense_head(),
        ],
    )


def seq4() -> keras.Model:
    return _four_conv("seq4", (64, 32, 16, 8))


def seq5() -> keras.Model:
    return _four_conv("seq5", (16, 16, 32, 32))


def seq6() -> keras.Model:
    return _four_conv("seq6", (32, 32, 16, 16))


# Production: VGG-style blocks of conv-BN-ReLU, global average pooling, one linear layer.
# Sized so that batch-256 CPU inference stays fast on two cores (see the model card).
FASHION_CNN_WIDTHS = (32, 64, 128)
FASHION_CNN_CONVS_PER_BLOCK = 2
FASHION_CNN_DROPOUT = 0.3


def fashion_cnn() -> keras.Model:
    stack: list[layers.Layer] = []
    for index, width in enumerate(FASHION_CNN_WIDTHS):
        for _ in range(FASHION_CNN_CONVS_PER_BLOCK):
            stack += [
                layers.Conv2D(width, 3, padding="same", use_bias=False),
                layers.BatchNormalization(),
                layers.ReLU(),
            ]
        if index < len(FASHION_CNN_WIDTHS) - 1:
            stack.append(layers.MaxPooling2D())
    stack += [layers.GlobalAveragePooling2D(), layers.Dropout(FASHION_CNN_DROPOUT)]
    return _sequential("fashion-cnn", [*stack, *_head([])])


ARCHITECTURES: dict[str, Callable[[], keras.Model]] = {
    "a3-model1": a3_model1,
    "a3-model2": a3_model2,
    "a3-model3": a3_model3,
    "seq2": seq2,
    "seq3": seq3,
    "seq4": seq4,
    "seq5": seq5,
    "seq6": seq6,
    "fashion-cnn": fashion_cnn,
}
STUDY_ARCHITECTURES = ("a3-model1", "a3-model2", "a3-model3", "seq2", "seq3", "seq4", "seq5", "seq6")
PRODUCTION_ARCHITECTURE = "fashion-cnn"

# The study's reported train / validation / test accuracy (%), where it reported them.
STUDY_REPORTED: dict[str, tuple[float, float, float]] = {
    "a3-model1": (99.81, 90.61, 90.47),
    "seq2": (71.51, 70.32, 70.02),
    "seq3": (86.3, 84.39, 84.1),
    "seq4": (84.7, 83.45, 82.52),
    "seq5": (83.08, 82.26, 80.94),
    "seq6": (84.52, 83.46, 82.41),
}
STUDY_NAMES = {
    "a3-model1": "Sequential 1 (A3 model 1)",
    "a3-model2": "A3 model 2",
    "a3-model3": "A3 model 3",
    "seq2": "Sequential 2",
    "seq3": "Sequential 3",
    "seq4": "Sequential 4",
    "seq5": "Sequential 5",
    "seq6": "Sequential 6",
}


class UnknownArchitecture(ValueError):
    """No architecture of that name; the message lists the known ones."""


def build(name: str) -> keras.Model:
    """Build a fresh, uncompiled model by architecture name."""
    try:
        factory = ARCHITECTURES[name]
    except KeyError:
        known = ", ".join(ARCHITECTURES)
        raise UnknownArchitecture(f"unknown architecture {name!r}; known: {known}") from None
    return factory()


def logits_model(model: keras.Model) -> keras.Model:
    """The same weights, stopping before the softmax."""
    return keras.Model(model.inputs, model.get_layer("logits").output, name=f"{model.name}_logits")
