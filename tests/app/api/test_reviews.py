"""The decision log through the API: every answer on record, photos kept for review and audit,
the review queue, verdicts and corrections, roles, and the figures reviews feed."""

from __future__ import annotations

import io
import threading

import numpy as np
import pytest
from PIL import Image
from service_helpers import assert_error, metric, png

from app.api.schemas import DecisionList, DecisionRecord, ReviewQueue, ReviewRecord

SCANNER = "scanner-1:scanner:" + "s" * 20
REVIEWER = "alice:reviewer:" + "r" * 20
ADMIN = "ops:admin:" + "a" * 20
BARE = "b" * 24  # a key from before roles: an admin named by its hash


def key(entry: str) -> dict[str, str]:
    return {"X-API-Key": entry.split(":")[-1]}


def blank_photo() -> bytes:
    """An empty belt: answered, and sent to REVIEW with no_garment."""
    buffer = io.BytesIO()
    Image.new("RGB", (320, 240), (200, 200, 205)).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def classify(client, data: bytes, item_id: str | None = None, headers: dict | None = None) -> dict:
    form = {} if item_id is None else {"item_id": item_id}
    response = client.post("/classify", files={"file": ("scan", data)}, data=form, headers=headers or {})
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture
def logged(make_client):
    return make_client(audit_rate=0.0)


def test_a_review_item_waits_with_its_photo_until_a_person_decides(logged, test_set):
    photo = blank_photo()
    answer = classify(logged, photo, item_id="SKU-7")
    assert answer["needs_review"] and "no_garment" in answer["review_reasons"] and answer["bin"] == "REVIEW"
    auto = classify(logged, png(test_set[0][0]))  # an ankle boot, auto-sorted: no photo kept
    assert not auto["needs_review"]

    queue = ReviewQueue.model_validate(logged.get("/v1/reviews").json())
    assert [item.decision_id for item in queue.items] == [answer["decision_id"]]
    assert queue.pending == 1 and queue.next_after is None and 0 <= queue.oldest_pending_age_s < 60
    waiting = queue.items[0]
    assert (waiting.item_id, waiting.label, waiting.bin, waiting.audit) == ("SKU-7", answer["label"], "REVIEW", False)
    assert waiting.top_k[0].probability == answer["top_k"][0]["probability"] and waiting.reviews == []
    assert waiting.season_confidence == answer["season_confidence"]  # what review-threshold reads back

    original = logged.get(f"/v1/decisions/{answer['decision_id']}/photo")
    assert original.status_code == 200 and original.content == photo
    assert original.headers["content-type"] == "image/jpeg"
    seen = logged.get(f"/v1/decisions/{answer['decision_id']}/photo", params={"view": "seen"})
    assert Image.open(io.BytesIO(seen.content)).size == (28, 28)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(seen.content))), np.zeros((28, 28), np.uint8))
    assert_error(logged.get(f"/v1/decisions/{auto['decision_id']}/photo"), 404, "photo_not_kept")

    verdict = logged.post(f"/v1/decisions/{answer['decision_id']}/review", json={"class_id": 9, "reviewer": "kim"})
    assert verdict.status_code == 201, verdict.text
    review = ReviewRecord.model_validate(verdict.json())
    # The bin follows from the policy for the true class: ankle boots are winter, BIN-W.
    assert (review.label, review.season, review.bin, review.reviewer, review.sequence) == (
        "Ankle boot",
        "winter",
        "BIN-W",
        "kim",
        1,
    )
    assert ReviewQueue.model_validate(logged.get("/v1/reviews").json()).pending == 0
    assert (
        metric(
            logged,
            "garment_sorter_reviews_total",
            model_label=answer["label"],
            reviewed_label="Ankle boot",
            audit="false",
        )
        == 1
    )

    second = logged.post(f"/v1/decisions/{answer['decision_id']}/review", json={"class_id": 7})
    assert_error(second, 409, "already_reviewed")
    assert review.review_id in second.json()["detail"]
    corrected = logged.post(
        f"/v1/decisions/{answer['decision_id']}/review", json={"class_id": 5, "corrects": review.review_id}
    )
    assert corrected.status_code == 201 and corrected.json()["sequence"] == 2 and corrected.json()["bin"] == "BIN-S"
    stored = DecisionRecord.model_validate(logged.get(f"/v1/decisions/{answer['decision_id']}").json())
    assert [r.label for r in stored.reviews] == ["Ankle boot", "Sandal"]  # both kept, the last is the verdict
    assert stored.reviews[1].corrects == review.review_id


def test_decisions_by_item_newest_first_and_unknown_ids(logged, test_set):
    first = classify(logged, blank_photo(), item_id="SKU-42")
    second = classify(logged, blank_photo(), item_id="SKU-42")
    found = DecisionList.model_validate(logged.get("/v1/decisions", params={"item_id": "SKU-42"}).json())
    assert [d.decision_id for d in found.items] == [second["decision_id"], first["decision_id"]]
    assert logged.get("/v1/decisions", params={"item_id": "SKU-none"}).json() == {"items": []}
    assert_error(logged.get("/v1/decisions/01a22de4-0000-7000-8000-000000000000"), 404, "decision_not_found")
    assert_error(
        logged.post("/v1/decisions/01a22de4-0000-7000-8000-000000000000/review", json={"class_id": 1}),
        404,
        "decision_not_found",
    )
    assert_error(logged.get("/v1/decisions/" + "x" * 37), 422, "validation_error")
    assert_error(
        logged.post(f"/v1/decisions/{first['decision_id']}/review", json={"class_id": 10}), 422, "validation_error"
    )
    assert_error(
        logged.post(f"/v1/decisions/{first['decision_id']}/review", json={"class_id": 1, "extra": 1}),
        422,
        "validation_error",
    )


def test_the_audit_sample_keeps_auto_sorted_photos_and_measures_live_accuracy(make_client, test_set):
    client = make_client(audit_rate=1.0)
    answer = classify(client, png(test_set[0][0]))
    assert not answer["needs_review"]
    assert ReviewQueue.model_validate(client.get("/v1/reviews").json()).pending == 0
    audit = ReviewQueue.model_validate(client.get("/v1/reviews", params={"audit": True}).json())
    assert [d.decision_id for d in audit.items] == [answer["decision_id"]] and audit.items[0].audit
    assert client.get(f"/v1/decisions/{answer['decision_id']}/photo").content == png(test_set[0][0])
    client.post(f"/v1/decisions/{answer['decision_id']}/review", json={"class_id": 9})
    assert (
        metric(
            client, "garment_sorter_reviews_total", model_label="Ankle boot", reviewed_label="Ankle boot", audit="true"
        )
        == 1
    )


def test_the_review_queue_pages_oldest_first(logged):
    ids = [classify(logged, blank_photo())["decision_id"] for _ in range(5)]
    first = logged.get("/v1/reviews", params={"limit": 2}).json()
    second = logged.get("/v1/reviews", params={"limit": 2, "after": first["next_after"]}).json()
    third = logged.get("/v1/reviews", params={"limit": 2, "after": second["next_after"]}).json()
    assert [d["decision_id"] for page in (first, second, third) for d in page["items"]] == ids
    assert first["pending"] == 5 and third["next_after"] is None


def test_roles_scanner_classifies_reviewer_reviews_admin_does_both(make_client, test_set):
    client = make_client(api_keys=",".join([SCANNER, REVIEWER, ADMIN, BARE]), audit_rate=0.0)
    data = blank_photo()
    by_scanner = client.post("/classify", content=data, headers={"Content-Type": "image/jpeg", **key(SCANNER)})
    assert by_scanner.status_code == 200
    assert_error(
        client.post("/classify", content=data, headers={"Content-Type": "image/jpeg", **key(REVIEWER)}),
        403,
        "forbidden",
    )
    assert_error(client.get("/v1/reviews", headers=key(SCANNER)), 403, "forbidden")
    assert_error(client.get("/v1/reviews"), 401, "unauthorized")
    decision_id = by_scanner.json()["decision_id"]
    stored = client.get(f"/v1/decisions/{decision_id}", headers=key(REVIEWER)).json()
    assert stored["caller"] == "scanner-1"
    verdict = client.post(
        f"/v1/decisions/{decision_id}/review", json={"class_id": 0, "reviewer": "mallory"}, headers=key(REVIEWER)
    )
    assert verdict.json()["reviewer"] == "alice"  # with keys, the key says who reviewed
    for admin in (ADMIN, BARE):
        assert (
            client.post("/classify", content=data, headers={"Content-Type": "image/jpeg", **key(admin)}).status_code
            == 200
        )
        assert client.get("/v1/reviews", headers=key(admin)).status_code == 200
    bare_name = client.get("/v1/decisions", params={"item_id": "x"}, headers=key(BARE))
    assert bare_name.status_code == 200


def test_concurrent_reviewers_one_wins_the_other_gets_409(logged):
    decision_id = classify(logged, blank_photo())["decision_id"]
    statuses: list[int] = []
    start = threading.Barrier(6)

    def review(class_id: int) -> None:
        start.wait()
        statuses.append(logged.post(f"/v1/decisions/{decision_id}/review", json={"class_id": class_id}).status_code)

    threads = [threading.Thread(target=review, args=(c,)) for c in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [201, 409, 409, 409, 409, 409]
    assert len(logged.get(f"/v1/decisions/{decision_id}").json()["reviews"]) == 1


def test_a_disk_that_refuses_photos_never_stops_classification(make_client, tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "photos").write_text("a file where the photo store's directory should be")
    client = make_client(data_dir=str(data_dir), audit_rate=0.0)
    answer = classify(client, blank_photo())
    assert answer["needs_review"]
    assert client.get(f"/v1/decisions/{answer['decision_id']}").json()["photo_sha256"] is None
    assert metric(client, "garment_sorter_photos_not_kept_total") == 1
