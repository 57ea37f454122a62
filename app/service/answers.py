"""From the model's probabilities to the answer a scanner gets: class, top-k, season, bin, zone."""

from __future__ import annotations

import datetime as dt
from typing import Any, NamedTuple

import numpy as np

from app.inference.batcher import Outcome
from app.inference.model import Images, Model
from app.inference.preprocess import ModelInput
from app.metrics import Metrics
from app.policy import Policy
from app.reasons import before_policy
from app.records.ids import new_id


class Row(NamedTuple):
    """One image's inference result, computed in the batcher's worker thread (a tuple: cheap to
    build for every image of every batch)."""

    probabilities: list[float]
    class_order: list[int]  # class ids, most probable first
    season_index: int
    season_mass: float
    unfamiliar: bool


def infer_rows(model: Model, policy: Policy, images: Images) -> list[Row]:
    """The batch function: one model call, then the season masses, all vectorised over the batch."""
    inference = model.infer(images)
    probabilities = np.asarray(inference.probabilities, dtype=np.float64)
    order = np.argsort(-probabilities, axis=1, kind="stable")
    masses = policy.season_masses(probabilities)
    season = masses.argmax(axis=1)
    season_mass = masses[np.arange(len(masses)), season]
    return [
        Row(p, o, s, m, u)
        for p, o, s, m, u in zip(
            probabilities.tolist(),
            order.tolist(),
            season.tolist(),
            season_mass.tolist(),
            inference.unfamiliar.tolist(),
            strict=True,
        )
    ]


def build_answer(
    outcome: Outcome,
    seen: ModelInput,
    *,
    model: Model,
    policy: Policy,
    metrics: Metrics,
    model_ref: dict[str, Any],
    preprocess_s: float,
    top_k: int,
    on: dt.date,
    item_id: str | None,
) -> dict[str, Any]:
    row: Row = outcome.row
    names = model.class_names
    class_id = row.class_order[0]
    decision = policy.decide_index(row.season_index, row.season_mass, on, before_policy(seen.reasons, row.unfamiliar))
    metrics.predicted(names[class_id], decision.bin, decision.reasons)
    metrics.answered_by(model.version, decision.needs_review)
    probabilities = row.probabilities
    return {
        "decision_id": new_id(),
        "class_id": class_id,
        "label": names[class_id],
        "confidence": probabilities[class_id],
        "top_k": [{"class_id": c, "label": names[c], "probability": probabilities[c]} for c in row.class_order[:top_k]],
        "season": decision.season,
        "season_confidence": decision.season_mass,
        "bin": decision.bin,
        "zone": decision.zone,
        "needs_review": decision.needs_review,
        "review_reasons": [str(reason) for reason in decision.reasons],
        "box": None if seen.box is None else dict(zip(("left", "top", "right", "bottom"), seen.box, strict=True)),
        "model": model_ref,
        "item_id": item_id,
        "timings_ms": {
            "preprocess": round(preprocess_s * 1000.0, 3),
            "queue": round(outcome.queue_s * 1000.0, 3),
            "inference": round(outcome.inference_s * 1000.0, 3),
        },
    }
