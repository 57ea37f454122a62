"""What the sync and async clients share: photos, the requests the two classify routes take, and the
reading of their answers. Only the sending and the waiting differ between the two clients."""

from __future__ import annotations

import datetime as dt
import logging
import mimetypes
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from contract.api import ErrorBody
from garment_sorter_client.errors import ApiError, InvalidAnswer, TransportError
from garment_sorter_client.retry import NOT_SENT, Attempts, retry_after_s

__version__ = "0.1.0"

log = logging.getLogger("garment_sorter_client")

# A photo: a path, the bytes, or (file name, bytes). The file name is only echoed back in a batch.
Photo = str | os.PathLike[str] | bytes | tuple[str, bytes]
Answer = TypeVar("Answer", bound=BaseModel)

DEFAULT_CONNECT_TIMEOUT_S = 5.0
DEFAULT_READ_TIMEOUT_S = 30.0  # above the service's own deadline (SORTER_REQUEST_TIMEOUT_S, 5 s by default)
RAW_FALLBACK_TYPE = "image/jpeg"  # the service reads the format from the bytes; the type only says "an image"
UNEXPECTED = "unexpected_answer"
DETAIL_CHARS = 200


@dataclass(frozen=True)
class Upload:
    filename: str
    data: bytes

    @property
    def content_type(self) -> str:
        return mimetypes.guess_type(self.filename)[0] or "application/octet-stream"


def upload(photo: Photo, default_name: str) -> Upload:
    """A photo's name and bytes (a path is read here; bytes are called ``default_name``)."""
    if isinstance(photo, bytes):
        return Upload(default_name, photo)
    if isinstance(photo, tuple):
        name, data = photo
        return Upload(name, data)
    path = Path(photo)
    return Upload(path.name, path.read_bytes())


def request_id_for(given: str | None) -> str:
    """The call's X-Request-ID, the same on each of its attempts (the service's logs join them): the
    caller's, or a new one. The service echoes ids of letters, digits and ``._:-`` (at most 128) and
    replaces any other with its own."""
    if given is None:
        return uuid.uuid4().hex
    if not given.isascii():
        raise ValueError(f"request_id {given!r}: an HTTP header takes ASCII only")
    return given


def client_headers(api_key: str | None) -> dict[str, str]:
    headers = {"User-Agent": f"garment-sorter-client/{__version__}", "Accept": "application/json"}
    if api_key:
        headers["X-API-Key"] = api_key
    return headers


def timeout(connect_timeout_s: float, read_timeout_s: float) -> httpx.Timeout:
    # Waiting for a pooled connection counts as connecting; writing the photo as reading the answer.
    return httpx.Timeout(connect=connect_timeout_s, read=read_timeout_s, write=read_timeout_s, pool=connect_timeout_s)


def pool_options(url: str, api_key: str | None, connect_timeout_s: float, read_timeout_s: float) -> dict[str, Any]:
    """What Client and AsyncClient give their httpx pool: the same for both."""
    return {"base_url": url, "headers": client_headers(api_key), "timeout": timeout(connect_timeout_s, read_timeout_s)}


def settle(
    outcome: httpx.Response | httpx.TransportError, model: type[Answer], call: Call, attempts: Attempts
) -> tuple[Answer | None, float]:
    """One attempt's outcome -> (the answer, 0) when the call is over, or (None, the delay before the
    next attempt). Raises ApiError, TransportError or InvalidAnswer when it is over without one."""
    if isinstance(outcome, httpx.TransportError):
        delay = attempts.after_failure(outcome)
        if delay is None:
            raise failure_of(outcome, call, attempts.count) from outcome
        log_retry(call, attempts, delay, type(outcome).__name__)
        return None, delay
    delay = attempts.after_answer(outcome)
    if delay is None:
        return read_answer(outcome, model, call, attempts.count), 0.0
    log_retry(call, attempts, delay, answer_reason(outcome))
    return None, delay


def _query(top_k: int | None, as_of: dt.date | str | None) -> dict[str, str]:
    params: dict[str, str] = {}
    if top_k is not None:
        params["top_k"] = str(top_k)
    if as_of is not None:
        params["as_of"] = as_of.isoformat() if isinstance(as_of, dt.date) else as_of
    return params


@dataclass(frozen=True)
class Call:
    """One POST, rebuilt for every attempt from what it holds (the photo bytes are read once)."""

    path: str
    request_id: str
    params: dict[str, str]
    headers: dict[str, str] = field(default_factory=dict)
    data: dict[str, Any] | None = None
    files: list[tuple[str, tuple[str, bytes, str]]] | None = None
    content: bytes | None = None

    def request(self, http: httpx.Client | httpx.AsyncClient) -> httpx.Request:
        return http.build_request(
            "POST",
            self.path,
            params=self.params,
            headers={**self.headers, "X-Request-ID": self.request_id},
            data=self.data,
            files=self.files,
            content=self.content,
        )


def classify_call(
    photo: Upload,
    *,
    item_id: str | None,
    top_k: int | None,
    as_of: dt.date | str | None,
    request_id: str | None,
    raw: bool,
) -> Call:
    """POST /classify: multipart ``file`` (and ``item_id``), or with ``raw`` the bytes as the body and
    the item id in X-Item-Id (which, as an HTTP header, takes ASCII only)."""
    params, rid = _query(top_k, as_of), request_id_for(request_id)
    if raw:
        if item_id is not None and not item_id.isascii():
            raise ValueError(f"item_id {item_id!r}: a raw body sends it as a header, which takes ASCII only")
        guessed = mimetypes.guess_type(photo.filename)[0] or ""
        headers = {"Content-Type": guessed if guessed.startswith("image/") else RAW_FALLBACK_TYPE}
        if item_id is not None:
            headers["X-Item-Id"] = item_id
        return Call("/classify", rid, params, headers=headers, content=photo.data)
    files = [("file", (photo.filename, photo.data, photo.content_type))]
    data = {"item_id": item_id} if item_id is not None else None
    return Call("/classify", rid, params, data=data, files=files)


def batch_call(
    photos: Sequence[Upload],
    *,
    item_ids: Sequence[str | None] | None,
    top_k: int | None,
    as_of: dt.date | str | None,
    request_id: str | None,
) -> Call:
    """POST /classify/batch: multipart ``files`` and, when given, one ``item_id`` per file ("" for none)."""
    if not photos:
        raise ValueError("classify_batch needs at least one photo")
    if item_ids is not None and len(item_ids) != len(photos):
        raise ValueError(f"{len(item_ids)} item ids for {len(photos)} photos: give one per photo, or none")
    files = [("files", (p.filename, p.data, p.content_type)) for p in photos]
    data = None if item_ids is None else {"item_id": ["" if i is None else i for i in item_ids]}
    return Call("/classify/batch", request_id_for(request_id), _query(top_k, as_of), data=data, files=files)


def answered_request_id(response: httpx.Response, call: Call) -> str:
    # The service echoes the caller's id when it is safe, else gives the request one of its own.
    return response.headers.get("x-request-id") or call.request_id


def read_answer(response: httpx.Response, model: type[Answer], call: Call, attempts: int) -> Answer:
    """The 2xx body as ``model``; otherwise raise ApiError (or InvalidAnswer for a body off the schema)."""
    request_id = answered_request_id(response, call)
    if response.is_success:
        try:
            return model.model_validate_json(response.content)
        except ValidationError as exc:
            message = f"{call.path} answered {response.status_code} with a body that is not a {model.__name__}"
            raise InvalidAnswer(message, status=response.status_code, request_id=request_id, attempts=attempts) from exc
    raise error_of(response, call, attempts)


def error_of(response: httpx.Response, call: Call, attempts: int) -> ApiError:
    try:
        body = ErrorBody.model_validate_json(response.content)
    except ValidationError:
        text = " ".join(response.text.split())[:DETAIL_CHARS] or response.reason_phrase
        code, detail, body_request_id = UNEXPECTED, text, None
    else:
        code, detail, body_request_id = body.code, body.detail, body.request_id
    return ApiError(
        response.status_code,
        code,
        detail,
        request_id=body_request_id or answered_request_id(response, call),
        retry_after_s=retry_after_s(response.headers.get("retry-after")),
        attempts=attempts,
    )


def failure_of(error: httpx.TransportError, call: Call, attempts: int) -> TransportError:
    sent = not isinstance(error, NOT_SENT)
    what = "failed after the request was sent" if sent else "could not be made"
    message = f"POST {call.path}: the connection {what} ({type(error).__name__}: {error})"
    return TransportError(message, request_id=call.request_id, sent=sent, attempts=attempts)


def log_retry(call: Call, attempts: Attempts, delay_s: float, why: str) -> None:
    log.info(
        "POST %s: %s; attempt %d of %d in %.2f s (request id %s)",
        call.path,
        why,
        attempts.count + 1,
        attempts.policy.max_attempts,
        delay_s,
        call.request_id,
    )


def answer_reason(response: httpx.Response) -> str:
    """A short account of a retried answer for the log: status and code."""
    try:
        code = ErrorBody.model_validate_json(response.content).code
    except ValidationError:
        code = UNEXPECTED
    return f"{response.status_code} {code}"
