"""Helpers shared by the contract tests."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MODEL_DIR = REPO / "models" / "fashion-cnn"


def make_version(root: Path, name: str, with_model: bool = True) -> Path:
    path = root / name
    path.mkdir(parents=True)
    if with_model:
        (path / "saved_model.pb").write_bytes(b"")
    return path
