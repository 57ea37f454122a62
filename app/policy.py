"""The sorting policy: class -> season -> bin, the review bin, and forward/reserve zones by date.

The bin follows the season with the largest probability mass (the sum of its classes'
probabilities), not the single top class: a T-shirt/Dress confusion still lands in the summer bin.
An item whose largest season mass is below the review threshold goes to the review bin.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml

from app.config import Settings
from app.reasons import Reason

Hemisphere = Literal["northern", "southern"]
TOP_LEVEL_KEYS = {"hemisphere", "review_bin", "review_threshold", "seasons"}
SEASON_KEYS = {"bin", "classes", "months"}


class PolicyError(ValueError):
    """The policy file is invalid; the message names the file and the problem."""


@dataclass(frozen=True)
class Season:
    name: str
    bin: str
    classes: tuple[str, ...]
    months: tuple[int, ...]  # northern-hemisphere months; empty: all-season

    @property
    def all_season(self) -> bool:
        return not self.months


@dataclass(frozen=True)
class Decision:
    season: str
    bin: str
    zone: Literal["forward", "reserve"]
    needs_review: bool
    season_mass: float
    reasons: tuple[Reason, ...] = ()  # why it needs review; empty exactly when it does not


@dataclass(frozen=True)
class Policy:
    seasons: tuple[Season, ...]
    review_bin: str
    review_threshold: float
    review_threshold_source: str
    hemisphere: Hemisphere
    class_names: tuple[str, ...]
    source: str
    # (classes, seasons) 0/1 matrix: probabilities @ membership = mass per season.
    membership: np.ndarray = field(repr=False, compare=False)
    _month_to_season: tuple[int | None, ...] = field(repr=False, compare=False)

    @functools.cached_property
    def version(self) -> str:
        """A hash of everything that decides a bin (seasons, bins, months, review bin and
        threshold, hemisphere): decisions made under different policies never share it."""
        deciding = {
            "seasons": [[s.name, s.bin, list(s.classes), list(s.months)] for s in self.seasons],
            "review_bin": self.review_bin,
            "review_threshold": self.review_threshold,
            "hemisphere": self.hemisphere,
        }
        return hashlib.sha256(json.dumps(deciding, sort_keys=True).encode()).hexdigest()[:12]

    def season_of_class(self, class_id: int) -> Season:
        return self.seasons[int(np.argmax(self.membership[class_id]))]

    def current_season(self, on: dt.date) -> Season | None:
        """The season (with months) stocked forward on that date in the configured hemisphere."""
        month = on.month if self.hemisphere == "northern" else (on.month + 5) % 12 + 1
        index = self._month_to_season[month - 1]
        return None if index is None else self.seasons[index]

    def season_masses(self, probabilities: np.ndarray) -> np.ndarray:
        """(N, classes) probabilities -> (N, seasons) probability mass per season."""
        masses: np.ndarray = probabilities @ self.membership
        return masses

    def decide_index(self, season_index: int, mass: float, on: dt.date, reasons: tuple[Reason, ...] = ()) -> Decision:
        """The bin for the best season; ``reasons`` (from the photo, the model) send it to review too."""
        season = self.seasons[season_index]
        reasons = Reason.ordered({*reasons, Reason.LOW_CONFIDENCE} if mass < self.review_threshold else set(reasons))
        needs_review = bool(reasons)
        current = self.current_season(on)
        forward = season.all_season or (current is not None and current.name == season.name)
        return Decision(
            season=season.name,
            bin=self.review_bin if needs_review else season.bin,
            zone="forward" if forward else "reserve",
            needs_review=needs_review,
            season_mass=mass,
            reasons=reasons,
        )

    def place(self, class_id: int, on: dt.date) -> Decision:
        """Where a garment known to be ``class_id`` goes (a reviewer's verdict): its season's bin."""
        season = self.season_of_class(class_id)
        return self.decide_index(self.seasons.index(season), 1.0, on)

    def decide(
        self, probabilities: Sequence[float] | np.ndarray, on: dt.date, reasons: tuple[Reason, ...] = ()
    ) -> Decision:
        masses = self.season_masses(np.asarray(probabilities, dtype=np.float64)[None, :])[0]
        index = int(np.argmax(masses))
        return self.decide_index(index, float(masses[index]), on, reasons)

    @property
    def bins(self) -> tuple[str, ...]:
        return (*(s.bin for s in self.seasons), self.review_bin)

    def describe(self, on: dt.date) -> dict[str, Any]:
        current = self.current_season(on)
        shift = 0 if self.hemisphere == "northern" else 6
        return {
            "source": self.source,
            "version": self.version,
            "hemisphere": self.hemisphere,
            "review_bin": self.review_bin,
            "review_threshold": self.review_threshold,
            "review_threshold_source": self.review_threshold_source,
            "current_season": current.name if current else None,
            "as_of": on.isoformat(),
            "seasons": [
                {
                    "name": s.name,
                    "bin": s.bin,
                    "classes": list(s.classes),
                    "all_season": s.all_season,
                    "months": sorted((m - 1 + shift) % 12 + 1 for m in s.months),
                }
                for s in self.seasons
            ],
        }


def _fail(source: str, message: str) -> PolicyError:
    return PolicyError(f"policy file {source}: {message}")


def build_policy(
    raw: Any,
    class_names: Sequence[str],
    *,
    source: str = "<memory>",
    metadata_review_threshold: float | None = None,
    review_threshold_override: float | None = None,
    hemisphere_override: str | None = None,
) -> Policy:
    """Validate a parsed policy document against the model's classes; raise PolicyError."""
    if not isinstance(raw, dict):
        raise _fail(source, "expected a mapping at the top level")
    unknown = set(raw) - TOP_LEVEL_KEYS
    if unknown:
        raise _fail(source, f"unknown key(s) {sorted(unknown)}; allowed: {sorted(TOP_LEVEL_KEYS)}")
    hemisphere = _hemisphere(hemisphere_override or raw.get("hemisphere", "northern"), source)
    review_bin = raw.get("review_bin")
    if not isinstance(review_bin, str) or not review_bin.strip():
        raise _fail(source, "review_bin must be a non-empty string")
    threshold, threshold_source = _review_threshold(
        raw.get("review_threshold"), metadata_review_threshold, review_threshold_override, source
    )
    seasons = _seasons(raw.get("seasons"), class_names, source)
    _check_bins(seasons, review_bin, source)
    month_to_season = tuple(next((j for j, s in enumerate(seasons) if m in s.months), None) for m in range(1, 13))
    return Policy(
        seasons=seasons,
        review_bin=review_bin,
        review_threshold=threshold,
        review_threshold_source=threshold_source,
        hemisphere=hemisphere,
        class_names=tuple(class_names),
        source=source,
        membership=_membership(seasons, class_names),
        _month_to_season=month_to_season,
    )


def _hemisphere(value: object, source: str) -> Hemisphere:
    if value == "northern" or value == "southern":
        return value
    raise _fail(source, f"hemisphere must be 'northern' or 'southern', not {value!r}")


def _review_threshold(
    file_threshold: object, metadata_threshold: float | None, override: float | None, source: str
) -> tuple[float, str]:
    """The threshold in force and where it came from: the setting, else the model, else the file."""
    if file_threshold is not None and (
        isinstance(file_threshold, bool) or not isinstance(file_threshold, int | float) or not 0 <= file_threshold <= 1
    ):
        raise _fail(source, f"review_threshold must be a number in [0, 1], not {file_threshold!r}")
    if override is not None:
        threshold, threshold_source = float(override), "setting SORTER_REVIEW_THRESHOLD"
    elif metadata_threshold is not None:
        threshold, threshold_source = float(metadata_threshold), "model metadata"
    elif file_threshold is not None:
        threshold, threshold_source = float(file_threshold), "policy file"
    else:
        raise _fail(source, "review_threshold is required when the model's metadata has none")
    if not 0 <= threshold <= 1:
        raise _fail(source, f"review threshold {threshold} ({threshold_source}) is outside [0, 1]")
    return threshold, threshold_source


def _seasons(seasons_raw: object, class_names: Sequence[str], source: str) -> tuple[Season, ...]:
    """Every season, each class in exactly one, each month (if any has months) in exactly one."""
    if not isinstance(seasons_raw, dict) or not seasons_raw:
        raise _fail(source, "seasons must be a non-empty mapping of season name -> {bin, classes, months}")
    owner: dict[str, str] = {}
    month_owner: dict[int, str] = {}
    seasons = []
    for name, spec in seasons_raw.items():
        season = _season(str(name), spec, class_names, source)
        for cls in season.classes:
            if cls in owner:
                raise _fail(source, f"class {cls!r} is mapped more than once ({owner[cls]!r} and {season.name!r})")
            owner[cls] = season.name
        for month in season.months:
            if month in month_owner:
                raise _fail(
                    source, f"month {month} belongs to two seasons ({month_owner[month]!r} and {season.name!r})"
                )
            month_owner[month] = season.name
        seasons.append(season)
    missing = [c for c in class_names if c not in owner]
    if missing:
        raise _fail(source, f"class(es) {missing} are not mapped to any season")
    if month_owner and len(month_owner) != 12:
        uncovered = sorted(set(range(1, 13)) - set(month_owner))
        raise _fail(source, f"month(s) {uncovered} belong to no season")
    return tuple(seasons)


def _season(name: str, spec: object, class_names: Sequence[str], source: str) -> Season:
    if not isinstance(spec, dict):
        raise _fail(source, f"season {name!r} must be a mapping with bin, classes and optional months")
    extra = set(spec) - SEASON_KEYS
    if extra:
        raise _fail(source, f"season {name!r} has unknown key(s) {sorted(extra)}")
    bin_code = spec.get("bin")
    if not isinstance(bin_code, str) or not bin_code.strip():
        raise _fail(source, f"season {name!r} has no bin")
    classes = spec.get("classes")
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise _fail(source, f"season {name!r}: classes must be a list of class names")
    for cls in classes:
        if cls not in class_names:
            raise _fail(source, f"season {name!r}: unknown class {cls!r}; the model's classes are {list(class_names)}")
    months = spec.get("months", [])
    if not isinstance(months, list) or not all(
        isinstance(m, int) and not isinstance(m, bool) and 1 <= m <= 12 for m in months
    ):
        raise _fail(source, f"season {name!r}: months must be a list of integers 1..12")
    return Season(name, bin_code, tuple(classes), tuple(months))


def _check_bins(seasons: Sequence[Season], review_bin: str, source: str) -> None:
    bins = [s.bin for s in seasons] + [review_bin]
    duplicates = sorted({b for b in bins if bins.count(b) > 1})
    if duplicates:
        raise _fail(source, f"bin code(s) {duplicates} are used more than once (seasons and review_bin need their own)")


def _membership(seasons: Sequence[Season], class_names: Sequence[str]) -> np.ndarray:
    membership = np.zeros((len(class_names), len(seasons)), dtype=np.float64)
    for j, season in enumerate(seasons):
        for cls in season.classes:
            membership[list(class_names).index(cls), j] = 1.0
    return membership


def load_policy(path: Path, class_names: Sequence[str], **kwargs: Any) -> Policy:
    """Read and validate a YAML policy file; raise PolicyError naming the file and the problem."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(f"policy file {source}: cannot be read ({exc.strerror or exc})") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PolicyError(f"policy file {source}: not valid YAML ({exc})") from None
    return build_policy(raw, class_names, source=source, **kwargs)


def load_policy_for(settings: Settings, class_names: Sequence[str], metadata_review_threshold: float | None) -> Policy:
    """The policy the settings ask for (file, threshold and hemisphere overrides) for a model's classes."""
    return load_policy(
        settings.policy_file,
        class_names,
        metadata_review_threshold=metadata_review_threshold,
        review_threshold_override=settings.review_threshold,
        hemisphere_override=settings.hemisphere,
    )
