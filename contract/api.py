"""The HTTP answers a caller reads: POST /classify, POST /classify/batch and the error body.

The service declares its responses with these models (``app.api.schemas`` re-exports them, so its
OpenAPI document is built from them) and the Python client (``garment_sorter_client``) parses
answers into them: one definition on both sides of the wire. Only pydantic, no TensorFlow.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from contract.reasons import Reason


class ErrorBody(BaseModel):
    detail: str = Field(description="Human-readable reason")
    code: str = Field(description="Stable machine-readable code")
    request_id: str | None = Field(
        default=None, description="The request's X-Request-ID, to quote when reporting a problem"
    )

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
    "season_confidence": 0.994,
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
    season_confidence: float = Field(
        ge=0,
        le=1,
        description="That season's probability mass (the sum of its classes' probabilities): under the "
        "review threshold, the item needs review for low_confidence",
    )
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
