"""Response models: the API's documented shapes (``/docs``) and what the tests validate against.

The answers of the classify routes and the error body are the wire contract a client shares with the
service: they are defined in ``contract.api`` and re-exported here, so every route imports its
models from one place."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from contract.api import BATCH_EXAMPLE as BATCH_EXAMPLE
from contract.api import CLASSIFY_EXAMPLE as CLASSIFY_EXAMPLE
from contract.api import BatchItem as BatchItem
from contract.api import BatchItemError as BatchItemError
from contract.api import BatchResponse as BatchResponse
from contract.api import ClassifyResponse as ClassifyResponse
from contract.api import ClassScore as ClassScore
from contract.api import ErrorBody as ErrorBody
from contract.api import GarmentBox as GarmentBox
from contract.api import ModelRef as ModelRef
from contract.api import Timings as Timings
from contract.reasons import Reason


def _full_date(value: Any) -> Any:
    # pydantic alone also takes "0" or "3.2e-130" (Unix timestamps) and datetimes for a date;
    # the schema says `format: date`, so only RFC 3339 full-date text is a date here.
    if isinstance(value, str) and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        raise ValueError("Input should be a date in the form YYYY-MM-DD")
    return value


IsoDate = Annotated[dt.date, BeforeValidator(_full_date)]


class Health(BaseModel):
    status: Literal["ok"]


class Ready(BaseModel):
    status: Literal["ready"]
    model: ModelRef


class LoadedVersion(BaseModel):
    name: str
    version: int
    roles: list[Literal["live", "previous", "shadow", "canary"]] = Field(
        description="live answers; canary answers canary_fraction of requests; shadow sees copies; previous is "
        "kept for a roll back; none: loaded, waiting"
    )
    canary_fraction: float | None = None


class ModelInfo(BaseModel):
    name: str
    version: int
    architecture: str | None
    params: int | None = Field(description="Parameters of every network the graph runs, summed")
    ensemble_size: int = Field(
        description="Networks whose logits the graph averages for every image (1: a single network)"
    )
    unsure_members: int = Field(
        default=0,
        description="More networks that join that average only for the images below flip_below (a second look "
        "at unsure items)",
    )
    tta_flip: bool = Field(description="Whether the graph also averages each image with its mirror image")
    flip_below: float | None = Field(
        default=None,
        description="When set, the graph averages in the mirror image only for images whose uncalibrated "
        "top-class probability is below this (and there the unsure_members join the average)",
    )
    classes: list[str]
    accuracy: dict[str, float | None] = Field(
        description="Measured accuracy by split; validation is null for a model trained on that split too"
    )
    calibrated_by: list[str] | None = Field(
        default=None,
        description="For a model trained on the validation split too: the training runs of its held-out "
        "twin (same recipes without that split), which chose the temperature and review threshold it serves",
    )
    temperature: float | None
    review_threshold: float
    review_threshold_source: str
    input: dict[str, Any] | None
    device: str
    precision: Literal["float32", "bfloat16"] | None = Field(
        description="Compute precision of the signature being served (null for the null model)"
    )
    batch_sizes: list[int]
    max_batch_size: int
    created_at: str | None
    git_commit: str | None
    loaded: list[LoadedVersion] = Field(description="Every loaded version and its role in the roll-out")


class SeasonInfo(BaseModel):
    name: str
    bin: str
    classes: list[str]
    all_season: bool
    months: list[int] = Field(description="Months stocked forward, in the configured hemisphere")


class PolicyInfo(BaseModel):
    source: str
    version: str = Field(description="Hash of what decides a bin; recorded with every decision")
    hemisphere: Literal["northern", "southern"]
    review_bin: str
    review_threshold: float
    review_threshold_source: str
    current_season: str | None
    as_of: str
    seasons: list[SeasonInfo]


# --- the decision log and reviews ---------------------------------------------------------------
class ReviewRecord(BaseModel):
    review_id: str
    decision_id: str
    sequence: int = Field(ge=1, description="1 for the first review; a correction takes the next number")
    corrects: str | None = Field(description="The review this one corrects (both are kept)")
    created_at: dt.datetime
    reviewer: str = Field(description="The reviewer key's name, or the name given when keys are off")
    class_id: int = Field(ge=0, le=9, description="The garment's class, as the reviewer saw it")
    label: str
    season: str
    bin: str = Field(description="Where the garment goes, from the policy for the reviewed class")
    zone: Literal["forward", "reserve"]
    policy_version: str


class DecisionRecord(BaseModel):
    decision_id: str
    created_at: dt.datetime
    item_id: str | None
    caller: str | None = Field(description="The API key's name (null when keys are off)")
    model_name: str
    model_version: int
    policy_version: str
    review_threshold: float | None
    class_id: int
    label: str
    confidence: float
    top_k: list[ClassScore]
    season: str
    season_confidence: float | None = Field(description="Null on decisions recorded before it was kept")
    bin: str
    zone: Literal["forward", "reserve"]
    needs_review: bool
    review_reasons: list[Reason]
    box: GarmentBox | None
    timings_ms: Timings
    photo_sha256: str | None = Field(description="The kept photo (GET .../photo); null when none was kept")
    audit: bool = Field(description="In the random audit sample of auto-sorted items")
    reviews: list[ReviewRecord] = Field(description="Oldest first; the last one is the verdict")


class DecisionList(BaseModel):
    items: list[DecisionRecord]


class ReviewQueue(BaseModel):
    items: list[DecisionRecord] = Field(description="Unreviewed, oldest first")
    pending: int = Field(description="Unreviewed decisions in this queue, all pages")
    oldest_pending_age_s: float | None
    next_after: str | None = Field(description="Pass as `after` for the next page; null on the last page")


class ReviewRequest(BaseModel):
    class_id: int = Field(ge=0, le=9, description="The garment's true class")
    reviewer: str | None = Field(
        default=None, max_length=64, description="Who reviewed, when keys are off (with keys: the key's name)"
    )
    corrects: str | None = Field(
        default=None, max_length=36, description="The latest review's id, to correct it; omit for a first review"
    )

    model_config = ConfigDict(extra="forbid")


class ShadowAnswer(BaseModel):
    candidate_version: int
    created_at: dt.datetime
    class_id: int
    label: str
    confidence: float
    season: str | None = Field(description="The candidate's season (null on answers recorded before it was kept)")
    season_confidence: float | None
    bin: str
    needs_review: bool
    review_reasons: list[Reason]
    agrees_on_class: bool
    agrees_on_bin: bool


class Disagreement(BaseModel):
    decision: DecisionRecord = Field(description="The live decision (what the scanner was told)")
    shadow: ShadowAnswer = Field(description="What the shadow candidate would have answered")


class DisagreementList(BaseModel):
    items: list[Disagreement]
    next_after: str | None
