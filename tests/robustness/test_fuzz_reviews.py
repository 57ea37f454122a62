"""Hostile input to the review routes of a real server: any JSON or bytes as a verdict, any text as
a decision id or query. Every answer is a documented 4xx with its code, never a 5xx, and no path
reaches a file outside the photo store."""

from __future__ import annotations

from collections import Counter
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from robustness_helpers import API_KEY

from bench.server import Server

SETTINGS = settings(
    max_examples=300, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck)
)
HEADERS = {"X-API-Key": API_KEY}
EXPECTED = {"validation_error", "decision_not_found", "bad_request", "not_found", "photo_not_kept"}
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
verdicts = st.fixed_dictionaries(
    {"class_id": st.integers(-5, 15) | st.text(max_size=3)},
    optional={"reviewer": st.text(max_size=80), "corrects": st.text(max_size=40) | st.integers()},
)
TRAVERSALS = [
    "../../../../etc/passwd",
    "..%2F..%2F..%2Fetc%2Fpasswd",
    "%2e%2e/%2e%2e/etc/passwd",
    "/etc/passwd",
    "photo%00.orig",
    "....//....//etc/passwd",
]


@pytest.fixture(scope="module")
def client(server: Server):
    with httpx.Client(base_url=server.url, headers=HEADERS, timeout=10) as http:
        yield http


def check(response: httpx.Response, tally: Counter[str]) -> None:
    assert response.status_code < 500, response.text
    body = response.json()
    assert body["code"] in EXPECTED, body
    tally[body["code"]] += 1


def segment(text: str) -> str:
    """``text`` as one path segment, dots too: httpx would resolve an id of "." or ".." away
    (/v1/decisions/./review is /v1/decisions/review), and the server would never see it."""
    return quote(text, safe="").replace(".", "%2E")


def test_a_dot_decision_id_reaches_the_review_route(client: httpx.Client) -> None:
    for dots in (".", ".."):
        response = client.post(f"/v1/decisions/{segment(dots)}/review", json={"class_id": 1})
        assert (response.status_code, response.json()["code"]) == (404, "decision_not_found")


def test_any_verdict_body_is_a_clear_4xx(client: httpx.Client) -> None:
    tally: Counter[str] = Counter()

    @SETTINGS
    @given(body=json_values | verdicts, decision_id=st.text(min_size=1, max_size=40))
    def run(body: object, decision_id: str) -> None:
        check(client.post(f"/v1/decisions/{segment(decision_id)}/review", json=body), tally)

    @SETTINGS
    @given(raw=st.binary(max_size=200))
    def raw_bodies(raw: bytes) -> None:
        check(
            client.post(
                "/v1/decisions/019ad6f2-0000-7000-8000-000000000000/review",
                content=raw,
                headers={"Content-Type": "application/json"},
            ),
            tally,
        )

    run()
    raw_bodies()
    assert set(tally) <= EXPECTED and sum(tally.values()) >= 600


def test_no_path_reaches_outside_the_photo_store(client: httpx.Client) -> None:
    for attempt in TRAVERSALS:
        for view in ("original", "seen"):
            response = client.get(f"/v1/decisions/{attempt}/photo", params={"view": view})
            assert response.status_code in (404, 422), (attempt, response.status_code)
            assert b"root:" not in response.content


def test_any_query_is_a_clear_4xx_or_an_answer(client: httpx.Client) -> None:
    tally: Counter[str] = Counter()

    @SETTINGS
    @given(
        item_id=st.text(max_size=200),
        limit=st.integers(-5, 200).map(str) | st.text(max_size=6),
        after=st.text(max_size=50),
    )
    def run(item_id: str, limit: str, after: str) -> None:
        for response in (
            client.get("/v1/decisions", params={"item_id": item_id, "limit": limit}),
            client.get("/v1/reviews", params={"limit": limit, "after": after}),
        ):
            if response.status_code == 200:
                tally["answered"] += 1
                continue
            check(response, tally)

    run()
    assert tally["answered"] > 0 and tally["validation_error"] > 0, dict(tally)
