"""The spool: what append returned for survives, a torn tail is cut, clear empties it."""

from __future__ import annotations

import datetime as dt

from app.records.spool import Spool

WHEN = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.UTC)


def rows(*ids: str) -> list[dict]:
    return [{"decision_id": i, "created_at": WHEN, "top_k": [{"class_id": 1}]} for i in ids]


def test_appended_records_come_back_in_order_with_their_times(tmp_path):
    spool = Spool(tmp_path / "spool" / "decisions.jsonl")
    spool.append(rows("a", "b"))
    spool.append(rows("c"))
    assert spool.pending == 3
    reopened = Spool(tmp_path / "spool" / "decisions.jsonl")
    assert reopened.pending == 3
    assert reopened.read() == rows("a", "b", "c")


def test_a_torn_last_line_is_cut_when_the_spool_is_opened(tmp_path):
    path = tmp_path / "decisions.jsonl"
    Spool(path).append(rows("a"))
    with path.open("ab") as file:  # a crash in the middle of the next append
        file.write(b'{"decision_id":"b","crea')
    spool = Spool(path)
    assert spool.pending == 1 and spool.read() == rows("a")
    spool.append(rows("c"))
    assert [row["decision_id"] for row in Spool(path).read()] == ["a", "c"]


def test_clear_empties_it(tmp_path):
    spool = Spool(tmp_path / "decisions.jsonl")
    spool.append(rows("a"))
    spool.clear()
    assert spool.pending == 0 and spool.read() == [] and Spool(tmp_path / "decisions.jsonl").pending == 0
