"""POST /classify (one image: multipart ``file`` or a raw image body) and POST /classify/batch."""

from __future__ import annotations

import asyncio
import datetime as dt
import unicodedata
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import Field, TypeAdapter, ValidationError
from python_multipart.multipart import parse_options_header
from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect

from app import errors, logs
from app.access import Role
from app.api.deps import check_api_key
from app.api.schemas import BATCH_EXAMPLE, CLASSIFY_EXAMPLE, BatchResponse, ClassifyResponse, ErrorBody, IsoDate
from app.errors import ApiError, ClientGone
from app.service.service import Service

router = APIRouter(tags=["classify"])

IMAGE_TYPES = ("image/jpeg", "image/png", "image/webp", "image/gif", "image/bmp", "image/tiff")
CLIENT_CLOSED_REQUEST = 499  # nginx's convention: nobody reads it, the metrics do

# What _item_id accepts, stated in the schema too (schemathesis holds the two to each other).
ITEM_ID_PATTERN = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$"  # no control characters
_ITEM_ID_SCHEMA = {"pattern": ITEM_ID_PATTERN, "maxLength": 128}
TOP_K_MIN, TOP_K_MAX = 1, 10

# The two work routes read their query parameters, header and API key themselves: FastAPI's
# parameter and dependency solving measured ~80 us of the ~440 us CPU a single-image request
# costs (18 % of capacity). The OpenAPI description below is what FastAPI would generate.
_TOP_K_DOC = "How many classes in top_k (default 3)"
_AS_OF_DOC = "Date (ISO) the zone is decided for; default today"
_ITEM_ID_DOC = "Echoed back as item_id (the form field wins)"
QUERY_PARAMETERS: list[dict[str, Any]] = [
    {
        "name": "top_k",
        "in": "query",
        "required": False,
        "description": _TOP_K_DOC,
        "schema": {
            "anyOf": [{"type": "integer", "maximum": TOP_K_MAX, "minimum": TOP_K_MIN}, {"type": "null"}],
            "description": _TOP_K_DOC,
            "title": "Top K",
        },
    },
    {
        "name": "as_of",
        "in": "query",
        "required": False,
        "description": _AS_OF_DOC,
        "schema": {
            "anyOf": [{"type": "string", "format": "date"}, {"type": "null"}],
            "description": _AS_OF_DOC,
            "examples": ["2025-07-01"],
            "title": "As Of",
        },
    },
]
ITEM_ID_HEADER: dict[str, Any] = {
    "name": "X-Item-Id",
    "in": "header",
    "required": False,
    "description": _ITEM_ID_DOC,
    "schema": {
        "anyOf": [{"type": "string"}, {"type": "null"}],
        "description": _ITEM_ID_DOC,
        **_ITEM_ID_SCHEMA,
        "title": "X-Item-Id",
    },
}
SECURITY: list[dict[str, list[str]]] = [{"APIKeyHeader": []}]


_TOP_K = TypeAdapter(Annotated[int, Field(ge=TOP_K_MIN, le=TOP_K_MAX)])
_DATE = TypeAdapter(IsoDate)


def _query(request: Request) -> tuple[int | None, dt.date | None]:
    """top_k and as_of, validated exactly as FastAPI would (the same pydantic validators)."""
    values: list[Any] = []
    for name, adapter in (("top_k", _TOP_K), ("as_of", _DATE)):
        raw = request.query_params.get(name)
        try:
            values.append(None if raw is None else adapter.validate_python(raw))
        except ValidationError as exc:
            raise errors.invalid_field(f"query.{name}", exc.errors()[0]["msg"]) from None
    return values[0], values[1]


def _service(request: Request) -> tuple[Service, str | None]:
    """The service, and the caller's name for the decision log (None with API keys off)."""
    service: Service = request.app.state.service
    key = check_api_key(service, request.headers.get("x-api-key"), Role.SCANNER)
    return service, None if key is None else key.name


def _error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    described = {
        400: "Empty image or malformed multipart body (codes: empty_image, malformed_multipart)",
        401: "Missing or invalid X-API-Key (code: unauthorized)",
        403: "The key's role may not classify (code: forbidden)",
        413: "Body, image or file count over its limit (codes: body_too_large, image_too_large, too_many_files)",
        415: (
            "Not an accepted image "
            "(codes: unsupported_media_type, not_an_image, unsupported_image_format, corrupt_image)"
        ),
        422: "Missing field or invalid parameter (codes: missing_field, validation_error)",
        500: "The model failed on this batch (code: inference_failed)",
        503: (
            "Not ready, draining, queue full or the decision could not be recorded "
            "(codes: not_ready, draining, queue_full, shutting_down, not_recorded); see Retry-After"
        ),
        504: "Not answered within the deadline (code: deadline_exceeded)",
    }
    return {status: {"model": ErrorBody, "description": described[status]} for status in statuses}


_IMAGE_BODY = {"schema": {"type": "string", "format": "binary"}}
CLASSIFY_BODY = {
    "requestBody": {
        "required": True,
        "description": "One photo: multipart field `file` (plus optional `item_id`), or the raw image bytes "
        "with an image Content-Type. The format is detected from the content.",
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "JPEG, PNG, WebP, GIF, BMP or TIFF",
                        },
                        "item_id": {"type": "string", **_ITEM_ID_SCHEMA, "description": "Echoed back"},
                    },
                }
            },
            **dict.fromkeys(IMAGE_TYPES, _IMAGE_BODY),
        },
    }
}
BATCH_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["files"],
                    "properties": {
                        "files": {
                            "type": "array",
                            "minItems": 1,
                            "maxItems": 256,
                            "items": {"type": "string", "format": "binary"},
                            "description": "Up to 256 images (SORTER_MAX_BATCH_FILES)",
                        },
                        "item_id": {
                            "type": "array",
                            "items": {"type": "string", **_ITEM_ID_SCHEMA},
                            "description": "Optional, one per file in the same order; echoed back",
                        },
                    },
                }
            }
        },
    }
}


@asynccontextmanager
async def disconnect_watch(request: Request) -> AsyncIterator[asyncio.Future[None]]:
    """A future that resolves when the client goes away (only after the body has been read)."""
    loop = asyncio.get_running_loop()
    gone: asyncio.Future[None] = loop.create_future()
    receive = request.receive

    async def watch() -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                if not gone.done():
                    gone.set_result(None)
                return

    task = loop.create_task(watch())
    try:
        yield gone
    finally:
        task.cancel()


async def _read_multipart(request: Request, max_files: int) -> FormData:
    # An upload cut short lacks the closing delimiter, and the parser silently drops its
    # unfinished part: without this check it would be answered "field 'file' is required".
    _, params = parse_options_header(request.headers.get("content-type", ""))
    closing = b"--" + params.get(b"boundary", b"") + b"--"
    keep = len(closing) + 4  # + line breaks after it
    tail = b""

    async def stream() -> AsyncGenerator[bytes, None]:
        nonlocal tail
        async for chunk in request.stream():
            tail = chunk[-keep:] if len(chunk) >= keep else (tail + chunk)[-keep:]
            yield chunk

    try:
        parser = MultiPartParser(request.headers, stream(), max_files=max_files, max_fields=max_files + 8)
        form = await parser.parse()
        if not tail.rstrip(b"\r\n").endswith(closing):
            await form.close()
            raise errors.malformed_multipart("the body ends before the closing boundary")
        return form
    except MultiPartException as exc:
        if exc.message.startswith("Too many files"):
            raise errors.too_many_files(max_files) from None
        raise errors.malformed_multipart(exc.message) from None
    except (ApiError, ClientDisconnect):
        raise
    except Exception as exc:  # hostile bodies must never become a 500
        raise errors.malformed_multipart(type(exc).__name__) from None


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def _item_id(value: Any, limit: int, name: str = "item_id") -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise errors.invalid_field(name, "must be a text field, not a file")
    if len(value) > limit:
        raise errors.invalid_field(name, f"at most {limit} characters")
    if any(unicodedata.category(c) == "Cc" for c in value):
        raise errors.invalid_field(name, "must not contain control characters")
    return value


@router.post(
    "/classify",
    response_model=ClassifyResponse,
    summary="Classify one photo and say where it goes",
    responses={
        200: {"content": {"application/json": {"example": CLASSIFY_EXAMPLE}}},
        **_error_responses(400, 401, 403, 413, 415, 422, 500, 503, 504),
    },
    openapi_extra={**CLASSIFY_BODY, "parameters": [*QUERY_PARAMETERS, ITEM_ID_HEADER], "security": SECURITY},
)
async def classify(request: Request) -> Response:
    service, caller = _service(request)
    top_k, as_of = _query(request)
    x_item_id = request.headers.get("x-item-id")
    settings, flow = service.settings, service.request_flow
    flow.shed_if_full()
    media = _media_type(request)
    item_id: Any = x_item_id
    try:
        if media == "multipart/form-data":
            form = await _read_multipart(request, max_files=1)
            try:
                upload = form.get("file")
                if not isinstance(upload, UploadFile):
                    raise errors.missing_field("file")
                data = await upload.read()
                item_id = form.get("item_id") or x_item_id
            finally:
                await form.close()
        elif media.startswith("image/"):
            data = await request.body()
        else:
            raise errors.unsupported_media_type(media)
    except ClientDisconnect:
        service.metrics.reject("client_gone")
        return Response(status_code=CLIENT_CLOSED_REQUEST)
    if not data:
        raise errors.empty_image()
    item_id = _item_id(item_id, settings.max_item_id_length)
    async with disconnect_watch(request) as gone:
        try:
            body = await flow.classify(
                data,
                top_k=top_k or settings.default_top_k,
                as_of=as_of,
                item_id=item_id,
                caller=caller,
                disconnected=gone,
            )
        except ClientGone:
            return Response(status_code=CLIENT_CLOSED_REQUEST)
    logs.note(decision_id=body["decision_id"], model_version=body["model"]["version"])
    # The dict is built to the response model's shape (tests validate it); skipping FastAPI's
    # re-validation and re-serialisation saves a good part of the per-request CPU.
    return JSONResponse(body)


@router.post(
    "/classify/batch",
    response_model=BatchResponse,
    summary="Classify up to 256 photos in one request",
    description="Results come back in input order; each entry holds either a result or that file's own "
    "error (same codes as POST /classify): one bad image never fails the others.",
    responses={
        200: {"content": {"application/json": {"example": BATCH_EXAMPLE}}},
        **_error_responses(400, 401, 403, 413, 415, 422, 503),
    },
    openapi_extra={**BATCH_BODY, "parameters": QUERY_PARAMETERS, "security": SECURITY},
)
async def classify_batch(request: Request) -> Response:
    service, caller = _service(request)
    top_k, as_of = _query(request)
    settings, flow = service.settings, service.request_flow
    flow.serving_for()  # 503 not_ready comes before 415
    media = _media_type(request)
    if media != "multipart/form-data":
        raise errors.unsupported_media_type(media)
    flow.shed_if_full()
    try:
        form = await _read_multipart(request, max_files=settings.max_batch_files)
    except ClientDisconnect:
        service.metrics.reject("client_gone")
        return Response(status_code=CLIENT_CLOSED_REQUEST)
    try:
        uploads = form.getlist("files")
        if not uploads:
            raise errors.missing_field("files")
        if not all(isinstance(u, UploadFile) for u in uploads):
            raise errors.invalid_field("files", "every entry must be a file")
        raw_ids = form.getlist("item_id")
        if raw_ids and len(raw_ids) != len(uploads):
            raise errors.invalid_field("item_id", f"{len(raw_ids)} item_id fields for {len(uploads)} files")
        item_ids = [_item_id(v, settings.max_item_id_length) for v in raw_ids] or [None] * len(uploads)
        blobs: list[bytes | ApiError] = []
        for upload in uploads:
            assert isinstance(upload, UploadFile)
            if upload.size is not None and upload.size > settings.max_body_bytes:
                blobs.append(errors.file_too_large(settings.max_body_bytes))
                continue
            data = await upload.read()
            blobs.append(data if data else errors.empty_image())
        filenames = [u.filename if isinstance(u, UploadFile) else None for u in uploads]
    finally:
        await form.close()
    async with disconnect_watch(request) as gone:
        try:
            results = await flow.classify_many(
                blobs,
                top_k=top_k or settings.default_top_k,
                as_of=as_of,
                item_ids=item_ids,
                caller=caller,
                disconnected=gone,
            )
        except ClientGone:
            return Response(status_code=CLIENT_CLOSED_REQUEST)
    for entry, filename in zip(results, filenames, strict=True):
        entry["filename"] = filename
    failed = sum(1 for entry in results if entry["error"] is not None)
    answered = next((entry["result"] for entry in results if entry["result"] is not None), None)
    model_ref = service.model_ref if answered is None else answered["model"]  # the version that answered
    logs.note(model_version=model_ref["version"], items=len(results))
    return JSONResponse({"model": model_ref, "count": len(results), "failed": failed, "results": results})
