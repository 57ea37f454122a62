"""Which failures the client retries, and when: against a scripted HTTP server (a real socket), which
answers a 503 with Retry-After, a 500 or a stall on demand, as the real service does only under
overload or faults."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time

import httpx
import pytest
from client_helpers import Scripted, StubServer

from bench.server import free_port
from contract.api import BATCH_EXAMPLE, CLASSIFY_EXAMPLE
from garment_sorter_client import (
    ApiError,
    AsyncClient,
    Client,
    InvalidAnswer,
    RetryPolicy,
    TransportError,
)
from garment_sorter_client.retry import Attempts, retry_after_s

PHOTO = b"\xff\xd8\xff\xe0 a photo's bytes"
FAST = RetryPolicy(max_attempts=3, backoff_s=0.01, max_backoff_s=0.05)
OK = Scripted(200, CLASSIFY_EXAMPLE)
SLACK_S = 0.5  # scheduling on a busy machine


def queue_full(retry_after: str | None = "1") -> Scripted:
    headers = {} if retry_after is None else {"Retry-After": retry_after}
    return Scripted(503, {"detail": "The inference queue is full; retry shortly.", "code": "queue_full"}, headers)


def test_a_503_is_retried_after_its_retry_after(caplog: pytest.LogCaptureFixture):
    with (
        StubServer(queue_full("1"), OK) as stub,
        Client(stub.url, api_key="k" * 16, retry=FAST) as client,
        caplog.at_level(logging.INFO, logger="garment_sorter_client"),
    ):
        answer = client.classify(PHOTO, item_id="SKU-1")
    assert answer.decision_id == CLASSIFY_EXAMPLE["decision_id"]
    first, second = stub.received
    assert 1.0 <= second.at - first.at <= 1.0 + FAST.backoff_s + SLACK_S  # never sooner than asked
    # The same request again: same id (the service's logs join the attempts), key, photo and item id.
    assert first.headers["x-request-id"] == second.headers["x-request-id"]
    assert first.headers["x-api-key"] == second.headers["x-api-key"] == "k" * 16
    assert PHOTO in first.body and PHOTO in second.body and b"SKU-1" in second.body
    assert "503 queue_full; attempt 2 of 3" in caplog.text


def test_a_503_without_retry_after_backs_off_until_the_attempts_run_out():
    shutting_down = Scripted(503, {"detail": "The service stopped before this request was processed.", "code": "x"})
    with StubServer(shutting_down) as stub, Client(stub.url, retry=FAST) as client, pytest.raises(ApiError) as raised:
        client.classify(PHOTO)
    assert (raised.value.status, raised.value.attempts, raised.value.retry_after_s) == (503, 3, None)
    assert len(stub.received) == 3


@pytest.mark.parametrize(
    ("status", "body", "code"),
    [
        (400, {"detail": "The image is empty (0 bytes).", "code": "empty_image"}, "empty_image"),
        (401, {"detail": "A valid X-API-Key header is required.", "code": "unauthorized"}, "unauthorized"),
        (429, {"detail": "slow down", "code": "too_many_requests"}, "too_many_requests"),
        (500, {"detail": "Inference failed: boom", "code": "inference_failed"}, "inference_failed"),
        (502, b"<html><body>502 Bad Gateway</body></html>", "unexpected_answer"),
        (504, {"detail": "Not processed within 10 s.", "code": "deadline_exceeded"}, "deadline_exceeded"),
    ],
    ids=["400", "401", "429", "500", "502", "504"],
)
def test_other_error_answers_are_never_retried(status: int, body: object, code: str):
    # A 5xx other than 503 may come after the decision was recorded (a proxy's 504 while the service
    # answered): a retry could record the item twice.
    answer = Scripted(status, body, {"Retry-After": "1", "X-Request-ID": "from-the-service"})
    with StubServer(answer, OK) as stub, Client(stub.url, retry=FAST) as client, pytest.raises(ApiError) as raised:
        client.classify(PHOTO, request_id="from-the-caller")
    assert (raised.value.status, raised.value.code, raised.value.attempts) == (status, code, 1)
    assert raised.value.request_id == "from-the-service"
    assert len(stub.received) == 1
    if code == "unexpected_answer":
        assert raised.value.detail == "<html><body>502 Bad Gateway</body></html>"


def test_the_body_request_id_wins_over_the_header():
    body = {"detail": "The data is not an image in a recognised format.", "code": "not_an_image", "request_id": "b"}
    with (
        StubServer(Scripted(415, body, {"X-Request-ID": "h"})) as stub,
        Client(stub.url) as client,
        pytest.raises(ApiError) as raised,
    ):
        client.classify(PHOTO)
    assert raised.value.request_id == "b"


def test_a_retry_after_past_the_time_budget_is_not_waited_for():
    policy = RetryPolicy(max_attempts=5, max_total_s=5.0)
    with StubServer(queue_full("60"), OK) as stub, Client(stub.url, retry=policy) as client:
        started = time.monotonic()
        with pytest.raises(ApiError) as raised:
            client.classify(PHOTO)
    assert time.monotonic() - started < 1.0 + SLACK_S
    assert (raised.value.code, raised.value.retry_after_s, raised.value.attempts) == ("queue_full", 60.0, 1)
    assert len(stub.received) == 1


def test_a_connection_never_made_is_retried_then_raised():
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with Client(closed, retry=FAST) as client, pytest.raises(TransportError) as raised:
        client.classify(PHOTO, request_id="never-sent")
    assert (raised.value.sent, raised.value.attempts, raised.value.request_id) == (False, 3, "never-sent")
    assert isinstance(raised.value.__cause__, httpx.ConnectError)


def test_a_read_timeout_is_not_retried():
    # The photo was sent: the service may have recorded a decision for it.
    with StubServer(Scripted(200, CLASSIFY_EXAMPLE, delay_s=1.0)) as stub:
        with Client(stub.url, read_timeout_s=0.3, retry=FAST) as client, pytest.raises(TransportError) as raised:
            client.classify(PHOTO)
        assert (raised.value.sent, raised.value.attempts) == (True, 1)
        assert isinstance(raised.value.__cause__, httpx.ReadTimeout)
        assert len(stub.received) == 1


def test_an_answer_off_the_schema_raises_invalid_answer():
    with (
        StubServer(Scripted(200, {"label": "Ankle boot"})) as stub,
        Client(stub.url) as client,
        pytest.raises(InvalidAnswer) as raised,
    ):
        client.classify(PHOTO)
    assert raised.value.status == 200 and "not a ClassifyResponse" in str(raised.value)


def test_async_batch_is_retried_after_retry_after():
    async def scenario(url: str) -> int:
        async with AsyncClient(url, retry=FAST) as client:
            answer = await client.classify_batch([PHOTO, ("b.png", b"\x89PNG more")], item_ids=["a", None])
            return answer.count

    with StubServer(queue_full("1"), Scripted(200, BATCH_EXAMPLE)) as stub:
        assert asyncio.run(scenario(stub.url)) == BATCH_EXAMPLE["count"]
    first, second = stub.received
    assert first.path == second.path == "/classify/batch"
    assert 1.0 <= second.at - first.at <= 1.0 + FAST.backoff_s + SLACK_S
    assert PHOTO in second.body and b"\x89PNG more" in second.body and b'name="item_id"' in second.body


# --- the rules, without a server -----------------------------------------------------------------
def test_retry_after_values():
    now = dt.datetime(2025, 7, 1, 12, 0, 0, tzinfo=dt.UTC)
    assert retry_after_s("3") == 3.0
    assert retry_after_s(" 0 ") == 0.0
    assert retry_after_s("Tue, 01 Jul 2025 12:00:05 GMT", now) == 5.0
    assert retry_after_s("Tue, 01 Jul 2025 11:00:00 GMT", now) == 0.0  # in the past: at once
    for unreadable in (None, "", "soon", "-1", "1.5", "nan"):
        assert retry_after_s(unreadable) is None


def test_backoff_grows_is_capped_and_jittered():
    policy = RetryPolicy(backoff_s=0.5, max_backoff_s=3.0)
    assert [policy.delay_s(n, None, lambda: 0.999999) for n in range(5)] == pytest.approx([0.5, 1, 2, 3, 3], abs=1e-4)
    assert policy.delay_s(3, None, lambda: 0.0) == 0.0  # full jitter
    assert policy.delay_s(0, 2.0, lambda: 0.5) == 2.25  # Retry-After, plus up to backoff_s


def test_attempts_are_bounded_in_number_and_time():
    now = [0.0]
    attempts = Attempts(RetryPolicy(max_attempts=3, max_total_s=10.0), clock=lambda: now[0], draw=lambda: 0.0)
    refused = httpx.Response(503, headers={"Retry-After": "4"})
    attempts.start()
    assert attempts.after_answer(refused) == 4.0
    now[0] = 4.0
    attempts.start()
    assert attempts.after_answer(refused) == 4.0
    now[0] = 8.0
    attempts.start()
    assert attempts.after_answer(refused) is None  # the third was the last
    late = Attempts(RetryPolicy(max_total_s=10.0), clock=lambda: now[0], draw=lambda: 0.0)
    now[0] = 15.0
    late.start()
    assert late.after_answer(refused) is None  # 7 + 4 s would end past the 10 s budget
    assert late.after_answer(httpx.Response(500)) is None
    assert late.after_failure(httpx.ReadError("reset")) is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_attempts": 0}, "max_attempts must be at least 1, not 0"),
        ({"backoff_s": -1.0}, "backoff_s must be a number of seconds >= 0, not -1.0"),
        ({"max_total_s": float("nan")}, "max_total_s must be a number of seconds >= 0, not nan"),
    ],
)
def test_a_bad_policy_is_refused_naming_the_value(kwargs: dict[str, float], message: str):
    with pytest.raises(ValueError, match=message):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]
