"""What the service needs of a model, and the fixed batch sizes every model runs at.

Two implementations: the exported SavedModel (``tensorflow_model``) and the constant null model
(``null_model``, the benchmark's ceiling); ``loader.load_model`` picks one from the settings.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple, Protocol

import numpy as np
import numpy.typing as npt

Images = npt.NDArray[np.uint8]  # (n, 28, 28), garment bright on black
Probabilities = npt.NDArray[np.float32]  # (n, classes), rows sum to 1
Flags = npt.NDArray[np.bool_]  # (n,)


class Inference(NamedTuple):
    """One model call's answer for a batch."""

    probabilities: Probabilities
    unfamiliar: Flags  # the input is unlike the training images (contract.unfamiliar)


class ModelError(RuntimeError):
    """The loaded model breaks the contract: signature, precision or warm-up outputs."""


class Model(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def version(self) -> int: ...

    @property
    def class_names(self) -> tuple[str, ...]: ...

    @property
    def batch_sizes(self) -> tuple[int, ...]: ...

    @property
    def review_threshold(self) -> float | None: ...

    def predict(self, images: Images) -> Probabilities:
        """uint8 (n, 28, 28) -> float32 (n, classes) calibrated probabilities; n <= max batch."""
        ...

    def infer(self, images: Images) -> Inference:
        """The probabilities and, in the same model call, which inputs are unfamiliar."""
        ...

    def warmup(self) -> None: ...

    def describe(self) -> dict[str, Any]: ...


def padded_sizes(max_batch_size: int) -> tuple[int, ...]:
    """The fixed batch sizes the model is ever run at: powers of two up to the maximum (and it)."""
    sizes = [1 << i for i in range(int(math.log2(max_batch_size)) + 1)]
    if sizes[-1] != max_batch_size:
        sizes.append(max_batch_size)
    return tuple(sizes)


def bucket_for(n: int, sizes: tuple[int, ...]) -> int:
    for size in sizes:
        if size >= n:
            return size
    raise ValueError(f"batch of {n} exceeds the largest padded size {sizes[-1]}")
