"""Response models: the API's documented shapes (``/docs``) and what the tests validate against."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from app.reasons import Reason


def _full_date(value: Any) -> Any:
    # pydantic alone also takes "0" or "3.2e-130" (Unix timestamps) and datetimes for a date;
    # the schema says `format: date`, so only RFC 3339 full-date text is a date here.
    if isinstance(value, str) and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        raise ValueError("Input should be a date in the form YYYY-MM-DD")
    return value


IsoDate = Annotated[dt.date, BeforeValidator(_full_date)]


class ErrorBody(BaseModel):
    detail: str = Field(description="Human-readable reason")
    code: str = Field(description="Stable machine-readable code")

    model_config = ConfigDict(
        json_schema_extra={"example": {"detail": "The image data is truncated or corrupt.", "code": "corrupt_image"}}
    )


class ClassScore(BaseModel):
    class_id: int = Field(ge=0, le=9)
    label: str
    probability: float = Field(ge=0, le=1)


class ModelRef(BaseModel):
    name: str
    version: int


class GarmentBox(BaseModel):
    """Where the garment lies, in the upright photo's pixels (after EXIF orientation, at the size
    sent): the right and bottom edges are exclusive."""

    left: int = Field(ge=0)
    top: int = Field(ge=0)
    right: int = Field(ge=1)
    bottom: int = Field(ge=1)


class Timings(BaseModel):
    preprocess: float = Field(description="Decode and photo -> 28x28, milliseconds")
    queue: float = Field(description="Waiting for a batch, milliseconds")
    inference: float = Field(description="The model call of this image's batch, milliseconds")


CLASSIFY_EXAMPLE: dict[str, Any] = {
    "decision_id": "019ad6f2-3c41-7b9e-9a51-5f0d2c8e4a17",
    "class_id": 9,
    "label": "Ankle boot",
    "confidence": 0.987,
    "top_k": [
        {"class_id": 9, "label": "Ankle boot", "probability": 0.987},
        {"class_id": 7, "label": "Sneaker", "probability": 0.009},
        {"class_id": 5, "label": "Sandal", "probability": 0.003},
    ],
    "season": "winter",
    "bin": "BIN-W",
    "zone": "reserve",
    "needs_review": False,
    "review_reasons": [],
    "box": {"left": 412, "top": 188, "right": 1190, "bottom": 904},
    "model": {"name": "fashion-cnn", "version": 1},
    "item_id": "SKU-123-0001",
    "timings_ms": {"preprocess": 0.41, "queue": 0.02, "inference": 1.35},
}


class ClassifyResponse(BaseModel):
    decision_id: str = Field(
        description="This decision's id in the decision log (a UUIDv7: ids sort by time); it is on record "
        "before the answer is sent"
    )
    class_id: int = Field(ge=0, le=9, description="Index into the model's class list")
    label: str = Field(description="Fashion-MNIST class name")
    confidence: float = Field(ge=0, le=1, description="Calibrated probability of the label")
    top_k: list[ClassScore] = Field(description="The k most probable classes, most probable first")
    season: str = Field(description="Season with the largest probability mass")
    bin: str = Field(description="Storage bin code; the review bin when needs_review")
    zone: Literal["forward", "reserve"] = Field(description="forward: in season now (or all-season)")
    needs_review: bool = Field(description="Goes to the review bin: true exactly when review_reasons is not empty")
    review_reasons: list[Reason] = Field(
        description="Why it needs review, as stable codes: no_garment (only the belt), multiple_items, cut_off "
        "(the garment runs over the frame's edge), low_contrast (it barely stands out from the belt), "
        "low_confidence (the best season's probability mass is below the review threshold), unfamiliar "
        "(unlike anything the model was trained on)"
    )
    box: GarmentBox | None = Field(description="The garment found in the photo; null when none was (no_garment)")
    model: ModelRef
    item_id: str | None = Field(description="Echo of the item_id field or X-Item-Id header")
    timings_ms: Timings

    model_config = ConfigDict(json_schema_extra={"example": CLASSIFY_EXAMPLE})


class BatchItemError(ErrorBody):
    status: int = Field(description="The HTTP status this error would have had on POST /classify")


class BatchItem(BaseModel):
    index: int = Field(ge=0, description="Position in the request")
    filename: str | None
    result: ClassifyResponse | None
    error: BatchItemError | None


BATCH_EXAMPLE: dict[str, Any] = {
    "model": {"name": "fashion-cnn", "version": 1},
    "count": 2,
    "failed": 1,
    "results": [
        {"index": 0, "filename": "boot.jpg", "result": {**CLASSIFY_EXAMPLE, "item_id": None}, "error": None},
        {
            "index": 1,
            "filename": "scan.pdf",
            "result": None,
            "error": {
                "status": 415,
                "detail": "The data is not an image in a recognised format.",
                "code": "not_an_image",
            },
        },
    ],
}


class BatchResponse(BaseModel):
    model: ModelRef
    count: int
    failed: int
    results: list[BatchItem] = Field(description="One entry per file, in request order")


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
