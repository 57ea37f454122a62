"""The default season map, read from the default policy file that the service also serves.

Calibration chooses the review threshold for this map, so it must be the service's own.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml

DEFAULT_POLICY_FILE = Path(__file__).resolve().parent / "policy.yaml"


@cache
def _default_seasons_section() -> dict[str, Any]:
    policy = yaml.safe_load(DEFAULT_POLICY_FILE.read_text(encoding="utf-8"))
    seasons: dict[str, Any] = policy["seasons"]
    return seasons


def default_season_of_class() -> dict[str, str]:
    """Class name -> season name, as the default policy file assigns them."""
    return {name: season for season, spec in _default_seasons_section().items() for name in spec["classes"]}


def default_seasons() -> tuple[str, ...]:
    """Season names in the default policy file's order."""
    return tuple(_default_seasons_section())
