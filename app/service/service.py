"""The running service: builds its parts at start, warms them up, and takes them down at stop.

One instance per app, created by ``create_app`` and reached by routes through ``ServiceDep``.
Its parts: the model and the sorting policy (checked before anything slow runs, so a bad
configuration fails fast), the batcher and the decode pool, the ``RequestFlow`` that serves
requests, and the ``Lifecycle`` (phase, in-flight work, SIGTERM drain).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import yaml
from pydantic import ValidationError
from sqlalchemy import Engine

from app import errors
from app.config import Settings
from app.inference.batcher import Batcher
from app.inference.blas import one_blas_thread
from app.inference.loader import load_model, load_version
from app.inference.model import Model
from app.metrics import Metrics
from app.policy import Policy, load_policy_for
from app.records.keeper import PhotoKeeper
from app.records.log import DecisionLog
from app.records.photos import PhotoStore
from app.rollout.rollout import Rollout, RolloutError
from app.rollout.serving import Serving, build_serving, warm_and_start
from app.rollout.shadow import Shadow
from app.rollout.watcher import Watcher, read_rollout_file
from app.service.flow import RequestFlow
from app.service.housekeeping import Housekeeping
from app.service.lifecycle import Lifecycle
from app.station.session import Sessions
from app.tracing import SpanRecorder
from contract.classes import CLASS_NAMES
from contract.metadata import read_metadata
from contract.versions import VersionError, latest

log = logging.getLogger(__name__)
DECISION_LOG_STOP_S = 10.0  # at stop, how long the log may take to write what is still waiting


def preflight(settings: Settings) -> Policy:
    """Check what can be checked without TensorFlow (the policy file against the model's
    metadata), so that a bad configuration fails in a second, not after the import."""
    if settings.model_backend == "null":
        return load_policy_for(settings, CLASS_NAMES, None)
    try:
        version_dir = latest(settings.resolved_model_dir())
    except VersionError as exc:
        raise VersionError(f"{exc} (SORTER_MODEL_DIR names it)") from None
    metadata = read_metadata(version_dir)
    return load_policy_for(settings, metadata.class_names, metadata.review_threshold)


class Service:
    def __init__(
        self,
        settings: Settings,
        model: Model | None = None,
        metrics: Metrics | None = None,
        spans: SpanRecorder | None = None,
    ):
        self.settings = settings
        self.spans = spans or SpanRecorder()  # records a request's steps while traces are on
        self.metrics = metrics or Metrics()
        self._given_model = model  # tests hand one in; otherwise the newest version is loaded at start
        self.rollout: Rollout | None = None
        self.flow: RequestFlow | None = None
        self.shadow: Shadow | None = None
        self.watcher: Watcher | None = None
        self.keyring = settings.keyring
        self.decisions: DecisionLog | None = None
        self.photos = PhotoKeeper(PhotoStore(settings.data_dir / "photos"), settings.audit_rate, self.metrics)
        self.housekeeping: Housekeeping | None = None
        self.sessions = Sessions(settings.session_secret or secrets.token_urlsafe(32))
        self.lifecycle = Lifecycle(self.metrics, settings.drain_timeout_s, self._work_idle)
        self._preprocess_pool: ThreadPoolExecutor | None = None
        # The pool is the parallelism: a product's own threads would only compete with it. Set here,
        # where the app is built (the main thread), not in start() (the event loop's thread, which
        # under a test client is another): once the main thread has set a limit, OpenBLAS ignores
        # one set from any other thread (measured with 0.3.30).
        one_blas_thread()
        self._warmup_task: asyncio.Task[None] | None = None

    # --- start ----------------------------------------------------------------------------------
    async def start(self) -> None:
        """Load and check everything that can be wrong (fail fast), then warm up in the background."""
        settings = self.settings
        model = self._given_model
        if model is None:
            preflight(settings)  # policy and metadata errors before the slow TensorFlow import
            model = await asyncio.to_thread(self._first_model)
        live = build_serving(model, settings, self.metrics)
        self.rollout = Rollout(live, self._load_version, settings.max_loaded_versions, self._roles_changed)
        self._roles_changed(self.rollout)
        if settings.decision_log:
            self.decisions = DecisionLog(
                settings.resolved_database_url(), settings.data_dir / "spool" / "decisions.jsonl", self.metrics
            )
            await asyncio.to_thread(self.decisions.start)  # migrations; an unreachable database is not fatal
            self.housekeeping = Housekeeping(self.decisions, self.photos, self.metrics, settings.photo_retention_days)
            self.housekeeping.start()
        self._preprocess_pool = ThreadPoolExecutor(settings.preprocess_threads, thread_name_prefix="preprocess")
        self.shadow = Shadow(self.rollout, self.metrics, self.decisions, lambda: self.lifecycle.inflight)
        self.flow = RequestFlow(
            settings=settings,
            metrics=self.metrics,
            lifecycle=self.lifecycle,
            rollout=self.rollout,
            preprocess_pool=self._preprocess_pool,
            decisions=self.decisions,
            photos=self.photos,
            shadow=self.shadow,
            spans=self.spans,
        )
        rollout = self.rollout
        self.metrics.watch(
            lambda: sum(serving.batcher.queue_depth for serving in rollout.loaded()), lambda: self.lifecycle.inflight
        )
        self.metrics.queue_capacity.set(settings.max_queue)
        self.lifecycle.install_sigterm()
        self._warmup_task = asyncio.get_running_loop().create_task(self._warm_up(), name="warm-up")

    async def _warm_up(self) -> None:
        assert self.rollout is not None
        live = self.rollout.live
        started = time.perf_counter()
        try:
            await warm_and_start(live)
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            log.critical("warm-up failed, the service stays unready: %s", reason, exc_info=exc)
            self.lifecycle.warmup_failed(reason)
            return
        # What is loaded by now (TensorFlow, the graph, every module) lives as long as the process.
        # Frozen, it is left out of the cyclic collector, whose full passes over it stalled the
        # event loop for ~185 ms each, several times a minute under load: the p99 tail.
        gc.collect()
        gc.freeze()
        self.lifecycle.serving()
        log.info(
            "ready: %s v%s warmed at batch sizes %s in %.1f s",
            live.model.name,
            live.version,
            list(live.model.batch_sizes),
            time.perf_counter() - started,
        )
        if self.settings.model_backend != "null":
            self.watcher = Watcher(self.settings, self.rollout, self.metrics)
            self.watcher.start()

    def _first_model(self) -> Model:
        """The version to start on: the roll-out file's live one when there is a usable file (a restart
        keeps a roll back), else the highest complete version."""
        path = self.settings.rollout_file
        if path is not None and self.settings.model_backend != "null":
            try:
                live = read_rollout_file(path).live
            except (OSError, yaml.YAMLError, ValidationError) as exc:
                log.error("roll-out file %s not usable at start, serving the newest version: %s", path, exc)
            else:
                return load_version(self.settings, live)
        return load_model(self.settings)

    async def _load_version(self, version: int) -> Serving:
        """Load, check and warm one version for the roll-out; RolloutError (and a metric) if refused."""
        try:
            model = await asyncio.to_thread(load_version, self.settings, version)
            serving = build_serving(model, self.settings, self.metrics)
            await warm_and_start(serving)
        except Exception as exc:
            self.metrics.model_loaded("refused")
            reason = f"{type(exc).__name__}: {exc}"
            log.error("model version %d refused, the live version keeps serving: %s", version, reason)
            raise RolloutError("model_refused", f"Version {version} was refused: {reason}") from None
        self.metrics.model_loaded("loaded")
        log.info("model version %d loaded and warmed", version)
        return serving

    def _roles_changed(self, rollout: Rollout) -> None:
        roles = rollout.roles
        held = [
            (version, role)
            for role, version in (
                ("live", roles.live),
                ("previous", roles.previous),
                ("shadow", roles.shadow),
                ("canary", roles.canary),
            )
            if version is not None
        ]
        self.metrics.roles_changed(held)
        live = rollout.live.model
        self.metrics.model_info.clear()
        self.metrics.model_info.labels(live.name, str(live.version)).set(1)

    # --- stop -----------------------------------------------------------------------------------
    async def stop(self) -> None:
        gc.unfreeze()
        self.lifecycle.stopped()
        if self._warmup_task is not None and not self._warmup_task.done():
            self._warmup_task.cancel()
        if self.watcher is not None:
            await self.watcher.stop()
        if self.shadow is not None:
            await self.shadow.stop()
        if self.rollout is not None:
            await self.rollout.stop_all(timeout_s=max(1.0, self.settings.drain_timeout_s))
        if self._preprocess_pool is not None:
            self._preprocess_pool.shutdown(wait=False, cancel_futures=True)
        if self.housekeeping is not None:
            await self.housekeeping.stop()
        if self.decisions is not None:  # after the batcher: every answered decision is written first
            await asyncio.to_thread(self.decisions.stop, DECISION_LOG_STOP_S)

    def wait_ready(self, timeout_s: float) -> bool:
        """Block (from another thread) until warmed up; False on timeout."""
        return self.lifecycle.wait_serving(timeout_s)

    # --- what the parts need of each other ------------------------------------------------------
    @property
    def ready_for_traffic(self) -> bool:
        """The phase is SERVING and the live batcher's loop is alive (/readyz answers 200 on this alone)."""
        return self.lifecycle.ready_for_traffic and self.rollout is not None and self.rollout.live.ready

    @property
    def live(self) -> Serving:
        if self.rollout is None:
            raise errors.not_ready()
        return self.rollout.live

    @property
    def batcher(self) -> Batcher:
        return self.live.batcher

    @property
    def loaded_model(self) -> Model:
        return self.live.model

    @property
    def loaded_policy(self) -> Policy:
        return self.live.policy

    @property
    def model_ref(self) -> dict[str, Any]:
        return self.live.model_ref if self.rollout is not None else {}

    @property
    def records_engine(self) -> Engine:
        """The decision log's database (503 decision_log_off when recording is off)."""
        if self.decisions is None or self.decisions.engine is None:
            raise errors.decision_log_off()
        return self.decisions.engine

    @property
    def request_flow(self) -> RequestFlow:
        if self.flow is None:
            raise errors.not_ready()
        return self.flow

    def _work_idle(self) -> bool:
        return self.rollout is None or all(serving.batcher.idle for serving in self.rollout.loaded())

    def count_rejection(self, code: str) -> None:
        self.metrics.count_rejection(code)
