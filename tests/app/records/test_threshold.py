"""The review threshold on the warehouse's own items: review and wrong-bin shares estimated per
stratum from the log's verdicts, the lowest threshold for a target, and the command that prints them."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pg_cluster import available, running_cluster
from test_dataset_export import review
from test_log import row

from app.records import queries, threshold
from app.records.database import connect, migrate
from app.records.schema import decisions, shadow_decisions

REPO = Path(__file__).resolve().parents[3]
DAY = dt.datetime(2026, 11, 20, tzinfo=dt.UTC)
SUMMER, WINTER = 0, 2  # class ids: T-shirt/top (summer), Pullover (winter)
Z = threshold.Z_ONE_SIDED_95


def decision(confidence: float | None, *, reasons: tuple[str, ...] = (), audit: bool = False, version: int = 9) -> dict:
    made = row(created_at=DAY)
    made.update(
        season_confidence=confidence,
        needs_review=bool(reasons),
        review_reasons=list(reasons),
        audit=audit,
        model_version=version,
        season="winter",
        review_threshold=0.92,
    )
    return made


def verdict(decision_id: str, season: str) -> dict:
    return {**review(decision_id, WINTER if season == "winter" else SUMMER, DAY), "season": season}


def build_log(url: str):
    """Model 9's decisions, every one of them saying winter, and what reviewers found:

    - sorted (no reason): 0.95 (audited: summer), 0.96, 0.97 (audited: winter), 0.98 (reviewed
      outside the audit sample: summer, which must not count), 0.99 (audited: winter), 0.995;
    - to review for low confidence alone: 0.6 (summer), 0.8 (first said summer, corrected to
      winter), 0.9 (not reviewed yet);
    - to review as unfamiliar at 0.99 (summer: stays in review whatever the threshold);
    - one recorded before season confidence was kept, and one of model 8 (both left out).
    """
    engine = connect(url)
    migrate(engine)
    made = {
        "v8": decision(0.5, reasons=("low_confidence",), version=8),  # the oldest: version 9 is the newest's
        "s95": decision(0.95, audit=True),
        "s96": decision(0.96),
        "s97": decision(0.97, audit=True),
        "s98": decision(0.98),
        "s99": decision(0.99, audit=True),
        "s995": decision(0.995),
        "l6": decision(0.6, reasons=("low_confidence",)),
        "l8": decision(0.8, reasons=("low_confidence",)),
        "l9": decision(0.9, reasons=("low_confidence",)),
        "u99": decision(0.99, reasons=("unfamiliar",)),
        "old": decision(None),
    }
    with engine.begin() as connection:
        connection.execute(decisions.insert(), list(made.values()))
    for name, season in [("s95", "summer"), ("s97", "winter"), ("s98", "summer"), ("s99", "winter")]:
        queries.add_review(engine, verdict(made[name]["decision_id"], season), None)
    for name, season in [("l6", "summer"), ("u99", "summer"), ("v8", "summer"), ("old", "summer")]:
        queries.add_review(engine, verdict(made[name]["decision_id"], season), None)
    first = queries.add_review(engine, verdict(made["l8"]["decision_id"], "summer"), None)
    queries.add_review(engine, verdict(made["l8"]["decision_id"], "winter"), first.review["review_id"])
    with engine.begin() as connection:
        connection.execute(
            shadow_decisions.insert(),
            [shadow(made[name]["decision_id"], *answer) for name, answer in CANDIDATE_ANSWERS.items()],
        )
    return engine


# Shadow candidate 10's answers (season, its mass, reasons) beside some of model 9's decisions; it
# answered none of s99, s995 and l9, and "old" before it kept the season.
CANDIDATE_ANSWERS = {
    "s95": ("summer", 0.9, ()),  # the audit verdict says summer: right where model 9 was wrong
    "s96": ("winter", 0.97, ()),
    "s97": ("winter", 0.6, ("low_confidence",)),  # audited winter: right
    "s98": ("winter", 0.99, ()),  # its verdict is outside the audit draw
    "l6": ("summer", 0.95, ()),  # reviewed summer: right
    "l8": ("summer", 0.85, ()),  # corrected to winter: wrong
    "u99": ("winter", 0.99, ()),  # model 9 found it unfamiliar, candidate 10 does not; reviewed summer: wrong
    "old": (None, None, ()),
}


def shadow(decision_id: str, season: str | None, confidence: float | None, reasons: tuple[str, ...]) -> dict:
    return {
        "decision_id": decision_id,
        "candidate_version": 10,
        "created_at": DAY,
        "class_id": 0,
        "label": "T-shirt/top",
        "confidence": 0.5,
        "season": season,
        "season_confidence": confidence,
        "bin": "REVIEW" if reasons else "BIN-S",
        "needs_review": bool(reasons),
        "review_reasons": list(reasons),
        "agrees_on_class": False,
        "agrees_on_bin": False,
    }


@pytest.fixture
def log(tmp_path):
    url = f"sqlite:///{tmp_path / 'decisions.db'}"
    engine = build_log(url)
    yield engine, url
    engine.dispose()


def test_strata_hold_the_random_verdicts_only(log):
    engine, _ = log
    outcomes = threshold.read_outcomes(engine)
    assert (outcomes.model_version, outcomes.decisions, outcomes.without_confidence) == (9, 10, 1)
    assert outcomes.latest_threshold == 0.92
    sorted_items, low = outcomes.strata["sorted"], outcomes.strata["review"]
    assert sorted_items.confidence.tolist() == [0.95, 0.96, 0.97, 0.98, 0.99, 0.995]
    assert sorted_items.verdict_confidence.tolist() == [0.95, 0.97, 0.99]  # not 0.98: outside the audit draw
    assert sorted_items.verdict_wrong.tolist() == [True, False, False]
    assert low.confidence.tolist() == [0.6, 0.8, 0.9]
    assert (low.verdict_confidence.tolist(), low.verdict_wrong.tolist()) == ([0.6, 0.8], [True, False])


def test_shares_at_a_threshold_scale_each_strata_verdicts_to_its_count(log):
    outcomes = threshold.read_outcomes(log[0])
    in_force = threshold.at(outcomes, 0.92)  # 6 sorted items, 1 of 3 audited wrong -> 2 wrong of 10
    assert (in_force.review_share, in_force.wrong_bin_share) == pytest.approx((0.4, 0.2))
    upper_1_of_3 = threshold.wilson_upper(np.array([1]), np.array([3]))[0]
    assert in_force.wrong_bin_upper == pytest.approx(6 * upper_1_of_3 / 10)
    lower = threshold.at(outcomes, 0.5)  # + 3 low-confidence items, 1 of 2 reviewed wrong -> 1.5 wrong
    assert (lower.review_share, lower.wrong_bin_share) == pytest.approx((0.1, 0.35))
    unknown = threshold.at(outcomes, 0.85)  # the 0.9 item has no verdict at or above 0.85
    assert unknown.wrong_bin_share is None
    assert unknown.wrong_bin_upper == pytest.approx((6 * upper_1_of_3 + 1.0) / 10)


def test_a_shadow_candidate_is_measured_by_its_own_answers_on_the_live_strata(log):
    outcomes = threshold.read_outcomes(log[0], candidate_version=10)
    assert (outcomes.model_version, outcomes.candidate_version) == (9, 10)
    assert (outcomes.decisions, outcomes.without_confidence, outcomes.latest_threshold) == (7, 1, None)
    sorted_items, review = outcomes.strata["sorted"], outcomes.strata["review"]
    assert sorted_items.confidence.tolist() == [0.9, 0.97, 0.6, 0.99]
    assert (sorted_items.verdict_confidence.tolist(), sorted_items.verdict_wrong.tolist()) == ([0.9, 0.6], [False] * 2)
    assert review.confidence.tolist() == [0.95, 0.85, 0.99]
    assert review.verdict_wrong.tolist() == [False, True, True]
    # At 0.9: 3 sorted-stratum items (1 verdict, right) and 2 review-stratum ones (both judged, 1 wrong).
    point = threshold.at(outcomes, 0.9)
    assert (point.review_share, point.wrong_bin_share) == pytest.approx((2 / 7, 1 / 7))
    assert threshold.at(outcomes, 0.96).wrong_bin_share is None  # 0.97 and 0.99 have no verdict at or above
    with pytest.raises(LookupError):
        threshold.read_outcomes(log[0], candidate_version=11)


def test_wilson_bound_with_nothing_wrong_is_z2_over_n_plus_z2():
    bounds = threshold.wilson_upper(np.array([0, 0, 0]), np.array([0, 1, 2]))
    assert bounds.tolist() == pytest.approx([1.0, Z * Z / (1 + Z * Z), Z * Z / (2 + Z * Z)])


def test_lowest_threshold_reviews_the_least_that_meets_the_target(log):
    outcomes = threshold.read_outcomes(log[0])
    on_estimate = threshold.lowest_threshold(outcomes, 0.1, bound=False)
    assert on_estimate is not None
    assert (on_estimate.threshold, on_estimate.review_share, on_estimate.wrong_bin_share) == pytest.approx(
        (0.96, 0.5, 0.0)
    )
    # With the bound: 0.96 keeps 5 sorted items on 2 verdicts (0.29 > 0.25); 0.97 keeps 4 (0.23).
    on_bound = threshold.lowest_threshold(outcomes, 0.25, bound=True)
    assert on_bound is not None and on_bound.threshold == pytest.approx(0.97)
    assert on_bound.wrong_bin_upper == pytest.approx(4 * Z * Z / (2 + Z * Z) / 10)
    assert threshold.at(outcomes, 0.96).wrong_bin_upper > 0.25
    everything = threshold.lowest_threshold(outcomes, 0.0, bound=True)  # only reviewing all reaches zero
    assert everything is not None and (everything.threshold, everything.review_share) == (1.0, 1.0)


@pytest.mark.skipif(not available(), reason="PostgreSQL binaries not installed (apt-get install postgresql)")
def test_postgresql_gives_the_same_report(log):
    with running_cluster() as cluster:
        engine = build_log(cluster.url)
        on_postgresql = threshold.report(threshold.read_outcomes(engine), (0.1, 0.25))
        engine.dispose()
    assert on_postgresql == threshold.report(threshold.read_outcomes(log[0]), (0.1, 0.25))


def test_an_empty_log_is_an_error_not_a_report(tmp_path):
    engine = connect(f"sqlite:///{tmp_path / 'empty.db'}")
    migrate(engine)
    with pytest.raises(LookupError):
        threshold.read_outcomes(engine)
    engine.dispose()


def cli(*args: str, url: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", "review-threshold", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env={**os.environ, "SORTER_DATABASE_URL": url},
    )


def test_the_command_reports_the_curve_and_the_chosen_thresholds(log):
    _, url = log
    done = cli("--json", "--target", "0.1", "--target", "0.25", url=url)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found["strata"] == {
        "sorted": {"items": 6, "verdicts": 3, "wrong": 1},
        "review": {"items": 3, "verdicts": 2, "wrong": 1},
    }
    in_force = next(p for p in found["curve"] if p["threshold"] == 0.92)
    assert (in_force["review_share"], in_force["wrong_bin_share"]) == pytest.approx((0.4, 0.2))
    assert [(c["target"], c["estimate"]["threshold"]) for c in found["chosen"]] == [(0.1, 0.96), (0.25, 0.8)]
    assert found["chosen"][1]["bound"]["threshold"] == pytest.approx(0.97)
    text = cli("--target", "0.1", url=url)
    assert text.returncode == 0, text.stderr
    assert "0.9200 (in force)" in text.stdout
    assert "wrong bin <= 10.00 %: lowest threshold 0.9600 (review 50.00 %) on the estimate" in text.stdout
    candidate = cli("--candidate", "10", url=url)
    assert candidate.returncode == 0, candidate.stderr
    assert candidate.stdout.startswith("shadow candidate 10 on model version 9's decisions: 7 decisions")
    refused = cli("--target", "1.5", url=url)
    assert refused.returncode == 2 and "expected a share between 0 and 1" in refused.stderr


THRESHOLDS = np.array([0.8, 0.92, 0.97])


def simulated_line(seed: int, items: int = 20_000, live: float = 0.92) -> tuple[threshold.Outcomes, np.ndarray]:
    """A line whose truth is known: season confidences, wrong items about as often as they say,
    a 1 % audit of what the live threshold sorted and 60 % of its review queue judged; with the
    true wrong-bin share at each of THRESHOLDS."""
    rng = np.random.default_rng(seed)
    confidence = 1 - rng.beta(0.6, 8, items)
    wrong = rng.random(items) < 0.8 * (1 - confidence)
    sorted_live = confidence >= live
    judged = np.where(sorted_live, rng.random(items) < 0.01, rng.random(items) < 0.6)
    strata = {
        name: threshold.Stratum(confidence[members], confidence[members & judged], wrong[members & judged])
        for name, members in (("sorted", sorted_live), ("review", ~sorted_live))
    }
    truth = np.array([np.mean(wrong & (confidence >= t)) for t in THRESHOLDS])
    return threshold.Outcomes(9, None, items, 0, strata, live), truth


def test_on_a_simulated_line_the_estimate_is_unbiased_and_the_bound_covers_the_truth():
    estimates, bounds, truths = [], [], []
    for seed in range(200):
        outcomes, truth = simulated_line(seed)
        points = threshold.curve(outcomes, THRESHOLDS)
        estimates.append([p.wrong_bin_share for p in points])
        bounds.append([p.wrong_bin_upper for p in points])
        truths.append(truth)
    estimate, bound, truth = np.array(estimates), np.array(bounds), np.array(truths)
    assert np.abs(estimate.mean(axis=0) / truth.mean(axis=0) - 1).max() < 0.03  # unbiased, to 3 %
    assert ((bound >= truth).mean(axis=0) >= 0.95).all()  # a one-sided 95 % bound, per threshold
