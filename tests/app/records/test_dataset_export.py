"""The dataset export: each decision's latest verdict since a date, with its photos; what has no
photo any more is counted, not written."""

from __future__ import annotations

import asyncio
import datetime as dt

import numpy as np
import pytest
from test_log import row

from app.metrics import Metrics
from app.records import queries
from app.records.export import export_reviewed
from app.records.ids import new_id
from app.records.log import DecisionLog
from app.records.photos import PhotoStore
from contract.warehouse import read_warehouse_set

SEEN = np.full((28, 28), 7, np.uint8)
DAY = dt.datetime(2026, 11, 20, tzinfo=dt.UTC)


def review(decision_id: str, class_id: int, at: dt.datetime) -> dict:
    return {
        "review_id": new_id(),
        "decision_id": decision_id,
        "created_at": at,
        "reviewer": "kim",
        "class_id": class_id,
        "label": "x",
        "season": "winter",
        "bin": "BIN-W",
        "zone": "reserve",
        "policy_version": "p",
    }


@pytest.fixture
def recorded(tmp_path):
    url = f"sqlite:///{tmp_path / 'decisions.db'}"
    store = PhotoStore(tmp_path / "photos")
    log = DecisionLog(url, tmp_path / "spool.jsonl", Metrics())
    log.start()
    rows = []
    for number, audit in enumerate([False, True, False, False]):
        decision = row(f"SKU-{number}", created_at=DAY)
        decision["audit"] = audit
        decision["photo_sha256"] = store.put(f"photo {number}".encode(), SEEN) if number != 3 else None
        rows.append(decision)
    asyncio.run(log.record(rows))
    yield log, store, rows
    log.stop(5)


def test_latest_verdicts_since_the_date_with_their_photos(recorded, tmp_path):
    log, store, rows = recorded
    first = queries.add_review(log.engine, review(rows[0]["decision_id"], 1, DAY), None)
    queries.add_review(
        log.engine, review(rows[0]["decision_id"], 3, DAY + dt.timedelta(days=2)), first.review["review_id"]
    )
    queries.add_review(log.engine, review(rows[1]["decision_id"], 9, DAY + dt.timedelta(days=1)), None)
    queries.add_review(log.engine, review(rows[2]["decision_id"], 5, DAY - dt.timedelta(days=5)), None)  # before
    queries.add_review(log.engine, review(rows[3]["decision_id"], 0, DAY + dt.timedelta(days=1)), None)  # no photo
    manifest = export_reviewed(log.engine, store, DAY, tmp_path / "out")
    assert (manifest["items"], manifest["skipped_without_photo"]) == (2, 1)
    assert manifest["by_source"] == {"audit": 1, "review": 1}
    exported = read_warehouse_set(tmp_path / "out")
    assert exported.decision_ids == (rows[0]["decision_id"], rows[1]["decision_id"])
    assert exported.labels.tolist() == [3, 9]  # the correction is the verdict
    assert exported.sources == ("review", "audit")
    assert np.array_equal(exported.images[0], SEEN)
    with pytest.raises(FileExistsError):
        export_reviewed(log.engine, store, DAY, tmp_path / "out")
