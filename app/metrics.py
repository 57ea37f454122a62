"""Prometheus metrics, in base units, on a registry of their own (one per app instance).

Label values come from small fixed sets only: route templates, status codes, error codes, class
labels and bin codes; never item ids or file names.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    gc_collector,
    generate_latest,
    platform_collector,
    process_collector,
)

from app.errors import is_rejection
from app.reasons import Reason

PREFIX = "garment_sorter"
LATENCY_BUCKETS_S = (
    0.0005,
    0.001,
    0.002,
    0.003,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
ROUTES = (
    "/classify",
    "/classify/batch",
    "/healthz",
    "/readyz",
    "/metrics",
    "/v1/model",
    "/v1/policy",
    "/v1/reviews",
    "/v1/decisions",
    "/v1/shadow/disagreements",
    "/v1/admin",
    "/review",
    "/docs",
    "/openapi.json",
)
OTHER_ROUTE = "other"
SHADOW_DROP_REASONS = ("stale", "backlog", "candidate_busy", "candidate_not_ready", "failed", "not_recorded")
disable_created_metrics()  # the *_created series double the scrape size and nothing here reads them


class Metrics:
    """Every metric of the service; the batcher reports through on_batch / on_drop."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=True)
        process_collector.ProcessCollector(registry=registry)
        platform_collector.PlatformCollector(registry=registry)
        gc_collector.GCCollector(registry=registry)
        self.requests = Counter(
            f"{PREFIX}_requests_total",
            "HTTP requests answered, by route and status code",
            ["route", "status"],
            registry=registry,
        )
        self.request_duration = Histogram(
            f"{PREFIX}_request_duration_seconds",
            "HTTP request duration, by route",
            ["route"],
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.queue_depth = Gauge(f"{PREFIX}_queue_depth", "Images waiting for a batch", registry=registry)
        self.queue_capacity = Gauge(
            f"{PREFIX}_queue_capacity",
            "Images the queue holds before 503 queue_full (SORTER_MAX_QUEUE)",
            registry=registry,
        )
        self.batch_size = Histogram(
            f"{PREFIX}_batch_size",
            "Images per model call (before padding)",
            buckets=BATCH_SIZE_BUCKETS,
            registry=registry,
        )
        self.queue_wait = Histogram(
            f"{PREFIX}_queue_wait_seconds",
            "Time from queueing an image to the start of its batch",
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.inference_duration = Histogram(
            f"{PREFIX}_inference_duration_seconds",
            "Duration of one model call (one batch)",
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.rejections = Counter(
            f"{PREFIX}_rejections_total",
            "Images or requests refused: queue_full, deadline, client_gone, draining, unauthorized "
            "and every bad-input error code",
            ["reason"],
            registry=registry,
        )
        self.predictions = Counter(
            f"{PREFIX}_predictions_total",
            "Answered classifications by label and bin",
            ["label", "bin"],
            registry=registry,
        )
        self.review_reasons = Counter(
            f"{PREFIX}_review_reasons_total",
            "Answers sent to the review bin, by reason (one answer can have several)",
            ["reason"],
            registry=registry,
        )
        self.model_info = Gauge(
            f"{PREFIX}_model_info", "The served model (value 1)", ["name", "version"], registry=registry
        )
        self.ready = Gauge(f"{PREFIX}_ready", "1 when the model is warmed up and the batcher runs", registry=registry)
        self.inflight = Gauge(
            f"{PREFIX}_inflight_requests", "Classification requests accepted and not yet answered", registry=registry
        )
        self.draining = Gauge(f"{PREFIX}_draining", "1 while shutting down gracefully", registry=registry)
        self.open_connections = Gauge(
            f"{PREFIX}_open_connections",
            "Client connections open (SORTER_MAX_CONNECTIONS caps them); connections closed for being slow "
            "or over the cap count in rejections_total as request_timeout, body_too_slow, too_many_connections",
            registry=registry,
        )
        self.reviews = Counter(
            f"{PREFIX}_reviews_total",
            "Reviews recorded, by the model's label, the reviewer's label and whether the item was in the "
            "audit sample (audit=true: an unbiased sample of auto-sorted items, so their agreement is live accuracy)",
            ["model_label", "reviewed_label", "audit"],
            registry=registry,
        )
        self.audited = Counter(
            f"{PREFIX}_audited_total",
            "Reviews of audit-sample items (auto-sorted, drawn at random), by whether the model's label was right: "
            "right / (right + wrong) estimates live accuracy without the bias of reviewing only doubtful items",
            ["outcome"],
            registry=registry,
        )
        for outcome in ("right", "wrong"):  # both series exist from the start: the ratio is never absent
            self.audited.labels(outcome)
        self.review_backlog = Gauge(
            f"{PREFIX}_review_backlog", "Items sent to REVIEW and not reviewed yet", registry=registry
        )
        self.review_oldest_pending = Gauge(
            f"{PREFIX}_review_oldest_pending_seconds",
            "Age of the oldest item waiting for review (0 when none waits)",
            registry=registry,
        )
        self.kept_photos = Counter(f"{PREFIX}_photos_kept_total", "Photos kept for review or audit", registry=registry)
        self.unkept_photos = Counter(
            f"{PREFIX}_photos_not_kept_total",
            "Photos that should have been kept and were not (the disk refused: full, or failing)",
            registry=registry,
        )
        self.purged_photos = Counter(
            f"{PREFIX}_photos_purged_total", "Photo files removed past SORTER_PHOTO_RETENTION_DAYS", registry=registry
        )
        self.model_role = Gauge(
            f"{PREFIX}_model_role",
            "Loaded model versions and their roles in the roll-out (value 1): live, previous, shadow, canary",
            ["version", "role"],
            registry=registry,
        )
        self.model_loads = Counter(
            f"{PREFIX}_model_loads_total",
            "Model versions loaded at run time, by outcome: loaded, or refused (did not load, warm or match the "
            "contract; the live version kept serving)",
            ["outcome"],
            registry=registry,
        )
        for outcome in ("loaded", "refused"):
            self.model_loads.labels(outcome)
        self.rollout_file_errors = Counter(
            f"{PREFIX}_rollout_file_errors_total",
            "Changes of SORTER_ROLLOUT_FILE that were not applied (unparsable, or a version refused)",
            registry=registry,
        )
        self.version_answers = Counter(
            f"{PREFIX}_version_answers_total",
            "Answers by the model version that gave them (live and canary) and whether they went to review",
            ["version", "review"],
            registry=registry,
        )
        self.shadow_answers = Counter(
            f"{PREFIX}_shadow_answers_total",
            "Live answers the shadow candidate answered too, by candidate version, the live label and bin, whether "
            "the candidate agreed on the class and on the bin",
            ["candidate", "live_label", "live_bin", "same_class", "same_bin"],
            registry=registry,
        )
        self.shadow_silent_bin_changes = Counter(
            f"{PREFIX}_shadow_silent_bin_changes_total",
            "Items the shadow candidate would have sent to a different bin without review",
            ["candidate"],
            registry=registry,
        )
        self.shadow_dropped = Counter(
            f"{PREFIX}_shadow_dropped_total",
            "Live answers the shadow candidate did not see, by reason: stale (no idle moment came within 2 s), "
            "backlog, candidate_busy, candidate_not_ready, failed, not_recorded",
            ["candidate", "reason"],
            registry=registry,
        )
        self.decisions_recorded = Counter(
            f"{PREFIX}_decisions_recorded_total",
            "Decisions put on record, by where they went: database, or spool (database unreachable)",
            ["destination"],
            registry=registry,
        )
        self.decision_log_write = Histogram(
            f"{PREFIX}_decision_log_write_seconds",
            "Duration of one decision-log transaction (one per group of answers waiting together)",
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.decision_log_spool = Gauge(
            f"{PREFIX}_decision_log_spool_records",
            "Decisions in the spool, waiting for the database to be reachable",
            registry=registry,
        )
        self.decisions_replayed = Counter(
            f"{PREFIX}_decisions_replayed_total", "Spooled decisions replayed into the database", registry=registry
        )
        self.decisions_not_recorded = Counter(
            f"{PREFIX}_decisions_not_recorded_total",
            "Decisions neither committed nor spooled (their requests got 503 not_recorded)",
            registry=registry,
        )
        # Children cached: labels() takes a lock and a dict lookup per call on the hot path.
        self._request_children: dict[tuple[str, int], Counter] = {}
        self._duration_children = {route: self.request_duration.labels(route) for route in (*ROUTES, OTHER_ROUTE)}
        self._rejection_children: dict[str, Counter] = {}
        self._prediction_children: dict[tuple[str, str], Counter] = {}
        self._reason_children = {reason: self.review_reasons.labels(str(reason)) for reason in Reason}

    def watch(self, queue_depth: Callable[[], int], inflight: Callable[[], int]) -> None:
        """Read the gauges at scrape time (no cost per request)."""
        self.queue_depth.set_function(lambda: float(queue_depth()))
        self.inflight.set_function(lambda: float(inflight()))

    def observe_request(self, route: str, status: int, duration_s: float) -> None:
        key = (route, status)
        child = self._request_children.get(key)
        if child is None:
            child = self._request_children[key] = self.requests.labels(route, str(status))
        child.inc()
        self._duration_children[route].observe(duration_s)

    def reject(self, reason: str, count: int = 1) -> None:
        child = self._rejection_children.get(reason)
        if child is None:
            child = self._rejection_children[reason] = self.rejections.labels(reason)
        child.inc(count)

    def count_rejection(self, code: str) -> None:
        """Count an error answer under its code, if the code stands for refused input."""
        if is_rejection(code):
            self.reject(code)

    def predicted(self, label: str, bin_code: str, reasons: Sequence[Reason] = ()) -> None:
        key = (label, bin_code)
        child = self._prediction_children.get(key)
        if child is None:
            child = self._prediction_children[key] = self.predictions.labels(label, bin_code)
        child.inc()
        for reason in reasons:
            self._reason_children[reason].inc()

    def reviewed(self, model_label: str, reviewed_label: str, audit: bool) -> None:
        self.reviews.labels(model_label, reviewed_label, "true" if audit else "false").inc()
        if audit:
            self.audited.labels("right" if model_label == reviewed_label else "wrong").inc()

    # the roll-out (app.rollout)
    def roles_changed(self, roles: Sequence[tuple[int, str]]) -> None:
        self.model_role.clear()
        for version, role in roles:
            self.model_role.labels(str(version), role).set(1)
            if role == "shadow":  # its series exist from the start: a ratio of them is 0, not absent
                self.shadow_silent_bin_changes.labels(str(version))
                for reason in SHADOW_DROP_REASONS:
                    self.shadow_dropped.labels(str(version), reason)

    def model_loaded(self, outcome: str) -> None:
        self.model_loads.labels(outcome).inc()

    def rollout_file_error(self) -> None:
        self.rollout_file_errors.inc()

    def answered_by(self, version: int, review: bool) -> None:
        self.version_answers.labels(str(version), "true" if review else "false").inc()

    def shadow_compared(
        self, candidate: str, live_label: str, live_bin: str, same_class: bool, same_bin: bool, silent_change: bool
    ) -> None:
        self.shadow_answers.labels(candidate, live_label, live_bin, _yes(same_class), _yes(same_bin)).inc()
        if silent_change:
            self.shadow_silent_bin_changes.labels(candidate).inc()

    def shadow_dropped_work(self, candidate: str, reason: str, count: int) -> None:
        self.shadow_dropped.labels(candidate, reason).inc(count)

    # PhotoObserver (app.records.keeper)
    def photos_kept(self, count: int) -> None:
        self.kept_photos.inc(count)

    def photos_not_kept(self, count: int) -> None:
        self.unkept_photos.inc(count)

    def photos_purged(self, count: int) -> None:
        self.purged_photos.inc(count)

    # LogObserver (app.records.log)
    def recorded(self, destination: str, count: int, duration_s: float) -> None:
        self.decisions_recorded.labels(destination).inc(count)
        if destination == "database":
            self.decision_log_write.observe(duration_s)

    def replayed(self, count: int) -> None:
        self.decisions_replayed.inc(count)

    def not_recorded(self, count: int) -> None:
        self.decisions_not_recorded.inc(count)

    def watch_spool(self, pending: Callable[[], int]) -> None:
        self.decision_log_spool.set_function(lambda: float(pending()))

    # BatchObserver
    def on_batch(self, size: int, queue_waits_s: Sequence[float], inference_s: float) -> None:
        self.batch_size.observe(size)
        self.inference_duration.observe(inference_s)
        for wait in queue_waits_s:
            self.queue_wait.observe(wait)

    def on_drop(self, reason: str, count: int = 1) -> None:
        self.reject(reason, count)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


# Routes with ids in their path, counted under their prefix (label values stay a fixed set).
PREFIXED = ("/v1/decisions", "/v1/admin", "/review")


def _yes(value: bool) -> str:
    return "true" if value else "false"


def route_label(path: str) -> str:
    if path in ROUTES:
        return path
    for prefix in PREFIXED:
        if path.startswith(prefix + "/"):
            return prefix
    return OTHER_ROUTE
