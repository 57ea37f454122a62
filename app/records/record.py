"""A decision as the log stores it: the answer the scanner got, plus who asked, when, and under
which policy."""

from __future__ import annotations

import datetime as dt
from typing import Any


def decision_row(
    answer: dict[str, Any],
    *,
    caller: str | None,
    policy_version: str,
    review_threshold: float | None,
    created_at: dt.datetime,
    photo_sha256: str | None = None,
    audit: bool = False,
) -> dict[str, Any]:
    return {
        "decision_id": answer["decision_id"],
        "created_at": created_at,
        "item_id": answer["item_id"],
        "caller": caller,
        "model_name": answer["model"]["name"],
        "model_version": answer["model"]["version"],
        "policy_version": policy_version,
        "review_threshold": review_threshold,
        "class_id": answer["class_id"],
        "label": answer["label"],
        "confidence": answer["confidence"],
        "top_k": answer["top_k"],
        "season": answer["season"],
        "season_confidence": answer["season_confidence"],
        "bin": answer["bin"],
        "zone": answer["zone"],
        "needs_review": answer["needs_review"],
        "review_reasons": answer["review_reasons"],
        "box": answer["box"],
        "timings_ms": answer["timings_ms"],
        "photo_sha256": photo_sha256,
        "audit": audit,
    }
