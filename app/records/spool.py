"""An append-only, fsync'd file of decisions the database could not take yet.

One JSON object per line. A record is in the spool once ``append`` returns: the line is written
and fsync'd, so the answer that waits on it may be given. A crash in the middle of an append
leaves a torn last line; no answer waited on it, so it is cut off when the spool is next opened.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

DATETIME_FIELDS = ("created_at",)


def _encode(value: object) -> str:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    raise TypeError(f"cannot spool {type(value).__name__}")


class Spool:
    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._cut_torn_tail()
        self.pending = sum(1 for _ in self._lines())

    def _cut_torn_tail(self) -> None:
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        whole = data[: data.rfind(b"\n") + 1]
        if len(whole) != len(data):
            with self.path.open("r+b") as file:
                file.truncate(len(whole))
                os.fsync(file.fileno())

    def _lines(self) -> list[bytes]:
        if not self.path.exists():
            return []
        return [line for line in self.path.read_bytes().split(b"\n") if line]

    def append(self, rows: list[dict[str, Any]]) -> None:
        """Write and fsync; OSError (a full disk) leaves the records unspooled."""
        payload = "".join(json.dumps(row, default=_encode, separators=(",", ":")) + "\n" for row in rows)
        with self.path.open("ab") as file:
            start = file.tell()
            try:
                file.write(payload.encode())
                file.flush()
                os.fsync(file.fileno())
            except OSError:
                file.truncate(start)  # no half-written records behind a failed append
                raise
        self.pending += len(rows)

    def read(self) -> list[dict[str, Any]]:
        """Every spooled record, oldest first."""
        rows = [json.loads(line) for line in self._lines()]
        for row in rows:
            for name in DATETIME_FIELDS:
                row[name] = dt.datetime.fromisoformat(row[name])
        return rows

    def clear(self) -> None:
        """Called once the database holds every spooled record."""
        with self.path.open("r+b") as file:
            file.truncate(0)
            os.fsync(file.fileno())
        self.pending = 0
