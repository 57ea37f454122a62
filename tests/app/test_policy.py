"""The sorting policy: the default mapping, mass-based bins, the review threshold, zones by date
in both hemispheres, and every kind of invalid policy file refused with a message naming it."""

from __future__ import annotations

import copy
import datetime as dt
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from app.config import DEFAULT_POLICY_FILE
from app.policy import PolicyError, build_policy, load_policy
from app.reasons import Reason

CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
DEFAULT = yaml.safe_load(DEFAULT_POLICY_FILE.read_text())


def probabilities(**by_label: float) -> np.ndarray:
    row = np.zeros(len(CLASSES))
    for label, p in by_label.items():
        row[CLASSES.index(label.replace("_", " ").replace("T shirt", "T-shirt/top"))] = p
    assert abs(row.sum() - 1) < 1e-9
    return row


@pytest.fixture(scope="module")
def policy():
    return load_policy(DEFAULT_POLICY_FILE, CLASSES)


def test_default_policy_maps_each_class_to_its_season(policy):
    expected = {
        "T-shirt/top": "summer",
        "Dress": "summer",
        "Sandal": "summer",
        "Pullover": "winter",
        "Coat": "winter",
        "Ankle boot": "winter",
        "Trouser": "all-season",
        "Shirt": "all-season",
        "Sneaker": "all-season",
        "Bag": "all-season",
    }
    assert {c: policy.season_of_class(i).name for i, c in enumerate(CLASSES)} == expected
    assert {s.name: s.bin for s in policy.seasons} == {"summer": "BIN-S", "winter": "BIN-W", "all-season": "BIN-A"}
    assert policy.review_bin == "REVIEW"
    assert policy.review_threshold == 0.7 and policy.review_threshold_source == "policy file"
    assert policy.hemisphere == "northern"


def test_bin_follows_the_season_with_most_mass_not_the_top_class(policy):
    # Shirt (all-season) is the single most likely class, but summer holds more mass.
    row = probabilities(Shirt=0.26, T_shirt=0.25, Dress=0.25, Sandal=0.24)
    assert CLASSES[int(np.argmax(row))] == "Shirt"
    decision = policy.decide(row, dt.date(2025, 7, 1))
    assert (decision.season, decision.bin, decision.needs_review) == ("summer", "BIN-S", False)
    assert decision.season_mass == pytest.approx(0.74)


def test_review_when_largest_mass_is_below_threshold(policy):
    july = dt.date(2025, 7, 1)
    split = policy.decide(probabilities(Coat=0.5, Shirt=0.5), july)
    assert split.needs_review and split.bin == "REVIEW"
    assert split.season in ("winter", "all-season") and split.season_mass == pytest.approx(0.5)
    at_threshold = policy.decide(probabilities(Coat=0.7, Shirt=0.3), july)
    assert not at_threshold.needs_review and at_threshold.bin == "BIN-W"  # "below" is strict
    just_below = policy.decide(probabilities(Coat=0.69, Shirt=0.31), july)
    assert just_below.needs_review and just_below.bin == "REVIEW" and just_below.season == "winter"


def test_any_reason_sends_to_review_listed_in_the_stable_order(policy):
    july = dt.date(2025, 7, 1)
    confident = policy.decide(probabilities(Coat=1.0), july)
    assert (confident.needs_review, confident.reasons, confident.bin) == (False, (), "BIN-W")
    from_the_photo = policy.decide(probabilities(Coat=1.0), july, (Reason.UNFAMILIAR, Reason.CUT_OFF))
    assert from_the_photo.needs_review and from_the_photo.bin == "REVIEW" and from_the_photo.season == "winter"
    assert from_the_photo.reasons == (Reason.CUT_OFF, Reason.UNFAMILIAR)
    unsure_too = policy.decide(probabilities(Coat=0.5, Shirt=0.5), july, (Reason.UNFAMILIAR,))
    assert unsure_too.reasons == (Reason.LOW_CONFIDENCE, Reason.UNFAMILIAR)
    assert policy.decide(probabilities(Coat=0.5, Shirt=0.5), july).reasons == (Reason.LOW_CONFIDENCE,)


def test_review_threshold_precedence():
    from_file = build_policy(DEFAULT, CLASSES)
    assert (from_file.review_threshold, from_file.review_threshold_source) == (0.7, "policy file")
    from_model = build_policy(DEFAULT, CLASSES, metadata_review_threshold=0.55)
    assert (from_model.review_threshold, from_model.review_threshold_source) == (0.55, "model metadata")
    overridden = build_policy(DEFAULT, CLASSES, metadata_review_threshold=0.55, review_threshold_override=0.9)
    assert (overridden.review_threshold, overridden.review_threshold_source) == (0.9, "setting SORTER_REVIEW_THRESHOLD")
    without = {k: v for k, v in DEFAULT.items() if k != "review_threshold"}
    assert build_policy(without, CLASSES, metadata_review_threshold=0.6).review_threshold == 0.6
    with pytest.raises(PolicyError, match="review_threshold is required"):
        build_policy(without, CLASSES)


@pytest.mark.parametrize(
    ("hemisphere", "date", "current", "zones"),
    [
        # northern: summer April-September, winter October-March
        ("northern", "2025-04-01", "summer", {"summer": "forward", "winter": "reserve", "all-season": "forward"}),
        ("northern", "2025-09-30", "summer", {"summer": "forward", "winter": "reserve", "all-season": "forward"}),
        ("northern", "2025-10-01", "winter", {"summer": "reserve", "winter": "forward", "all-season": "forward"}),
        ("northern", "2026-03-31", "winter", {"summer": "reserve", "winter": "forward", "all-season": "forward"}),
        # southern: the same months shifted by six
        ("southern", "2025-01-15", "summer", {"summer": "forward", "winter": "reserve", "all-season": "forward"}),
        ("southern", "2025-03-31", "summer", {"summer": "forward", "winter": "reserve", "all-season": "forward"}),
        ("southern", "2025-04-01", "winter", {"summer": "reserve", "winter": "forward", "all-season": "forward"}),
        ("southern", "2025-07-01", "winter", {"summer": "reserve", "winter": "forward", "all-season": "forward"}),
        ("southern", "2025-10-01", "summer", {"summer": "forward", "winter": "reserve", "all-season": "forward"}),
    ],
)
def test_zones_by_date_and_hemisphere(hemisphere, date, current, zones):
    policy = build_policy(DEFAULT, CLASSES, hemisphere_override=hemisphere)
    on = dt.date.fromisoformat(date)
    assert policy.current_season(on).name == current
    representative = {"summer": "Dress", "winter": "Coat", "all-season": "Bag"}
    for season, label in representative.items():
        decision = policy.decide(probabilities(**{label: 1.0}), on)
        assert (decision.season, decision.zone) == (season, zones[season])


def test_hemisphere_from_the_file_and_described_months():
    southern = build_policy({**DEFAULT, "hemisphere": "southern"}, CLASSES)
    described = {s["name"]: s["months"] for s in southern.describe(dt.date(2025, 1, 1))["seasons"]}
    assert described == {"summer": [1, 2, 3, 10, 11, 12], "winter": [4, 5, 6, 7, 8, 9], "all-season": []}


def _without_class(doc, season, cls):
    doc["seasons"][season]["classes"].remove(cls)
    return doc


INVALID = {
    "class mapped twice": (
        lambda d: d["seasons"]["winter"]["classes"].append("Shirt") or d,
        "class 'Shirt' is mapped more than once ('winter' and 'all-season')",
    ),
    "class not mapped": (lambda d: _without_class(d, "all-season", "Bag"), "class(es) ['Bag'] are not mapped"),
    "unknown class": (
        lambda d: d["seasons"]["summer"]["classes"].append("Swimsuit") or d,
        "season 'summer': unknown class 'Swimsuit'",
    ),
    "season without bin": (lambda d: d["seasons"]["winter"].pop("bin") and d, "season 'winter' has no bin"),
    "empty bin": (lambda d: d["seasons"]["winter"].update(bin="  ") or d, "season 'winter' has no bin"),
    "shared bin": (
        lambda d: d["seasons"]["winter"].update(bin="BIN-S") or d,
        "bin code(s) ['BIN-S'] are used more than once",
    ),
    "review bin reused": (lambda d: d.update(review_bin="BIN-A") or d, "bin code(s) ['BIN-A']"),
    "no review bin": (lambda d: d.pop("review_bin") and d, "review_bin must be a non-empty string"),
    "month twice": (
        lambda d: d["seasons"]["winter"]["months"].append(4) or d,
        "month 4 belongs to two seasons ('summer' and 'winter')",
    ),
    "month missing": (lambda d: d["seasons"]["winter"]["months"].remove(1) or d, "month(s) [1] belong to no season"),
    "month out of range": (
        lambda d: d["seasons"]["winter"]["months"].append(13) or d,
        "season 'winter': months must be a list of integers 1..12",
    ),
    "bad hemisphere": (lambda d: d.update(hemisphere="eastern") or d, "hemisphere must be 'northern' or 'southern'"),
    "threshold above 1": (lambda d: d.update(review_threshold=1.5) or d, "review_threshold must be a number in [0, 1]"),
    "threshold text": (lambda d: d.update(review_threshold="high") or d, "review_threshold must be a number"),
    "unknown top-level key": (lambda d: d.update(bins={}) or d, "unknown key(s) ['bins']"),
    "unknown season key": (
        lambda d: d["seasons"]["summer"].update(colour="red") or d,
        "season 'summer' has unknown key(s) ['colour']",
    ),
    "no seasons": (lambda d: d.update(seasons={}) or d, "seasons must be a non-empty mapping"),
    "classes not a list": (
        lambda d: d["seasons"]["summer"].update(classes="Dress") or d,
        "season 'summer': classes must be a list",
    ),
}


@pytest.mark.parametrize("case", INVALID)
def test_invalid_policy_files_are_refused_with_the_problem_named(case, tmp_path: Path):
    mutate, message = INVALID[case]
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(mutate(copy.deepcopy(DEFAULT)), sort_keys=False))
    with pytest.raises(PolicyError, match=re.escape(message)) as caught:
        load_policy(path, CLASSES)
    assert str(caught.value).startswith(f"policy file {path}: ")


def test_unreadable_and_malformed_files(tmp_path: Path):
    missing = tmp_path / "absent.yaml"
    with pytest.raises(PolicyError, match=f"policy file {missing}: cannot be read"):
        load_policy(missing, CLASSES)
    broken = tmp_path / "broken.yaml"
    broken.write_text("seasons: [unclosed\n")
    with pytest.raises(PolicyError, match=f"policy file {broken}: not valid YAML"):
        load_policy(broken, CLASSES)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("just text\n")
    with pytest.raises(PolicyError, match="expected a mapping at the top level"):
        load_policy(scalar, CLASSES)


def test_a_custom_policy_with_four_seasons(tmp_path: Path):
    doc = {
        "review_bin": "R",
        "review_threshold": 0.5,
        "seasons": {
            "spring": {"bin": "SP", "months": [3, 4, 5], "classes": ["Shirt", "Trouser"]},
            "summer": {"bin": "SU", "months": [6, 7, 8], "classes": ["T-shirt/top", "Dress", "Sandal"]},
            "autumn": {"bin": "AU", "months": [9, 10, 11], "classes": ["Pullover", "Sneaker"]},
            "winter": {"bin": "WI", "months": [12, 1, 2], "classes": ["Coat", "Ankle boot", "Bag"]},
        },
    }
    policy = build_policy(doc, CLASSES)
    decision = policy.decide(probabilities(Pullover=0.3, Sneaker=0.3, Coat=0.4), dt.date(2025, 10, 15))
    assert (decision.season, decision.bin, decision.zone) == ("autumn", "AU", "forward")
    assert policy.decide(probabilities(Coat=1.0), dt.date(2025, 10, 15)).zone == "reserve"
