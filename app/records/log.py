"""The decision log's writer: one thread that commits whatever answers are waiting, together.

Requests hand their decisions to ``record`` and wait; the answer goes out only once the decision
is committed, or fsync'd into the spool when the database is unreachable. The writer takes every
decision waiting when it wakes (the answers of one model batch arrive together) and commits them
in one transaction, so the cost of a commit is shared by a batch. Nothing runs on the event loop.

While the spool holds anything, new decisions join it behind the old ones (the log keeps arrival
order) and the writer retries the database every ``retry_s``; the replay inserts with "on conflict
do nothing" keyed by ``decision_id``, so a replay interrupted after its commit never records a
decision twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Engine, Insert, insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from app.records.database import connect, migrate
from app.records.schema import decisions
from app.records.spool import Spool

log = logging.getLogger(__name__)

Rows = list[dict[str, Any]]
_STOP = object()
MAX_GROUP_ROWS = 2048  # decisions per transaction at most (a few model batches)
REPLAY_CHUNK_ROWS = 1000


class LogObserver(Protocol):
    """What the log reports (``app.metrics.Metrics`` implements it)."""

    def recorded(self, destination: str, count: int, duration_s: float) -> None: ...
    def replayed(self, count: int) -> None: ...
    def not_recorded(self, count: int) -> None: ...
    def watch_spool(self, pending: Callable[[], int]) -> None: ...


class NotRecorded(Exception):
    """Neither the database nor the spool took the decisions."""


class DecisionLog:
    def __init__(self, url: str, spool_path: Path, observer: LogObserver, retry_s: float = 1.0):
        self.url = url
        self.spool = Spool(spool_path)
        self.observer = observer
        self.retry_s = retry_s
        self.engine: Engine | None = None
        self._migrated = False
        self._next_attempt = 0.0
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="decision-log", daemon=True)
        observer.watch_spool(lambda: self.spool.pending)

    # --- the service's side ---------------------------------------------------------------------
    def start(self) -> None:
        self.engine = connect(self.url)
        self._connect()  # an unreachable database is not fatal: decisions spool until it is back
        self._thread.start()

    async def record(self, rows: Rows) -> None:
        """Return once ``rows`` are committed or spooled; NotRecorded when neither could be done."""
        future: Future[None] = Future()
        self._queue.put((rows, future))
        await asyncio.wrap_future(future)

    def stop(self, timeout_s: float) -> None:
        """Write what is waiting, then end the thread."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join(timeout_s)
        if self.engine is not None:
            self.engine.dispose()

    @property
    def migrated(self) -> bool:
        return self._migrated

    @property
    def backlog(self) -> int:
        return self.spool.pending

    # --- the writer thread ----------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=self.retry_s if self.spool.pending else None)
            except queue.Empty:
                self._drain_spool()
                continue
            if first is _STOP:
                self._last_drain()
                return
            group = [first]
            rows_in_group = len(first[0])
            stopping = False
            while rows_in_group < MAX_GROUP_ROWS:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is _STOP:
                    stopping = True
                    break
                group.append(more)
                rows_in_group += len(more[0])
            try:
                self._write(group)
            except Exception as exc:  # never let a surprise end the thread: every later answer would hang
                log.exception("decision log: a group of %d decisions failed", len(group))
                self._settle(group, NotRecorded(type(exc).__name__))
            if stopping:
                self._last_drain()
                return

    def _last_drain(self) -> None:
        """At stop, one more try to empty the spool: a replica going away should leave nothing behind."""
        if self.spool.pending:
            self._next_attempt = 0.0
            self._drain_spool()

    def _write(self, group: list[tuple[Rows, Future[None]]]) -> None:
        rows = [row for batch, _ in group for row in batch]
        if self._database_ready():
            started = time.perf_counter()
            try:
                self._insert(rows)
            except SQLAlchemyError as exc:
                self._unreachable(exc)
            else:
                self.observer.recorded("database", len(rows), time.perf_counter() - started)
                self._settle(group, None)
                return
        try:
            self.spool.append(rows)
        except OSError as exc:
            log.error("decision log: %d decisions neither committed nor spooled: %s", len(rows), exc)
            self.observer.not_recorded(len(rows))
            self._settle(group, NotRecorded(exc.strerror or type(exc).__name__))
            return
        self.observer.recorded("spool", len(rows), 0.0)
        self._settle(group, None)

    @staticmethod
    def _settle(group: list[tuple[Rows, Future[None]]], error: Exception | None) -> None:
        for _, future in group:
            # A request whose client went away cancels its future, perhaps at this very moment:
            # its decisions are written all the same, and nobody waits for the outcome.
            with contextlib.suppress(InvalidStateError):
                if error is None:
                    future.set_result(None)
                else:
                    future.set_exception(error)

    def _database_ready(self) -> bool:
        """Whether new decisions may go straight to the database: it is reachable and migrated,
        and nothing older waits in the spool."""
        if self.spool.pending:
            self._drain_spool()
        elif not self._migrated and time.monotonic() >= self._next_attempt:
            self._connect()
        return self._migrated and not self.spool.pending

    def _connect(self) -> bool:
        """Migrate if not yet done; False (and a retry later) when the database is unreachable."""
        if self._migrated:
            return True
        assert self.engine is not None
        try:
            migrate(self.engine)
        except SQLAlchemyError as exc:
            self._unreachable(exc)
            return False
        self._migrated = True
        return True

    def _unreachable(self, exc: Exception) -> None:
        log.warning("decision log: database unreachable, decisions go to the spool: %s", str(exc).splitlines()[0])
        self._next_attempt = time.monotonic() + self.retry_s

    def _drain_spool(self) -> None:
        """Replay the spool in order if the database is back (at most one attempt per retry_s)."""
        if time.monotonic() < self._next_attempt or not self._connect():
            return
        rows = [_with_every_column(row) for row in self.spool.read()]
        try:
            for start in range(0, len(rows), REPLAY_CHUNK_ROWS):
                self._insert(rows[start : start + REPLAY_CHUNK_ROWS])
        except SQLAlchemyError as exc:
            self._unreachable(exc)
            return
        self.spool.clear()
        self.observer.replayed(len(rows))
        log.info("decision log: database back, %d spooled decisions replayed", len(rows))

    def _insert(self, rows: Rows) -> None:
        assert self.engine is not None
        with self.engine.begin() as connection:
            connection.execute(_insert_once(self.engine.dialect.name), rows)


def _with_every_column(row: dict[str, Any]) -> dict[str, Any]:
    """A record spooled by an older release lacks the columns added since (all nullable); one
    executemany needs the same keys in every row, so they are filled with null."""
    return {**{column.name: None for column in decisions.columns if column.nullable}, **row}


def _insert_once(dialect: str) -> Insert:
    """INSERT that skips a decision already on record (a replay after a commit whose end was lost)."""
    if dialect == "sqlite":
        return sqlite.insert(decisions).on_conflict_do_nothing(index_elements=["decision_id"])
    if dialect == "postgresql":
        return postgresql.insert(decisions).on_conflict_do_nothing(index_elements=["decision_id"])
    return insert(decisions)
