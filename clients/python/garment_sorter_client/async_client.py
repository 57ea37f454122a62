"""The asyncio client: the same calls as Client, awaited; one httpx connection pool per AsyncClient."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Sequence
from types import TracebackType

import httpx

from contract.api import BatchResponse, ClassifyResponse
from garment_sorter_client import calls
from garment_sorter_client.calls import Answer, Call, Photo
from garment_sorter_client.retry import Attempts, RetryPolicy


class AsyncClient:
    """Client's twin for asyncio code (``async with AsyncClient(url) as sorter: await sorter.classify(...)``).

    Photos given as paths are read in a worker thread, so the event loop never waits on the disk."""

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        connect_timeout_s: float = calls.DEFAULT_CONNECT_TIMEOUT_S,
        read_timeout_s: float = calls.DEFAULT_READ_TIMEOUT_S,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.retry = RetryPolicy() if retry is None else retry
        self._http = httpx.AsyncClient(
            transport=transport, **calls.pool_options(url, api_key, connect_timeout_s, read_timeout_s)
        )

    async def classify(
        self,
        photo: Photo,
        *,
        item_id: str | None = None,
        top_k: int | None = None,
        as_of: dt.date | str | None = None,
        request_id: str | None = None,
        raw: bool = False,
    ) -> ClassifyResponse:
        """POST /classify; the arguments and errors are Client.classify's."""
        upload = await asyncio.to_thread(calls.upload, photo, "photo")
        call = calls.classify_call(upload, item_id=item_id, top_k=top_k, as_of=as_of, request_id=request_id, raw=raw)
        return await self._post(call, ClassifyResponse)

    async def classify_batch(
        self,
        photos: Sequence[Photo],
        *,
        item_ids: Sequence[str | None] | None = None,
        top_k: int | None = None,
        as_of: dt.date | str | None = None,
        request_id: str | None = None,
    ) -> BatchResponse:
        """POST /classify/batch; the arguments and errors are Client.classify_batch's."""
        uploads = await asyncio.to_thread(
            lambda: [calls.upload(photo, f"photo-{index}") for index, photo in enumerate(photos)]
        )
        call = calls.batch_call(uploads, item_ids=item_ids, top_k=top_k, as_of=as_of, request_id=request_id)
        return await self._post(call, BatchResponse)

    async def _post(self, call: Call, model: type[Answer]) -> Answer:
        attempts = Attempts(self.retry)
        while True:
            attempts.start()
            try:
                outcome: httpx.Response | httpx.TransportError = await self._http.send(call.request(self._http))
            except httpx.TransportError as exc:
                outcome = exc
            answer, delay = calls.settle(outcome, model, call, attempts)
            if answer is not None:
                return answer
            await asyncio.sleep(delay)

    async def aclose(self) -> None:
        """Close the pooled connections."""
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.aclose()
