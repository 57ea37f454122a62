"""Work the service does by itself, off the request path: the review backlog gauges, refreshed
every few seconds (a query per scrape would run on the event loop), and the photo retention purge."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Callable

from app.metrics import Metrics
from app.records import queries
from app.records.keeper import PhotoKeeper
from app.records.log import DecisionLog

log = logging.getLogger(__name__)
BACKLOG_REFRESH_S = 5.0
PURGE_INTERVAL_S = 3600.0
DAY_S = 86400.0


class Housekeeping:
    def __init__(self, decisions: DecisionLog, photos: PhotoKeeper, metrics: Metrics, retention_days: float):
        self.decisions = decisions
        self.photos = photos
        self.metrics = metrics
        self.retention_s = retention_days * DAY_S
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._every(BACKLOG_REFRESH_S, self.refresh_backlog), name="review-backlog"),
            loop.create_task(self._every(PURGE_INTERVAL_S, self.purge), name="photo-purge"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @staticmethod
    async def _every(interval_s: float, work: Callable[[], None]) -> None:
        while True:
            try:
                await asyncio.to_thread(work)
            except Exception as exc:  # a database away or a disk error: try again next time
                log.warning("housekeeping: %s failed: %s", work.__name__, exc)
            await asyncio.sleep(interval_s)

    def refresh_backlog(self) -> None:
        engine = self.decisions.engine
        if engine is None or not self.decisions.migrated:
            return
        queue = queries.review_queue(engine, audit=False, limit=1)
        oldest = queue.oldest_pending_at
        self.metrics.review_backlog.set(queue.pending)
        age_s = 0.0 if oldest is None else (dt.datetime.now(dt.UTC) - oldest).total_seconds()
        self.metrics.review_oldest_pending.set(max(age_s, 0.0))

    def purge(self) -> None:
        self.photos.purge(self.retention_s)
