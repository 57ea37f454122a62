"""The review threshold measured on the warehouse's own items: what each threshold would have sent
to review and how many items it would have put in the wrong bin, from the decision log's verdicts
(`garment-sorter review-threshold`, docs/decisions.md#choosing-the-review-threshold), for the live
model or for a shadow candidate before it is promoted.

The model's threshold was chosen on clean validation images, the scanner benchmark's on its own
renders; neither is this warehouse's line. The log holds, for each decision, the chosen season's
confidence and the review reasons (and the same for a shadow candidate's answer), and for the items
people looked at, the true class. An item is sorted without review at threshold t exactly when it
has no reason but, possibly, low_confidence and its season confidence is at least t. The verdicts
come from two strata of the live decisions, each its own random sample: the items the live model
sorted (the audit sample) and those it sent to review (the ones reviewed so far). The wrong share
of each stratum above t is estimated from its verdicts above t and applied to the stratum's full
count above t, which the log knows exactly; so is the review share. The bound is a one-sided Wilson
upper bound per stratum.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from sqlalchemy import Engine, select

from app.reasons import Reason
from app.records.queries import verdicts
from app.records.schema import decisions, shadow_decisions

Z_ONE_SIDED_95 = 1.6448536269514722
DEFAULT_TARGET = 0.01  # wrong bin without review, of all items: what the model's own threshold was chosen for
STRATA = ("sorted", "review")  # what the live model did: sorted (verdicts: the audit sample), or sent to review


@dataclass(frozen=True)
class Stratum:
    """One stratum's items: every item's season confidence, and the verdicts known so far."""

    confidence: np.ndarray  # float (N,): the stratum's items that can be sorted
    verdict_confidence: np.ndarray  # float (M,): those of them with a verdict that speaks for the stratum
    verdict_wrong: np.ndarray  # bool (M,): the reviewer's season is not the one the measured answer chose


@dataclass(frozen=True)
class Outcomes:
    """One live version's decisions as the threshold sees them, answered by that version or by a
    shadow candidate; each stratum holds the items that can be sorted (no reason but low_confidence)."""

    model_version: int
    candidate_version: int | None  # the shadow candidate whose answers are measured; None: the live ones
    decisions: int  # with a season confidence; each counts in the review share
    without_confidence: int  # recorded before season_confidence was kept: left out
    strata: dict[str, Stratum]
    latest_threshold: float | None  # the live threshold of the newest decision (None for a candidate)


@dataclass(frozen=True)
class Point:
    threshold: float
    review_share: float
    wrong_bin_share: float | None  # None: some items above the threshold have no verdict to go by
    wrong_bin_upper: float  # one-sided 95 % bound (1.0 where unknown)


def wilson_upper(wrong: np.ndarray, seen: np.ndarray, z: float = Z_ONE_SIDED_95) -> np.ndarray:
    """Upper confidence bounds on proportions after ``wrong`` of ``seen``; 1.0 where nothing was seen."""
    seen_f = np.maximum(seen, 1).astype(np.float64)
    p = wrong / seen_f
    centre = p + z * z / (2 * seen_f)
    spread = z * np.sqrt(p * (1 - p) / seen_f + z * z / (4 * seen_f * seen_f))
    bound: np.ndarray = np.where(seen > 0, np.minimum(1.0, (centre + spread) / (1 + z * z / seen_f)), 1.0)
    return bound


def _count_at_or_above(values: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    counts: np.ndarray = len(values) - np.searchsorted(np.sort(values), thresholds, side="left")
    return counts


def curve(outcomes: Outcomes, thresholds: np.ndarray) -> list[Point]:
    """Review share and wrong-bin share (of all decisions) had each threshold been in force."""
    total = max(outcomes.decisions, 1)
    sorted_items = np.zeros(len(thresholds))
    wrong = np.zeros(len(thresholds))
    upper = np.zeros(len(thresholds))
    for stratum in outcomes.strata.values():
        above = _count_at_or_above(stratum.confidence, thresholds)
        seen = _count_at_or_above(stratum.verdict_confidence, thresholds)
        found_wrong = _count_at_or_above(stratum.verdict_confidence[stratum.verdict_wrong], thresholds)
        sorted_items += above
        # Items above the threshold with no verdict above it: their wrong share is unknown (NaN).
        wrong += np.where(above == 0, 0.0, np.where(seen > 0, above * found_wrong / np.maximum(seen, 1), np.nan))
        upper += np.where(above == 0, 0.0, above * wilson_upper(found_wrong, seen))
    return [
        Point(
            threshold=float(t),
            review_share=float(1 - s / total),
            wrong_bin_share=None if math.isnan(w) else float(w / total),
            wrong_bin_upper=float(min(1.0, u / total)),
        )
        for t, s, w, u in zip(thresholds, sorted_items, wrong, upper, strict=True)
    ]


def at(outcomes: Outcomes, threshold: float) -> Point:
    return curve(outcomes, np.array([threshold]))[0]


def lowest_threshold(outcomes: Outcomes, target: float, *, bound: bool) -> Point | None:
    """The least review whose wrong-bin share (its upper bound, with ``bound``) is at most
    ``target``; None when no threshold reaches it on these verdicts. Candidates are the season
    confidences on record (between two of them nothing changes) and 1.0 (everything to review but
    the items whose season is certain)."""
    candidates = np.unique(np.concatenate([*(s.confidence for s in outcomes.strata.values()), [1.0]]))
    for point in curve(outcomes, candidates):  # ascending: the first that meets the target reviews the least
        share = point.wrong_bin_upper if bound else point.wrong_bin_share
        if share is not None and share <= target:
            return point
    return None


def read_outcomes(
    engine: Engine,
    model_version: int | None = None,
    since: dt.datetime | None = None,
    candidate_version: int | None = None,
) -> Outcomes:
    """The decisions of ``model_version`` (default: the newest decision's) made at or after
    ``since``, each with its latest verdict, if any; with ``candidate_version``, only those the
    shadow candidate answered too, measured by its answers."""
    with engine.connect() as connection:
        if model_version is None:
            model_version = connection.execute(
                select(decisions.c.model_version).order_by(decisions.c.decision_id.desc()).limit(1)
            ).scalar_one_or_none()
            if model_version is None:
                raise LookupError("the decision log holds no decisions")
        verdict = verdicts()
        answered: Any = decisions if candidate_version is None else shadow_decisions
        query = (
            select(
                decisions.c.needs_review,
                decisions.c.audit,
                decisions.c.review_threshold,
                answered.c.season_confidence,
                answered.c.review_reasons,
                answered.c.season,
                verdict.c.season.label("true_season"),
            )
            .outerjoin(verdict, verdict.c.decision_id == decisions.c.decision_id)
            .where(decisions.c.model_version == model_version)
            .order_by(decisions.c.decision_id)
        )
        if candidate_version is not None:
            query = query.join(
                shadow_decisions,
                (shadow_decisions.c.decision_id == decisions.c.decision_id)
                & (shadow_decisions.c.candidate_version == candidate_version),
            )
        if since is not None:
            query = query.where(decisions.c.created_at >= since)
        rows = list(connection.execute(query))
    if candidate_version is not None and not rows:
        raise LookupError(f"no answers of shadow candidate {candidate_version} beside model {model_version}'s")
    return outcomes_of(model_version, candidate_version, rows)


def outcomes_of(model_version: int, candidate_version: int | None, rows: list[Any]) -> Outcomes:
    """Sort the rows (oldest first) into the strata; items with any reason but low_confidence stay
    in review whatever the threshold and count only in the review share."""
    collected: dict[str, tuple[list[float], list[float], list[bool]]] = {name: ([], [], []) for name in STRATA}
    counted = without = 0
    for row in rows:
        if row.season_confidence is None:
            without += 1
            continue
        counted += 1
        if set(row.review_reasons) - {str(Reason.LOW_CONFIDENCE)}:
            continue
        name = "review" if row.needs_review else "sorted"
        confidence, verdict_confidence, verdict_wrong = collected[name]
        confidence.append(row.season_confidence)
        # A sorted item reviewed outside the audit sample was picked for a reason (a complaint, a
        # spot check of a suspect bin): only the random draw speaks for the stratum.
        if row.true_season is not None and (row.audit or name == "review"):
            verdict_confidence.append(row.season_confidence)
            verdict_wrong.append(row.true_season != row.season)
    strata = {
        name: Stratum(np.array(c, dtype=np.float64), np.array(vc, dtype=np.float64), np.array(vw, dtype=bool))
        for name, (c, vc, vw) in collected.items()
    }
    latest = None
    if candidate_version is None:
        latest = next((row.review_threshold for row in reversed(rows) if row.season_confidence is not None), None)
    return Outcomes(model_version, candidate_version, counted, without, strata, latest)


GRID = (0.5, 0.7, 0.8, 0.85, 0.9, 0.95, 0.97, 0.99)  # thresholds shown beside the chosen ones


def report(outcomes: Outcomes, targets: tuple[float, ...]) -> dict[str, Any]:
    """Counts, the curve at the threshold in force and a grid, and the lowest threshold per target."""
    chosen = [
        {
            "target": target,
            "estimate": _point(lowest_threshold(outcomes, target, bound=False)),
            "bound": _point(lowest_threshold(outcomes, target, bound=True)),
        }
        for target in targets
    ]
    shown = {*GRID, *([] if outcomes.latest_threshold is None else [outcomes.latest_threshold])}
    return {
        "model_version": outcomes.model_version,
        "candidate_version": outcomes.candidate_version,
        "decisions": outcomes.decisions,
        "without_confidence": outcomes.without_confidence,
        "strata": {
            name: {
                "items": len(s.confidence),
                "verdicts": len(s.verdict_confidence),
                "wrong": int(s.verdict_wrong.sum()),
            }
            for name, s in outcomes.strata.items()
        },
        "in_force": outcomes.latest_threshold,
        "curve": [_point(p) for p in curve(outcomes, np.array(sorted(shown)))],
        "chosen": chosen,
    }


def _point(point: Point | None) -> dict[str, Any] | None:
    return None if point is None else asdict(point)


def lines(found: dict[str, Any]) -> list[str]:
    """The report as text."""
    strata = found["strata"]
    whose = f"model version {found['model_version']}"
    if found["candidate_version"] is not None:
        whose = f"shadow candidate {found['candidate_version']} on {whose}'s decisions"
    left_out = found["without_confidence"]
    out = [
        f"{whose}: {found['decisions']:,} decisions"
        + (f" ({left_out:,} older ones without a season confidence left out)" if left_out else ""),
        (
            f"that can be sorted, with verdicts: {strata['sorted']['verdicts']:,} of {strata['sorted']['items']:,}"
            f" the live model sorted (its audit sample; {strata['sorted']['wrong']:,} in the wrong season),"
            f" {strata['review']['verdicts']:,} of {strata['review']['items']:,} it sent to review"
            f" ({strata['review']['wrong']:,} in the wrong season)"
        ),
        "",
        f"{'threshold':<17} {'review':>8} {'wrong bin':>11} {'wrong bin (95 % bound)':>24}",
    ]
    for point in found["curve"]:
        mark = " (in force)" if point["threshold"] == found["in_force"] else ""
        out.append(
            f"{point['threshold']:.4f}{mark:<11} {_share(point['review_share']):>8}"
            f" {_share(point['wrong_bin_share']):>11} {_share(point['wrong_bin_upper']):>24}"
        )
    out.append("")
    for row in found["chosen"]:
        out.append(
            f"wrong bin <= {100 * row['target']:.2f} %: lowest threshold {_threshold(row['estimate'])} on the"
            f" estimate, {_threshold(row['bound'])} on the 95 % bound"
        )
    return out


def _share(value: float | None) -> str:
    return "unknown" if value is None else f"{100 * value:.2f} %"


def _threshold(point: dict[str, Any] | None) -> str:
    if point is None:
        return "none (too few verdicts)"
    return f"{point['threshold']:.4f} (review {_share(point['review_share'])})"
