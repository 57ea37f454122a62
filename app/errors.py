"""Every error the API answers with: a status, a stable machine-readable ``code`` and a short detail.

Answers are always ``{"detail": "...", "code": "...", "request_id": "..."}`` (the request id the
answer's ``X-Request-ID`` header carries, so a scanner's error report can be found in our logs).
Codes are part of the API contract and are also the ``reason`` label of
``garment_sorter_rejections_total`` for refused input.
"""

from __future__ import annotations

from typing import Any

from app.logs import REQUEST_ID


class ApiError(Exception):
    """An error with its HTTP status and stable code; raised anywhere, rendered by one handler."""

    def __init__(self, status: int, code: str, detail: str, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        """Without the request id: also one file's entry inside a batch answer."""
        return {"detail": self.detail, "code": self.code}

    def answer_body(self) -> dict[str, Any]:
        return answer_body(self.code, self.detail)

    def __repr__(self) -> str:
        return f"ApiError({self.status}, {self.code!r}, {self.detail!r})"


def answer_body(code: str, detail: str, request_id: str | None = None) -> dict[str, Any]:
    """An error answer's body, with the id of the request being served (when there is one)."""
    body: dict[str, Any] = {"detail": detail, "code": code}
    request_id = request_id or REQUEST_ID.get()
    if request_id is not None:
        body["request_id"] = request_id
    return body


# --- bad input (client errors) ---------------------------------------------------------------
def empty_image() -> ApiError:
    return ApiError(400, "empty_image", "The image is empty (0 bytes).")


def malformed_multipart(reason: str) -> ApiError:
    return ApiError(400, "malformed_multipart", f"The multipart body cannot be parsed: {reason}")


def body_too_large(limit: int) -> ApiError:
    return ApiError(413, "body_too_large", f"The request body exceeds the limit of {limit} bytes.")


def file_too_large(limit: int) -> ApiError:
    return ApiError(413, "body_too_large", f"The image exceeds the limit of {limit} bytes.")


def image_too_large(width: int, height: int, limit: int) -> ApiError:
    return ApiError(
        413,
        "image_too_large",
        f"The image is {width}x{height} = {width * height} pixels; the limit is {limit} pixels.",
    )


def too_many_files(limit: int) -> ApiError:
    return ApiError(413, "too_many_files", f"Too many files; at most {limit} per request.")


def unsupported_media_type(content_type: str) -> ApiError:
    shown = content_type or "none"
    return ApiError(
        415,
        "unsupported_media_type",
        f"Content-Type {shown!s} is not accepted; send multipart/form-data or an image/* body.",
    )


def not_an_image() -> ApiError:
    return ApiError(415, "not_an_image", "The data is not an image in a recognised format.")


def unsupported_image_format(fmt: str) -> ApiError:
    return ApiError(
        415,
        "unsupported_image_format",
        f"{fmt} images are not supported; send JPEG, PNG, WebP, GIF, BMP or TIFF.",
    )


def corrupt_image() -> ApiError:
    return ApiError(415, "corrupt_image", "The image data is truncated or corrupt.")


def missing_field(name: str) -> ApiError:
    return ApiError(422, "missing_field", f"The multipart field '{name}' is required.")


def invalid_field(name: str, reason: str) -> ApiError:
    return ApiError(422, "validation_error", f"{name}: {reason}")


# --- authentication --------------------------------------------------------------------------
def unauthorized() -> ApiError:
    return ApiError(401, "unauthorized", "A valid X-API-Key header is required.", {"WWW-Authenticate": "ApiKey"})


def csrf_failed() -> ApiError:
    return ApiError(403, "csrf_failed", "The form's CSRF token is missing or wrong; reload the page and retry.")


def forbidden(has: str, needs: str) -> ApiError:
    return ApiError(403, "forbidden", f"This key's role ({has}) may not do this; it needs the {needs} role.")


# --- the decision log ------------------------------------------------------------------------
def decision_not_found(decision_id: str) -> ApiError:
    return ApiError(404, "decision_not_found", f"No decision {decision_id!r} is on record.")


def photo_not_kept() -> ApiError:
    return ApiError(404, "photo_not_kept", "No photo is kept for this decision (never kept, or past its retention).")


def already_reviewed(latest_review_id: str | None) -> ApiError:
    if latest_review_id is not None:
        detail = f"This decision is reviewed already; to correct it, send corrects={latest_review_id!r}."
    else:  # a concurrent reviewer won, or `corrects` named a review the decision does not have
        detail = "This decision has no review to correct, or another reviewer's review was recorded first."
    return ApiError(409, "already_reviewed", detail)


def decision_log_off() -> ApiError:
    return ApiError(503, "decision_log_off", "The decision log is off (SORTER_DECISION_LOG=false).")


def records_unavailable(reason: str) -> ApiError:
    return ApiError(
        503, "records_unavailable", f"The decision log's database is unreachable ({reason}).", {"Retry-After": "1"}
    )


# --- service state ---------------------------------------------------------------------------
def queue_full(retry_after_s: int = 1) -> ApiError:
    return ApiError(
        503, "queue_full", "The inference queue is full; retry shortly.", {"Retry-After": str(retry_after_s)}
    )


def not_ready() -> ApiError:
    return ApiError(503, "not_ready", "The model is not loaded and warmed up yet.", {"Retry-After": "1"})


def draining() -> ApiError:
    return ApiError(
        503,
        "draining",
        "The service is shutting down and accepts no new work; retry on another replica.",
        {"Retry-After": "1", "Connection": "close"},
    )


def shutting_down() -> ApiError:
    return ApiError(503, "shutting_down", "The service stopped before this request was processed.")


def deadline_exceeded(timeout_s: float) -> ApiError:
    return ApiError(504, "deadline_exceeded", f"The request was not processed within {timeout_s:g} s.")


def inference_failed(reason: str) -> ApiError:
    return ApiError(500, "inference_failed", f"Inference failed: {reason}")


def not_recorded(reason: str) -> ApiError:
    # An answer is only given once its decision is on record (or in the fsync'd spool): a 200
    # whose decision could be lost would break the audit trail.
    return ApiError(
        503, "not_recorded", f"The decision could not be recorded ({reason}); retry shortly.", {"Retry-After": "1"}
    )


class ClientGone(Exception):
    """The client disconnected before its request reached the model."""


# Codes the batcher counts itself, and server-side failures that are not refused input.
NOT_REJECTIONS = frozenset(
    {
        "queue_full",
        "deadline_exceeded",
        "inference_failed",
        "not_recorded",
        "records_unavailable",
        "decision_log_off",
        "shutting_down",
        "not_found",
        "method_not_allowed",
        "internal_error",
        "client_gone",
    }
)


def is_rejection(code: str) -> bool:
    """Whether an answer with this code counts in garment_sorter_rejections_total."""
    return code not in NOT_REJECTIONS
