"""OpenTelemetry traces: the server span of every request (opentelemetry-instrumentation-fastapi)
and, under it, one span per step of a classify request's work, exported over OTLP/HTTP (protobuf).

Off unless ``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` is set and
not empty. Off, nothing is installed: no tracer provider, no middleware, the SDK is not imported,
and a request pays one boolean check. On, the SDK reads the standard ``OTEL_*`` variables itself
(sampler, batch processor, exporter headers and timeout, resource attributes); the service name
defaults to garment-sorter. An incoming W3C ``traceparent`` is honoured, so a scanner's trace
continues through the service.

Our spans are recorded after the fact, once the request's answer is on record, with the start and
end times the flow measures anyway (``time.perf_counter()``, mapped to the wall clock when they are
recorded). A model batch runs on the batcher's thread for many requests at once: carrying every
request's context into that thread would cost each request something even with tracing off, and a
span started there belongs to no single request. Instead each request draws its own queue_wait and
inference spans from the timings of the ``Outcome`` the batcher hands back (docs/observability.md).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, NamedTuple

from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode
from opentelemetry.util.types import AttributeValue

from app import logs

if TYPE_CHECKING:
    from fastapi import FastAPI
    from opentelemetry.sdk.trace import TracerProvider

log = logging.getLogger(__name__)

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
SERVICE_NAME = "garment-sorter"
# Probes and scrapes come every few seconds from every replica and say nothing about an item;
# OTEL_PYTHON_FASTAPI_EXCLUDED_URLS (or OTEL_PYTHON_EXCLUDED_URLS) replaces this list.
EXCLUDED_URLS = "/healthz,/readyz,/metrics"
FLUSH_AT_STOP_S = 5.0  # a collector that is away must not hold the exit past the drain budget

# Our spans (children of the request's server span), in the order a photo meets them.
DECODE = "decode"  # header check and pixel decoding (including any wait for a decode thread)
SEGMENTATION = "segmentation"  # finding the garment and bringing it to the model's 28x28
QUEUE_WAIT = "queue_wait"  # in the dynamic batcher's queue, until its model batch started
INFERENCE = "inference"  # the model batch call the image was part of
POLICY = "policy"  # season, bin and review decision, and the answer built from them
DECISION_LOG_WRITE = "decision_log_write"  # until the log's writer thread committed (or spooled) the rows
SPAN_NAMES = (DECODE, SEGMENTATION, QUEUE_WAIT, INFERENCE, POLICY, DECISION_LOG_WRITE)

# Attributes (ours are under "sorter.").
BATCH_SIZE = "sorter.batch_size"  # images in the model batch (inference)
IMAGES = "sorter.images"  # how many of this request's images the span covers
INDEX = "sorter.index"  # a batch request's file position (decode, segmentation)
DECISION_ID = "sorter.decision_id"  # one image's decision (policy, decision_log_write, the server span)
DECISION_IDS = "sorter.decision_ids"  # a batch request's decisions, in input order
ITEM_ID = "sorter.item_id"  # the caller's item id (server span, when given)


def endpoint_configured() -> bool:
    """Whether an OTLP endpoint is set (not empty) and the SDK is not disabled: traces are on."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if os.environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "none":
        return False
    return any(os.environ.get(name, "").strip() for name in ENDPOINT_VARIABLES)


class Step(NamedTuple):
    """One span to record: times from ``time.perf_counter()``."""

    name: str
    start: float
    end: float
    attributes: Mapping[str, AttributeValue] | None = None
    error: str | None = None  # the step failed: the span's status is ERROR with this description


class SpanRecorder:
    """Records a request's steps as children of its server span. Off (no tracer), ``on`` is False
    and the flow builds no steps at all."""

    __slots__ = ("_tracer", "on")

    def __init__(self, tracer: trace.Tracer | None = None):
        self._tracer = tracer
        self.on = tracer is not None

    def record(self, steps: Iterable[Step], request: Mapping[str, AttributeValue] | None = None) -> None:
        """Record ``steps`` under the current (server) span and add ``request`` to that span's
        attributes; nothing when the request is not sampled."""
        tracer = self._tracer
        if tracer is None:
            return
        parent = trace.get_current_span()
        if not parent.is_recording():  # sampled out (or no request): its children would be dropped too
            return
        if request:
            parent.set_attributes(request)
        context = trace.set_span_in_context(parent)
        # One mapping per request: over a request's milliseconds the two clocks do not drift apart,
        # and the monotonic one never steps, so children stay inside their parent.
        now_ns, now_s = time.time_ns(), time.perf_counter()
        for step in steps:
            span = tracer.start_span(
                step.name,
                context,
                attributes=step.attributes,
                start_time=now_ns - round((now_s - step.start) * 1e9),
            )
            if step.error is not None:
                span.set_status(Status(StatusCode.ERROR, step.error))
            span.end(now_ns - round((now_s - step.end) * 1e9))


class Tracing:
    """The tracer provider and its OTLP exporter, while traces are on."""

    def __init__(self, provider: TracerProvider):
        self.provider = provider
        self.tracer = provider.get_tracer("garment-sorter")

    @classmethod
    def from_environment(cls) -> Tracing | None:
        """A provider exporting to the configured endpoint, or None when none is configured."""
        if not endpoint_configured():
            return None
        # Imported only here: with traces off the SDK and the exporter are never loaded.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import SERVICE_NAME as SERVICE_NAME_KEY
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        protocol = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        if protocol and protocol.strip() != "http/protobuf":
            log.warning("traces: OTLP protocol %r is not supported, exporting with http/protobuf", protocol)
        resource = Resource.create()  # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES
        if str(resource.attributes.get(SERVICE_NAME_KEY, "")).startswith("unknown_service"):
            resource = resource.merge(Resource({SERVICE_NAME_KEY: SERVICE_NAME}))
        provider = TracerProvider(resource=resource, shutdown_on_exit=False)  # sampler: OTEL_TRACES_SAMPLER
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))  # OTEL_BSP_*, OTEL_EXPORTER_OTLP_*
        return cls(provider)

    def instrument(self, app: FastAPI) -> None:
        """The server span of every request (the caller's traceparent continued), and the trace id
        on every log line written inside one."""
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
        from opentelemetry.metrics import NoOpMeterProvider

        excluded = os.environ.get("OTEL_PYTHON_FASTAPI_EXCLUDED_URLS") or os.environ.get("OTEL_PYTHON_EXCLUDED_URLS")
        FastAPIInstrumentor.instrument_app(
            app,
            tracer_provider=self.provider,
            # Our metrics are Prometheus's; the instrumentation's own would cost each request for nothing.
            meter_provider=NoOpMeterProvider(),
            excluded_urls=excluded if excluded is not None else EXCLUDED_URLS,
            # A span per ASGI message (body chunks, the answer's start and body) would outnumber ours.
            exclude_spans=["receive", "send"],
        )
        logs.trace_ids(current_trace_id)

    async def shutdown(self) -> None:
        """Export what is still buffered (for at most FLUSH_AT_STOP_S), then stop."""
        logs.trace_ids(None)
        # A daemon thread: one left exporting to an unreachable collector does not hold the exit
        # (the default executor's threads are joined when the interpreter ends).
        stopping = threading.Thread(target=self.provider.shutdown, name="traces-shutdown", daemon=True)
        stopping.start()
        await asyncio.to_thread(stopping.join, FLUSH_AT_STOP_S)
        if stopping.is_alive():
            log.warning("traces: the exporter did not finish within %.0f s; the rest is dropped", FLUSH_AT_STOP_S)


def current_trace_id() -> str | None:
    """The current span's trace id as 32 hex digits, or None outside a (sampled or not) trace."""
    context = trace.get_current_span().get_span_context()
    return trace.format_trace_id(context.trace_id) if context.is_valid else None
