"""A render set: scanner photos of training images, as the service's preprocessing left them.

`python -m bench renders` writes one (bench/ owns the scanner renderer; it runs the service's own
preprocessing on each JPEG) and `garment-sorter train --renders FILE` mixes it into training
(training/ imports neither app/ nor bench/). Written once, here.

    FILE.npz  images     uint8 (N, 28, 28): what the model saw, garment bright on black
              labels     uint8 (N,): the dataset class of the image the photo was rendered from
              sources    int32 (N,): that image's index in the 50,000-image training split
              conditions uint8 (N,): the scanner condition, an index into ``condition_names``
              condition_names  str (C,)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from contract.classes import IMAGE_SHAPE, NUM_CLASSES

KEYS = ("images", "labels", "sources", "conditions", "condition_names")


class RenderSetError(ValueError):
    """The file is not a render set, or its arrays disagree."""


@dataclass(frozen=True)
class RenderSet:
    images: np.ndarray  # uint8 (N, 28, 28)
    labels: np.ndarray  # uint8 (N,)
    sources: np.ndarray  # int32 (N,)
    conditions: np.ndarray  # uint8 (N,)
    condition_names: tuple[str, ...]

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as fh:  # an open file: numpy would add ".npz" to a name without it
            np.savez_compressed(
                fh,
                images=self.images,
                labels=self.labels,
                sources=self.sources,
                conditions=self.conditions,
                condition_names=np.array(self.condition_names),
            )


def read_render_set(path: Path) -> RenderSet:
    """The render set at ``path``; RenderSetError names what is wrong with it."""
    try:
        with np.load(path, allow_pickle=False) as stored:
            missing = [key for key in KEYS if key not in stored.files]
            if missing:
                raise RenderSetError(f"{path}: not a render set (no {', '.join(missing)})")
            found = RenderSet(
                images=stored["images"],
                labels=stored["labels"],
                sources=stored["sources"],
                conditions=stored["conditions"],
                condition_names=tuple(str(name) for name in stored["condition_names"]),
            )
    except (OSError, ValueError) as exc:
        if isinstance(exc, RenderSetError):
            raise
        raise RenderSetError(f"{path}: not a render set ({exc})") from None
    count = len(found.labels)
    if found.images.dtype != np.uint8 or found.images.shape[1:] != IMAGE_SHAPE[:2]:
        raise RenderSetError(
            f"{path}: images are {found.images.dtype} {found.images.shape}, expected uint8 (N, 28, 28)"
        )
    if not len(found.images) == count == len(found.sources) == len(found.conditions):
        raise RenderSetError(f"{path}: images, labels, sources and conditions differ in length")
    if count and (int(found.labels.max()) >= NUM_CLASSES or int(found.conditions.max()) >= len(found.condition_names)):
        raise RenderSetError(f"{path}: a label or condition is out of range")
    return found
