"""The synchronous client: one httpx connection pool per Client, reused by every call until close()."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from types import TracebackType

import httpx

from contract.api import BatchResponse, ClassifyResponse
from garment_sorter_client import calls
from garment_sorter_client.calls import Answer, Call, Photo
from garment_sorter_client.retry import Attempts, RetryPolicy


class Client:
    """Calls one garment-sorter service. Use it as a context manager, or call close().

    ``url`` is the service's base URL (``http://sorter:8000``); ``api_key`` goes in X-API-Key on
    every request. ``retry`` says how 503s and connections never made are retried (docs/client.md).
    ``transport`` replaces httpx's own (a proxy, a mounted test app)."""

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        connect_timeout_s: float = calls.DEFAULT_CONNECT_TIMEOUT_S,
        read_timeout_s: float = calls.DEFAULT_READ_TIMEOUT_S,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.retry = RetryPolicy() if retry is None else retry
        self._http = httpx.Client(
            transport=transport, **calls.pool_options(url, api_key, connect_timeout_s, read_timeout_s)
        )

    def classify(
        self,
        photo: Photo,
        *,
        item_id: str | None = None,
        top_k: int | None = None,
        as_of: dt.date | str | None = None,
        request_id: str | None = None,
        raw: bool = False,
    ) -> ClassifyResponse:
        """POST /classify: one photo's class, season, bin and review verdict, recorded as ``decision_id``.

        ``item_id`` is echoed back and recorded; ``top_k`` (1-10) sizes ``top_k``; ``as_of`` is the date
        the zone is decided for (default: the service's today); ``request_id`` is sent as X-Request-ID
        (default: a new one per call, the same on every retry). ``raw`` sends the bytes as the body
        instead of a multipart form. Raises ApiError, TransportError or InvalidAnswer."""
        call = calls.classify_call(
            calls.upload(photo, "photo"), item_id=item_id, top_k=top_k, as_of=as_of, request_id=request_id, raw=raw
        )
        return self._post(call, ClassifyResponse)

    def classify_batch(
        self,
        photos: Sequence[Photo],
        *,
        item_ids: Sequence[str | None] | None = None,
        top_k: int | None = None,
        as_of: dt.date | str | None = None,
        request_id: str | None = None,
    ) -> BatchResponse:
        """POST /classify/batch: up to SORTER_MAX_BATCH_FILES photos (256 by default) in one request.

        ``results`` are in input order, each a result or that photo's own error (a photo's error does not
        raise); ``item_ids``, when given, has one entry per photo (None for none). Bytes are named
        ``photo-<index>``."""
        uploads = [calls.upload(photo, f"photo-{index}") for index, photo in enumerate(photos)]
        call = calls.batch_call(uploads, item_ids=item_ids, top_k=top_k, as_of=as_of, request_id=request_id)
        return self._post(call, BatchResponse)

    def _post(self, call: Call, model: type[Answer]) -> Answer:
        attempts = Attempts(self.retry)
        while True:
            attempts.start()
            try:
                outcome: httpx.Response | httpx.TransportError = self._http.send(call.request(self._http))
            except httpx.TransportError as exc:
                outcome = exc
            answer, delay = calls.settle(outcome, model, call, attempts)
            if answer is not None:
                return answer
            time.sleep(delay)

    def close(self) -> None:
        """Close the pooled connections."""
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()
