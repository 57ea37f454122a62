"""``metadata.json``, written beside every exported SavedModel: export writes it, the service validates it.

The fields the service acts on are typed and checked here; the figures a run adds (training
settings, per-member accuracies, calibration reports) ride along as extra fields, kept as written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, ValidationError, field_validator

from contract.classes import NUM_CLASSES
from contract.signature import INPUT_DTYPE, INPUT_NAME, INPUT_SHAPE, PRECISIONS, SIGNATURE

METADATA_FILE = "metadata.json"

Number = StrictFloat  # any JSON number; booleans and strings are refused
Probability = Annotated[Number, Field(ge=0, le=1)]
NetworkCount = Annotated[StrictInt, Field(ge=0)]


class MetadataError(ValueError):
    """metadata.json is missing, unreadable or breaks the contract; the message names the file."""


class InputSpec(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str = INPUT_NAME
    dtype: str = INPUT_DTYPE
    shape: list[int | None] = Field(default_factory=lambda: list(INPUT_SHAPE))


class CalibratedBy(BaseModel):
    """The held-out twin whose temperature and review threshold a full-train model serves."""

    model_config = ConfigDict(extra="allow")

    runs: list[str]


class Unfamiliar(BaseModel):
    """The threshold on the `unfamiliar` score (contract.unfamiliar) and where it was chosen."""

    model_config = ConfigDict(extra="allow")

    score: Literal["energy"]
    threshold: Number
    trip_rate: Probability  # the share of the clean images it was calibrated on that trip it
    calibrated_on: str  # which images, through which export (the held-out twin for a full-train model)


class SortingFigures(BaseModel):
    """One precision's review threshold and the sorting figures it gives on each split."""

    model_config = ConfigDict(extra="allow")

    review_threshold: Probability | None = None


class ModelMetadata(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True, protected_namespaces=())

    name: str = "fashion-cnn"
    version: StrictInt | None = None
    architecture: str | None = None
    params: StrictInt | None = None
    class_names: tuple[str, ...]
    ensemble_size: NetworkCount = 1
    unsure_members: NetworkCount = 0
    input: InputSpec = Field(default_factory=InputSpec)
    signature: str = SIGNATURE
    # precision -> signature name; versions from before the bfloat16 export have float32 only
    signatures: dict[str, str] = Field(default_factory=lambda: {"float32": SIGNATURE})
    temperature: Annotated[Number, Field(gt=0)] | None = None
    review_threshold: Probability | None = None
    tta_flip: StrictBool = False
    flip_below: Annotated[Number, Field(gt=0, le=1)] | None = None
    calibrated_by: CalibratedBy | None = None
    unfamiliar: Unfamiliar | None = None
    validation_accuracy: Number | None = None
    test_accuracy: Number | None = None
    accuracy_by_precision: dict[str, dict[str, Number | None]] = Field(default_factory=dict)
    sorting_by_precision: dict[str, SortingFigures] = Field(default_factory=dict)
    git_commit: str | None = None
    created_at: str | None = None

    @field_validator("class_names")
    @classmethod
    def _ten_distinct_names(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        if len(names) != NUM_CLASSES or not all(names):
            raise ValueError(f"class_names must list the {NUM_CLASSES} class names")
        if len(set(names)) != len(names):
            raise ValueError("class_names has duplicates")
        return names

    def exported_signatures(self) -> dict[str, str]:
        """precision -> signature name, for the precisions this contract knows."""
        known = {precision: name for precision, name in self.signatures.items() if precision in PRECISIONS}
        return known or {"float32": SIGNATURE}

    def review_threshold_for(self, precision: str | None) -> float | None:
        """The threshold chosen for a precision's own outputs where the export recorded one
        (bfloat16 answers differ slightly from float32), else the model's."""
        sorting = self.sorting_by_precision.get(precision) if precision else None
        if sorting is not None and sorting.review_threshold is not None:
            return float(sorting.review_threshold)
        return None if self.review_threshold is None else float(self.review_threshold)

    def accuracy_for(self, precision: str | None) -> dict[str, float | None]:
        """Accuracy of a precision's signature as the export measured it, else the run's."""
        measured = self.accuracy_by_precision.get(precision) if precision else None
        if measured is not None:
            return {"validation": measured.get("validation"), "test": measured.get("test")}
        return {"validation": self.validation_accuracy, "test": self.test_accuracy}


def describe_errors(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "metadata"
        message = str(error["msg"]).removeprefix("Value error, ")
        given = "" if error["type"] == "missing" else f" (got {error['input']!r})"
        parts.append(f"{where}: {message}{given}")
    return "; ".join(parts)


def parse_metadata(document: Any, source: str = METADATA_FILE) -> ModelMetadata:
    """Validate a parsed metadata document; raise MetadataError naming the source and each field."""
    if not isinstance(document, dict):
        raise MetadataError(f"{source}: expected a JSON object")
    try:
        return ModelMetadata.model_validate(document)
    except ValidationError as exc:
        raise MetadataError(f"{source}: {describe_errors(exc)}") from None


def read_metadata(version_dir: Path) -> ModelMetadata:
    """Read and validate ``<version_dir>/metadata.json``; raise MetadataError."""
    path = Path(version_dir) / METADATA_FILE
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MetadataError(f"{path} is missing; every exported version carries its metadata") from None
    except (OSError, ValueError) as exc:
        raise MetadataError(f"{path} cannot be read as JSON ({exc})") from None
    return parse_metadata(document, str(path))
