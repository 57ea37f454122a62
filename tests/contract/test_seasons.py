"""The default season map is the default policy file's, the one the service serves."""

from __future__ import annotations

import yaml

from contract.classes import CLASS_NAMES
from contract.seasons import DEFAULT_POLICY_FILE, default_season_of_class, default_seasons


def test_every_class_has_exactly_one_default_season():
    season_of_class = default_season_of_class()
    assert sorted(season_of_class) == sorted(CLASS_NAMES)
    assert default_seasons() == ("summer", "winter", "all-season")
    assert season_of_class["Coat"] == "winter" and season_of_class["Sandal"] == "summer"
    assert season_of_class["Bag"] == "all-season"


def test_the_map_is_read_from_the_policy_file():
    policy = yaml.safe_load(DEFAULT_POLICY_FILE.read_text())
    listed = [name for spec in policy["seasons"].values() for name in spec["classes"]]
    assert len(listed) == len(set(listed)) == len(CLASS_NAMES)
