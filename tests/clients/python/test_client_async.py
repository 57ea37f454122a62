"""AsyncClient against the real keyed server: the same answers and errors as Client, awaited, several
calls at once on one connection pool."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from client_helpers import SCANNER_KEY, Photo

from bench.server import Server
from contract.api import BatchResponse, ClassifyResponse
from garment_sorter_client import ApiError, AsyncClient

pytestmark = pytest.mark.slow


class AsyncRecording(httpx.AsyncHTTPTransport):
    def __init__(self) -> None:
        super().__init__()
        self.bodies: list[bytes] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await super().handle_async_request(request)
        await response.aread()
        self.bodies.append(response.content)
        return response


def test_async_classify_batch_and_errors(sorter: Server, photos: list[Photo]):
    recording = AsyncRecording()

    async def scenario() -> tuple[list[ClassifyResponse], BatchResponse, ApiError]:
        async with AsyncClient(sorter.url, api_key=SCANNER_KEY, transport=recording) as client:
            answers = await asyncio.gather(
                *(client.classify(photo.path, item_id=f"SKU-{n}") for n, photo in enumerate(photos))
            )
            bodies = len(recording.bodies)
            batch = await client.classify_batch([photo.path for photo in photos], as_of="2025-07-01")
            assert batch.model_dump(mode="json", exclude_unset=True) == json.loads(recording.bodies[bodies])
            try:
                await client.classify(b"GIF89a broken", request_id="client-test-async")
            except ApiError as exc:
                return answers, batch, exc
            raise AssertionError("a broken image was answered 2xx")

    answers, batch, error = asyncio.run(scenario())
    assert [answer.item_id for answer in answers] == [f"SKU-{n}" for n in range(len(photos))]
    assert answers[0].label == "Ankle boot"
    # The answers of concurrent calls are each its own: the same typed fields as some body on the wire.
    wire = [json.loads(body) for body in recording.bodies[: len(photos)]]
    assert sorted((a.model_dump(mode="json") for a in answers), key=lambda a: a["decision_id"]) == sorted(
        wire, key=lambda a: a["decision_id"]
    )
    assert (batch.count, batch.failed) == (len(photos), 0)
    assert [entry.result.label for entry in batch.results if entry.result] == [a.label for a in answers]
    assert all(entry.result and entry.result.zone == "reserve" for entry in batch.results[:1])  # a boot in July
    assert (error.status, error.code, error.request_id) == (415, "corrupt_image", "client-test-async")


def test_async_client_without_a_key_is_refused(sorter: Server, photos: list[Photo]):
    async def scenario() -> ApiError:
        async with AsyncClient(sorter.url) as client:
            try:
                await client.classify(photos[0].path)
            except ApiError as exc:
                return exc
        raise AssertionError("answered without a key")

    error = asyncio.run(scenario())
    assert (error.status, error.code) == (401, "unauthorized")
