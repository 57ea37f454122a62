"""The version layout: ``<model_dir>/<integer version>/`` holds one immutable export."""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)

SAVED_MODEL_FILE = "saved_model.pb"


class VersionError(RuntimeError):
    """No usable version directory where one was expected."""


def versions(model_dir: Path) -> list[int]:
    """Every integer version directory under model_dir, ascending (complete or not)."""
    root = Path(model_dir)
    if not root.is_dir():
        return []
    return sorted(int(p.name) for p in root.iterdir() if p.is_dir() and p.name.isdigit())


def latest(model_dir: Path) -> Path:
    """The highest version directory that holds a saved_model.pb; raise VersionError."""
    root = Path(model_dir)
    if not root.is_dir():
        raise VersionError(f"model directory {root} does not exist")
    for version in reversed(versions(root)):
        path = root / str(version)
        if (path / SAVED_MODEL_FILE).is_file():
            return path
        log.warning("skipping %s: no %s", path, SAVED_MODEL_FILE)
    raise VersionError(f"no version directory with a {SAVED_MODEL_FILE} under {root}")


def next_version(model_dir: Path) -> int:
    """The number the next export takes: one above every existing directory, complete or not."""
    existing = versions(model_dir)
    return existing[-1] + 1 if existing else 1
