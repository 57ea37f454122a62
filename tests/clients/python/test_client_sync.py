"""Client against a real keyed `garment-sorter serve`: real photos in, the service's own models out, every
error answer mapped to ApiError with its code and request id."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from client_helpers import REVIEWER_KEY, SCANNER_KEY, Photo, Recording

from app.api import schemas
from bench.server import Server
from contract.api import BatchResponse, ClassifyResponse
from garment_sorter_client import NO_RETRY, ApiError, Client

pytestmark = pytest.mark.slow


@pytest.fixture
def recording() -> Recording:
    return Recording()


@pytest.fixture
def client(sorter: Server, recording: Recording) -> Iterator[Client]:
    with Client(sorter.url, api_key=SCANNER_KEY, transport=recording) as client:
        yield client


def test_answers_are_the_services_own_models():
    # One definition on both sides of the wire: the service declares its responses with these classes.
    assert schemas.ClassifyResponse is ClassifyResponse and schemas.BatchResponse is BatchResponse


def test_classify_a_photo_file(client: Client, recording: Recording, boot: Path, sorter: Server):
    answer = client.classify(boot, item_id="SKU-123-0001")
    assert isinstance(answer, ClassifyResponse)
    assert (answer.label, answer.class_id, answer.season, answer.item_id) == ("Ankle boot", 9, "winter", "SKU-123-0001")
    assert answer.needs_review == bool(answer.review_reasons)
    # Every typed field is what the service sent.
    assert answer.model_dump(mode="json", exclude_unset=True) == json.loads(recording.bodies[-1])
    # The decision is on record under that id, with the item id.
    recorded = httpx.get(f"{sorter.url}/v1/decisions/{answer.decision_id}", headers={"X-API-Key": REVIEWER_KEY})
    assert recorded.status_code == 200
    assert (recorded.json()["item_id"], recorded.json()["caller"]) == ("SKU-123-0001", "scanner-1")


def test_raw_body_bytes_with_query_options(client: Client, recording: Recording, boot: Path):
    data = boot.read_bytes()
    summer = client.classify(data, item_id="SKU-RAW", top_k=5, as_of=dt.date(2025, 7, 1), raw=True)
    winter = client.classify(data, top_k=1, as_of="2025-01-15", request_id="client-test-raw")
    assert (summer.label, summer.item_id, len(summer.top_k), summer.zone) == ("Ankle boot", "SKU-RAW", 5, "reserve")
    assert (winter.label, winter.item_id, len(winter.top_k), winter.zone) == ("Ankle boot", None, 1, "forward")
    assert recording.headers[-1]["x-request-id"] == "client-test-raw"
    assert winter.model_dump(mode="json", exclude_unset=True) == json.loads(recording.bodies[-1])


def test_batch_in_order_with_item_ids_and_a_bad_file(client: Client, recording: Recording, photos: list[Photo]):
    sent = [photos[0].path, photos[1].path.read_bytes(), ("scan.pdf", b"%PDF-1.4 not an image"), photos[2].path]
    answer = client.classify_batch(sent, item_ids=["SKU-0", None, "SKU-2", "SKU-3"], top_k=2)
    assert isinstance(answer, BatchResponse)
    assert (answer.count, answer.failed) == (4, 1)
    assert [entry.index for entry in answer.results] == [0, 1, 2, 3]
    assert [entry.filename for entry in answer.results] == ["test-0.jpg", "photo-1", "scan.pdf", "test-2.jpg"]
    good = [entry.result for entry in answer.results if entry.result is not None]
    assert [result.item_id for result in good] == ["SKU-0", None, "SKU-3"]
    assert all(len(result.top_k) == 2 for result in good)
    assert good[0].label == "Ankle boot"
    error = answer.results[2].error
    assert error is not None and answer.results[2].result is None
    assert (error.status, error.code) == (415, "not_an_image")
    assert answer.model_dump(mode="json", exclude_unset=True) == json.loads(recording.bodies[-1])


def test_an_error_answer_raises_with_code_detail_and_request_id(client: Client):
    with pytest.raises(ApiError) as raised:
        client.classify(b"no image here", request_id="client-test-415")
    error = raised.value
    assert (error.status, error.code) == (415, "not_an_image")
    assert error.detail == "The data is not an image in a recognised format."
    assert (error.request_id, error.attempts) == ("client-test-415", 1)
    assert "415 not_an_image" in str(error) and "client-test-415" in str(error)

    with pytest.raises(ApiError) as raised:
        client.classify(b"")
    assert (raised.value.status, raised.value.code) == (400, "empty_image")

    with pytest.raises(ApiError) as raised:
        client.classify(b"\x89PNG", top_k=11)
    assert (raised.value.status, raised.value.code) == (422, "validation_error")
    assert raised.value.detail.startswith("query.top_k:")


def test_the_services_request_id_when_the_callers_is_not_safe(client: Client):
    with pytest.raises(ApiError) as raised:
        client.classify(b"no image here", request_id="not safe: has spaces")
    assert raised.value.request_id not in (None, "not safe: has spaces")  # the one the service logged


def test_batch_item_ids_must_match_the_photos(client: Client, boot: Path):
    with pytest.raises(ValueError, match="2 item ids for 1 photos"):
        client.classify_batch([boot], item_ids=["a", "b"])
    with pytest.raises(ValueError, match="at least one photo"):
        client.classify_batch([])


def test_api_keys(sorter: Server, boot: Path):
    with Client(sorter.url, retry=NO_RETRY) as anonymous, pytest.raises(ApiError) as raised:
        anonymous.classify(boot)
    assert (raised.value.status, raised.value.code) == (401, "unauthorized")
    assert raised.value.request_id
    with Client(sorter.url, api_key="client-tests-wrong-key-0123456789") as wrong, pytest.raises(ApiError) as raised:
        wrong.classify(boot)
    assert (raised.value.status, raised.value.code, raised.value.attempts) == (401, "unauthorized", 1)
    with Client(sorter.url, api_key=REVIEWER_KEY) as reviewer, pytest.raises(ApiError) as raised:
        reviewer.classify(boot)
    assert (raised.value.status, raised.value.code) == (403, "forbidden")
    with Client(sorter.url, api_key=SCANNER_KEY) as scanner:
        assert scanner.classify(boot).label == "Ankle boot"


def test_one_connection_serves_every_call(sorter: Server, boot: Path):
    opened: list[str] = []

    class Counting(httpx.HTTPTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            response = super().handle_request(request)
            opened.append(str(response.extensions["network_stream"].get_extra_info("client_addr")))
            return response

    with Client(sorter.url, api_key=SCANNER_KEY, transport=Counting()) as client:
        for _ in range(3):
            client.classify(boot)
    assert len(opened) == 3 and len(set(opened)) == 1  # one local address: the same TCP connection
