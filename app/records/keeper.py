"""Which photos are kept, and keeping them: every photo sent to REVIEW, and a random audit sample
(``SORTER_AUDIT_RATE``) of the auto-sorted ones, whose reviews measure live accuracy without the
bias of looking only at what the model doubted. Runs in a pool thread, never on the event loop."""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from app.records.photos import PhotoStore

log = logging.getLogger(__name__)


class Kept(Protocol):
    photo: bytes
    seen: np.ndarray


class PhotoObserver(Protocol):
    def photos_kept(self, count: int) -> None: ...
    def photos_not_kept(self, count: int) -> None: ...
    def photos_purged(self, count: int) -> None: ...


class PhotoKeeper:
    def __init__(self, store: PhotoStore, audit_rate: float, observer: PhotoObserver, seed: int | None = None):
        self.store = store
        self.audit_rate = audit_rate
        self.observer = observer
        self._draws = random.Random(seed)

    def audit_draw(self) -> bool:
        return self.audit_rate > 0 and self._draws.random() < self.audit_rate

    def keep(self, items: Sequence[Kept]) -> list[str | None]:
        """Store each photo; None for one the disk refused (classification goes on without it)."""
        references: list[str | None] = []
        for item in items:
            try:
                references.append(self.store.put(item.photo, item.seen))
            except OSError as exc:
                references.append(None)
                log.error("photo store: a photo was not kept (%s); classification goes on", exc.strerror or exc)
        kept = sum(reference is not None for reference in references)
        self.observer.photos_kept(kept)
        if kept < len(items):
            self.observer.photos_not_kept(len(items) - kept)
        return references

    def read(self, reference: str, seen: bool = False) -> bytes | None:
        return self.store.read(reference, seen)

    def purge(self, retention_s: float) -> int:
        removed = self.store.purge(retention_s)
        if removed:
            self.observer.photos_purged(removed)
            log.info("photo store: %d files past retention removed", removed)
        return removed
