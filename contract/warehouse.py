"""The warehouse's own photos as a dataset: the layout `garment-sorter dataset export` writes (app/)
and `garment-sorter train --extra-data` reads (training/). Written once, here.

    DIR/manifest.json   {"format": FORMAT, "exported_at", "since", "items", "by_class", "by_source",
                         "skipped_without_photo"}
    DIR/items.csv       one row per reviewed item (ITEM_COLUMNS), oldest decision first
    DIR/seen/<decision_id>.png        the 28x28 image the model saw (garment bright on black)
    DIR/originals/<decision_id><ext>  the photo as the scanner sent it

Labels are the reviewers' verdicts (the latest review of each decision). ``source`` says why the
item was reviewed: ``review`` (the model sent it to REVIEW) or ``audit`` (auto-sorted, drawn into
the random audit sample: the unbiased part).

The held-out slice is chosen by the decision id's hash, so an item stays on the same side of the
split in every export, whatever else was exported with it.
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from contract.classes import IMAGE_SHAPE, NUM_CLASSES

FORMAT = "garment-sorter-warehouse/1"
MANIFEST, ITEMS, SEEN_DIR, ORIGINALS_DIR = "manifest.json", "items.csv", "seen", "originals"
ITEM_COLUMNS = (
    "decision_id",
    "item_id",
    "class_id",
    "label",
    "source",
    "model_label",
    "decided_at",
    "reviewed_at",
    "seen",
    "original",
)
HELD_OUT_SHARE = 0.2


class WarehouseDataError(ValueError):
    """The directory is not a warehouse export, or an item in it is unreadable."""


@dataclass(frozen=True)
class WarehouseSet:
    images: np.ndarray  # uint8 (N, 28, 28), the model's polarity
    labels: np.ndarray  # int64 (N,)
    decision_ids: tuple[str, ...]
    sources: tuple[str, ...]

    def held_out(self, share: float = HELD_OUT_SHARE) -> np.ndarray:
        """Boolean mask of the items kept out of training (reported on, never trained on)."""
        return np.array([held_out(decision_id, share) for decision_id in self.decision_ids], dtype=bool)

    def subset(self, mask: np.ndarray) -> WarehouseSet:
        keep = np.flatnonzero(mask)
        return WarehouseSet(
            self.images[keep],
            self.labels[keep],
            tuple(self.decision_ids[i] for i in keep),
            tuple(self.sources[i] for i in keep),
        )


def held_out(decision_id: str, share: float = HELD_OUT_SHARE) -> bool:
    digest = int.from_bytes(hashlib.sha256(decision_id.encode()).digest()[:8], "big")
    return digest / 2**64 < share


def read_warehouse_set(directory: Path) -> WarehouseSet:
    directory = Path(directory)
    try:
        manifest = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise WarehouseDataError(f"{directory}: no readable {MANIFEST} ({exc})") from None
    if manifest.get("format") != FORMAT:
        raise WarehouseDataError(f"{directory}: format {manifest.get('format')!r}, expected {FORMAT!r}")
    images, labels, ids, sources = [], [], [], []
    with (directory / ITEMS).open(newline="", encoding="utf-8") as file:
        for row in csv.DictReader(file):
            class_id = int(row["class_id"])
            if not 0 <= class_id < NUM_CLASSES:
                raise WarehouseDataError(f"{row['decision_id']}: class_id {class_id} out of range")
            with Image.open(directory / row["seen"]) as seen:
                pixels = np.asarray(seen.convert("L"), dtype=np.uint8)
            if pixels.shape != IMAGE_SHAPE:
                raise WarehouseDataError(f"{row['seen']}: {pixels.shape}, expected {IMAGE_SHAPE}")
            images.append(pixels)
            labels.append(class_id)
            ids.append(row["decision_id"])
            sources.append(row["source"])
    if len(ids) != manifest.get("items"):
        raise WarehouseDataError(f"{directory}: {len(ids)} rows in {ITEMS}, the manifest says {manifest.get('items')}")
    return WarehouseSet(
        np.stack(images) if images else np.zeros((0, *IMAGE_SHAPE), np.uint8),
        np.array(labels, dtype=np.int64),
        tuple(ids),
        tuple(sources),
    )
