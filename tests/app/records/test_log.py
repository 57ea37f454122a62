"""The decision log: committed before record() returns, grouped, spooled while the database is
away and replayed in order when it is back, never twice."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from pg_cluster import available, running_cluster, wait_until
from sqlalchemy import func, select

from app.metrics import Metrics
from app.records.database import connect, migrate
from app.records.ids import new_id
from app.records.log import DecisionLog, NotRecorded
from app.records.schema import decisions
from app.records.spool import Spool

needs_postgresql = pytest.mark.skipif(not available(), reason="PostgreSQL binaries not installed")


def row(item_id: str | None = None, created_at: dt.datetime | None = None) -> dict:
    return {
        "decision_id": new_id(),
        "created_at": created_at or dt.datetime.now(dt.UTC),
        "item_id": item_id,
        "caller": "scanner-1",
        "model_name": "fashion-cnn",
        "model_version": 9,
        "policy_version": "f20629d50a21",
        "review_threshold": 0.92,
        "class_id": 9,
        "label": "Ankle boot",
        "confidence": 0.98,
        "top_k": [{"class_id": 9, "label": "Ankle boot", "probability": 0.98}],
        "season": "winter",
        "season_confidence": 0.99,
        "bin": "BIN-W",
        "zone": "reserve",
        "needs_review": False,
        "review_reasons": [],
        "box": {"left": 1, "top": 2, "right": 30, "bottom": 40},
        "timings_ms": {"preprocess": 1.0, "queue": 0.1, "inference": 2.0},
        "photo_sha256": None,
        "audit": False,
    }


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def stored_ids(url: str) -> list[str]:
    engine = connect(url)
    with engine.connect() as connection:
        ids = list(connection.execute(select(decisions.c.decision_id).order_by(decisions.c.decision_id)).scalars())
    engine.dispose()
    return ids


async def record_all(log: DecisionLog, groups: list[list[dict]]) -> None:
    await asyncio.gather(*(log.record(group) for group in groups))


def test_a_recorded_decision_is_in_the_database_as_given(tmp_path):
    url = f"sqlite:///{tmp_path / 'decisions.db'}"
    log = DecisionLog(url, tmp_path / "spool.jsonl", Metrics())
    log.start()
    given = row("SKU-1")
    asyncio.run(record_all(log, [[given]]))
    engine = connect(url)  # another connection, as another process would read it
    with engine.connect() as connection:
        stored = dict(connection.execute(select(decisions)).one()._mapping)
    log.stop(5)
    assert stored["created_at"].replace(tzinfo=dt.UTC) == given["created_at"]
    assert {k: v for k, v in stored.items() if k != "created_at"} == {
        k: v for k, v in given.items() if k != "created_at"
    }


def test_decisions_waiting_together_share_a_transaction(tmp_path):
    url = f"sqlite:///{tmp_path / 'decisions.db'}"
    metrics = Metrics()
    log = DecisionLog(url, tmp_path / "spool.jsonl", metrics)
    log.start()
    groups = [[row(f"SKU-{i}")] for i in range(300)]
    asyncio.run(record_all(log, groups))
    log.stop(5)
    assert sorted(stored_ids(url)) == sorted(group[0]["decision_id"] for group in groups)
    transactions = sample(metrics, "garment_sorter_decision_log_write_seconds_count")
    assert sample(metrics, "garment_sorter_decisions_recorded_total", destination="database") == 300
    assert 1 <= transactions < 300


def test_a_spool_left_by_a_crash_is_replayed_at_start_and_nothing_twice(tmp_path):
    url = f"sqlite:///{tmp_path / 'decisions.db'}"
    already = row("committed, then the crash came before the spool was cleared")
    migrate(engine := connect(url))
    with engine.begin() as connection:
        connection.execute(decisions.insert(), [already])
    engine.dispose()
    spooled = [already, row("a"), row("b")]
    Spool(tmp_path / "spool.jsonl").append(spooled)
    metrics = Metrics()
    log = DecisionLog(url, tmp_path / "spool.jsonl", metrics)
    log.start()
    fresh = row("c")
    asyncio.run(record_all(log, [[fresh]]))
    log.stop(5)
    assert stored_ids(url) == sorted(r["decision_id"] for r in [*spooled, fresh])
    assert Spool(tmp_path / "spool.jsonl").pending == 0
    assert sample(metrics, "garment_sorter_decisions_replayed_total") == 3


def test_a_spool_written_before_season_confidence_was_kept_replays_with_null(tmp_path):
    url = f"sqlite:///{tmp_path / 'decisions.db'}"
    older = {k: v for k, v in row("spooled by the previous release").items() if k != "season_confidence"}
    newer = row("spooled by this one")
    Spool(tmp_path / "spool.jsonl").append([older, newer])
    log = DecisionLog(url, tmp_path / "spool.jsonl", Metrics())
    log.start()
    log.stop(5)
    engine = connect(url)
    with engine.connect() as connection:
        stored = dict(connection.execute(select(decisions.c.item_id, decisions.c.season_confidence)).all())
    engine.dispose()
    assert stored == {older["item_id"]: None, newer["item_id"]: 0.99}
    assert Spool(tmp_path / "spool.jsonl").pending == 0


@needs_postgresql
def test_postgresql_away_decisions_spool_then_replay_in_order(tmp_path):
    with running_cluster() as cluster:
        metrics = Metrics()
        log = DecisionLog(cluster.url, tmp_path / "spool.jsonl", metrics, retry_s=0.2)
        log.start()
        first = [row("before")]
        asyncio.run(record_all(log, [first]))
        cluster.stop()
        away = [[row(f"away-{i}")] for i in range(20)]
        asyncio.run(record_all(log, away))  # returns: the decisions are fsync'd in the spool
        assert log.backlog == 20
        assert sample(metrics, "garment_sorter_decisions_recorded_total", destination="spool") == 20
        assert sample(metrics, "garment_sorter_decision_log_spool_records") == 20
        cluster.start()
        assert wait_until(lambda: log.backlog == 0, timeout_s=20), "the spool did not drain"
        after = [row("after")]
        asyncio.run(record_all(log, [after]))
        log.stop(5)
        expected = [r for group in [first, *away, after] for r in group]
        engine = connect(cluster.url)
        with engine.connect() as connection:
            stored = list(connection.execute(select(decisions.c.decision_id, decisions.c.item_id)))
            count = connection.execute(select(func.count()).select_from(decisions)).scalar()
        engine.dispose()
    assert count == len(expected) == 22
    # UUIDv7 ids sort by time: ordered by id, the log reads in arrival order.
    assert [item for _, item in sorted(stored)] == [r["item_id"] for r in expected]
    assert sample(metrics, "garment_sorter_decisions_replayed_total") == 20


def test_a_decision_that_cannot_be_stored_fails_alone_and_the_log_goes_on(tmp_path):
    # Nothing listens on port 1: the database is unreachable at once, so decisions go to the spool.
    log = DecisionLog("postgresql://sorter@127.0.0.1:1/decisions", tmp_path / "spool.jsonl", Metrics(), retry_s=60)
    log.start()
    broken = row("not JSON")
    broken["box"] = {1, 2}  # a set: the spool cannot write it
    with pytest.raises(NotRecorded):
        asyncio.run(record_all(log, [[broken]]))
    good = row("fine")
    asyncio.run(record_all(log, [[good]]))
    log.stop(5)
    assert [r["decision_id"] for r in Spool(tmp_path / "spool.jsonl").read()] == [good["decision_id"]]
