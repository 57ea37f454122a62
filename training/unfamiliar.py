"""`garment-sorter unfamiliar`: an exported version plus the `unfamiliar` threshold, as the next version.

The threshold is a property of the graph's logits on clean images, so it needs no retraining: the
graph and its variables are copied unchanged, and metadata.json gains ``unfamiliar`` (the score,
the threshold, the share of clean validation images that trip it, and where it was chosen). A
full-train model has seen the validation split, so, like its temperature and review threshold, the
threshold comes from its held-out twin (the same recipes trained without that split); the test
split is only measured and recorded, never used to choose.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from contract.metadata import METADATA_FILE, parse_metadata
from contract.signature import LOGITS_NAME
from contract.unfamiliar import DEFAULT_TRIP_RATE, SCORE, energy, threshold_for
from contract.versions import next_version
from training import data
from training.export import git_commit, predict_exported


def _scores(version_dir: Path, images: np.ndarray) -> np.ndarray:
    return energy(predict_exported(version_dir, images)[LOGITS_NAME])


def calibrate_unfamiliar(
    version_dir: Path, held_out_twin: Path | None, trip_rate: float = DEFAULT_TRIP_RATE
) -> dict[str, Any]:
    """The ``unfamiliar`` metadata block for ``version_dir`` (validation through the twin, if any)."""
    meta = json.loads((version_dir / METADATA_FILE).read_text())
    if meta.get("calibrated_by") is not None and held_out_twin is None:
        raise ValueError(f"{version_dir} trained on the validation split (calibrated_by); pass its --held-out-twin")
    split = data.split_train_validation(data.load_fashion_mnist(allow_download=False))
    calibrating = held_out_twin or version_dir
    validation_scores = _scores(calibrating, split.x_val)
    threshold = threshold_for(validation_scores, trip_rate)
    test_scores = _scores(version_dir, split.x_test)
    return {
        "score": SCORE,
        "threshold": threshold,
        "trip_rate": float(np.mean(validation_scores >= threshold)),
        "calibrated_on": f"validation split ({len(split.x_val)} images) through version {calibrating.name}",
        "test_trip_rate": float(np.mean(test_scores >= threshold)),  # measured, not chosen on
    }


def derive_version(version_dir: Path, block: dict[str, Any]) -> Path:
    """Copy ``version_dir`` to the next version under its parent, with ``unfamiliar`` in its metadata."""
    root = version_dir.parent
    target = root / str(next_version(root))
    meta = json.loads((version_dir / METADATA_FILE).read_text())
    staging = root / f".{target.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(version_dir, staging)
    meta.update(
        version=int(target.name),
        unfamiliar=block,
        derived_from={"version": int(version_dir.name), "change": "the unfamiliar threshold added; same graph"},
        git_commit=git_commit(),
        created_at=dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
    )
    parse_metadata(meta, str(staging / METADATA_FILE))  # the service must accept what is written
    (staging / METADATA_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    staging.rename(target)  # the service never sees a half-written version
    return target
