"""bench.operating: review thresholds chosen on validation renders, reported on test renders."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bench.operating import Outcomes, check_held_out, choose, lowest_threshold, read_chosen, report, table


def outcomes(masses, right, held=None) -> Outcomes:
    mass = np.array(masses, float)
    return Outcomes(mass, np.array(right, bool), np.zeros(len(mass), bool) if held is None else np.array(held, bool))


# 10 photos each: wrong ones at masses 0.95 and 0.80 (grey), 0.99 (dark, but held for another reason).
GREY = outcomes([0.99, 0.98, 0.97, 0.95, 0.90, 0.85, 0.80, 0.70, 0.60, 0.50], [1, 1, 1, 0, 1, 1, 0, 1, 1, 1])
DARK = outcomes([0.99, 0.96, 0.90] + [0.99] * 7, [0, 1, 0] + [1] * 7, held=[1] + [0] * 9)


def test_a_threshold_sends_the_unsure_and_the_held_to_review():
    assert GREY.at(0.0) == (0.0, 0.2)
    assert GREY.at(0.85) == (0.4, 0.1)  # 0.80 down to 0.50 go to review; the wrong one at 0.95 stays sorted
    assert GREY.at(0.96) == (0.7, 0.0)
    assert DARK.at(0.0) == (0.1, 0.1)  # the held one is in review whatever the threshold


def test_the_lowest_threshold_meets_the_target_in_every_condition_and_no_lower_one_does():
    both = {"grey": GREY, "dark": DARK}
    # 10 % allows one wrong, sorted photo per condition: grey's at 0.80 must go, dark's one may stay.
    threshold = lowest_threshold(both, 0.10)
    assert threshold == np.nextafter(0.80, np.inf)
    assert all(found.at(threshold)[1] <= 0.10 for found in both.values())
    assert GREY.at(0.80)[1] == 0.2  # the one at exactly 0.80 is sorted: no lower threshold will do
    # None allowed: every wrong photo not already held goes, the highest (grey's 0.95) deciding.
    assert lowest_threshold(both, 0.0) == np.nextafter(0.95, np.inf)
    assert lowest_threshold(both, 0.5) == 0.0  # nothing needs to go


def test_chosen_thresholds_name_the_model_and_its_runs_and_are_read_back_for_its_full_train_twin(tmp_path):
    twin = {"version": 7, "validation_accuracy": 0.9559, "ensemble_members": [{"run": "runs/b"}, {"run": "runs/a"}]}
    chosen = choose({"grey": GREY}, "fashion-cnn v7 (bfloat16)", twin, per_class=1)
    assert chosen["runs"] == ["runs/a", "runs/b"]
    assert [t["target"] for t in chosen["thresholds"]] == [0.01, 0.0075, 0.005]
    path = tmp_path / "thresholds.json"
    path.write_text(json.dumps(chosen))
    full = {"version": 9, "validation_accuracy": None, "calibrated_by": {"runs": ["runs/b", "runs/a"]}}
    assert read_chosen(path, "fashion-cnn v9 (bfloat16)", full) == chosen
    assert read_chosen(path, "fashion-cnn v7 (bfloat16)", twin) == chosen
    stranger = {"version": 10, "validation_accuracy": 0.96, "calibrated_by": {"runs": ["runs/c"]}}
    assert read_chosen(path, "fashion-cnn v10 (bfloat16)", stranger) is None
    assert read_chosen(tmp_path / "missing.json", "fashion-cnn v7 (bfloat16)", twin) is None


def test_a_model_trained_on_the_validation_split_may_not_choose():
    with pytest.raises(SystemExit, match="version 9 was trained on the validation split"):
        check_held_out({"version": 9, "validation_accuracy": None})


def test_the_table_shows_the_shipped_row_first_and_the_worst_conditions():
    chosen = {"thresholds": [{"target": 0.01, "threshold": 0.96}], "chosen_on": "validation renders"}
    points = report({"grey": GREY, "dark": DARK}, chosen, shipped=0.85)
    lines = table(points, "validation renders")
    assert lines[-2:] == [
        "| 0.8500 | shipped | 40.0 % | 40.0 % (grey) | 10.00 % | 10.00 % (grey) | 2 of 2 |",
        "| 0.9600 | <= 1.00 % wrong bin | 70.0 % | 70.0 % (grey) | 0.00 % | 0.00 % (grey) | 0 of 2 |",
    ]
