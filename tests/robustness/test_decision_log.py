"""The decision log under faults, with real processes and real databases: a 200 is a committed
decision even when the server is killed right after it, and PostgreSQL going away under load
costs no answer, loses no decision and records none twice."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import httpx
import pytest
from pg_cluster import available, running_cluster, wait_until
from robustness_helpers import MODEL_DIR, Load, metric, scrape
from sqlalchemy import create_engine, text

from bench.server import start_server, stop_server

pytestmark = pytest.mark.slow
CLIENTS = 8


def wait_for(load: Load, answers: int, timeout_s: float = 60.0) -> None:
    assert wait_until(lambda: len(load.answered) >= answers, timeout_s), dict(load.statuses)


def sqlite_ids(data_dir: Path) -> list[str]:
    with sqlite3.connect(data_dir / "decisions.db") as connection:
        return [row[0] for row in connection.execute("SELECT decision_id FROM decisions")]


def test_kill_9_under_load_loses_no_answered_decision(tmp_path):
    data_dir = tmp_path / "data"
    server = start_server({"SORTER_MODEL_DIR": str(MODEL_DIR), "SORTER_DATA_DIR": str(data_dir)})
    try:
        with Load(server) as load:
            wait_for(load, 300)
            server.process.kill()  # SIGKILL: no drain, no flush, no goodbye
            server.process.wait(10)
            time.sleep(0.5)
    finally:
        stop_server(server)
        server.log_path.unlink(missing_ok=True)
    stored = sqlite_ids(data_dir)
    assert len(stored) == len(set(stored))
    missing = set(load.answered) - set(stored)
    assert not missing, f"{len(missing)} of {len(load.answered)} answered decisions are not on record"
    assert len(load.answered) >= 300 and load.statuses[200] == len(load.answered)
    # Restarted on the same data directory, the server serves and records on top.
    with_restart = start_server({"SORTER_MODEL_DIR": str(MODEL_DIR), "SORTER_DATA_DIR": str(data_dir)})
    try:
        response = httpx.post(
            with_restart.url + "/classify", content=load.images[0], headers={"Content-Type": "image/png"}
        )
        assert response.status_code == 200
    finally:
        assert stop_server(with_restart) == 0
        with_restart.log_path.unlink(missing_ok=True)
    assert response.json()["decision_id"] in sqlite_ids(data_dir)


@pytest.mark.skipif(not available(), reason="PostgreSQL binaries not installed (apt-get install postgresql)")
def test_postgresql_stopped_under_load_no_5xx_spool_drains_counts_reconcile(tmp_path):
    with running_cluster() as cluster:
        env = {
            "SORTER_MODEL_DIR": str(MODEL_DIR),
            "SORTER_DATA_DIR": str(tmp_path / "data"),
            "SORTER_DATABASE_URL": cluster.url,
        }
        server = start_server(env)
        try:
            with Load(server) as load:
                wait_for(load, 100)
                cluster.stop()
                stopped_at = len(load.answered)
                wait_for(load, stopped_at + 200)  # answered while the database is away
                spooled = metric(scrape(server), "garment_sorter_decision_log_spool_records")
                cluster.start()
                wait_for(load, len(load.answered) + 100)
            drained = wait_until(
                lambda: metric(scrape(server), "garment_sorter_decision_log_spool_records") == 0, timeout_s=30
            )
            samples = scrape(server)
        finally:
            assert stop_server(server) == 0, server.log()[-3000:]
            server.log_path.unlink(missing_ok=True)
        engine = create_engine(cluster.url.replace("postgresql://", "postgresql+psycopg://"))
        with engine.connect() as connection:
            stored = [row[0] for row in connection.execute(text("SELECT decision_id FROM decisions"))]
        engine.dispose()
    assert all(status == 200 for status in load.statuses), dict(load.statuses)  # zero 5xx, zero errors
    assert spooled > 0 and drained
    assert metric(samples, "garment_sorter_decisions_replayed_total") >= spooled
    assert len(stored) == len(set(stored))  # nothing twice
    assert sorted(stored) == sorted(load.answered)  # nothing lost, nothing extra
