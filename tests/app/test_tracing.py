"""Traces: a real `garment-sorter serve` exporting over OTLP/HTTP to a real receiver (bench/otlp.py,
the official protobuf messages) continues the caller's trace, and records our spans of a classify
request as children of its server span, inside it and in order, with the timings the answer
reports; without an endpoint nothing of OpenTelemetry's SDK is installed, or even imported."""

from __future__ import annotations

import io
import json
import logging
import os
import sqlite3
import subprocess
import sys

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from service_helpers import png

from app import logs, tracing
from app.config import load_settings
from app.logs import configure_logging
from app.main import create_app
from app.tracing import (
    DECISION_LOG_WRITE,
    DECODE,
    INFERENCE,
    POLICY,
    QUEUE_WAIT,
    SEGMENTATION,
    SPAN_NAMES,
)
from bench.otlp import ReceivedSpan, Sink
from bench.server import REPO, running_server

SERVER_KIND, INTERNAL_KIND = 2, 1  # opentelemetry.proto.trace.v1.Span.SpanKind
CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
OUR_SPANS = {DECODE, SEGMENTATION, QUEUE_WAIT, INFERENCE, POLICY, DECISION_LOG_WRITE}


def traceparent(trace_id: str, span_id: str, sampled: bool = True) -> str:
    return f"00-{trace_id}-{span_id}-{'01' if sampled else '00'}"


def of_trace(spans: list[ReceivedSpan], trace_id: str) -> list[ReceivedSpan]:
    return [span for span in spans if span.trace_id == trace_id]


def complete(trace_id: str, count: int):
    return lambda spans: len(of_trace(spans, trace_id)) >= count


def assert_children_of(server: ReceivedSpan, children: list[ReceivedSpan]) -> None:
    for child in children:
        assert child.trace_id == server.trace_id, child
        assert child.parent_span_id == server.span_id, child
        assert child.kind == INTERNAL_KIND, child
        assert child.service_name == "garment-sorter"
        assert server.start_ns <= child.start_ns <= child.end_ns <= server.end_ns, (server, child)


# --- off ----------------------------------------------------------------------------------------
@pytest.fixture
def no_otel_env(monkeypatch):
    for name in [name for name in os.environ if name.startswith("OTEL_")]:
        monkeypatch.delenv(name)
    return monkeypatch


@pytest.mark.parametrize(
    ("env", "on"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": ""}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "  "}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_SDK_DISABLED": "true"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_TRACES_EXPORTER": "none"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, True),
    ],
)
def test_traces_are_on_only_with_an_endpoint(no_otel_env, env, on):
    for name, value in env.items():
        no_otel_env.setenv(name, value)
    assert tracing.endpoint_configured() is on


def test_without_an_endpoint_no_provider_or_instrumentation_is_installed(no_otel_env, tmp_path):
    app = create_app(load_settings(model_backend="null", data_dir=str(tmp_path)))
    assert app.state.tracing is None
    assert app.state.service.spans.on is False
    assert not getattr(app, "_is_instrumented_by_opentelemetry", False)
    layer, layers = app.build_middleware_stack(), []
    while layer is not None:
        layers.append(type(layer).__name__)
        layer = getattr(layer, "app", None)
    assert "OpenTelemetryMiddleware" not in layers and "ServiceMiddleware" in layers
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)  # the global one untouched


def test_without_an_endpoint_the_sdk_is_not_even_imported(tmp_path):
    # A fresh interpreter: this one has imported the SDK for the other tests.
    script = (
        "import sys\n"
        "from app.config import load_settings\n"
        "from app.main import create_app\n"
        f"app = create_app(load_settings(model_backend='null', data_dir={str(tmp_path)!r}))\n"
        "app.build_middleware_stack()\n"
        "print(sorted(m for m in sys.modules if m.startswith(('opentelemetry.sdk', 'opentelemetry.instrumentation',"
        " 'opentelemetry.exporter'))))\n"
    )
    env = {name: value for name, value in os.environ.items() if not name.startswith("OTEL_")}
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


# --- log lines ----------------------------------------------------------------------------------
@pytest.fixture
def root_logging():
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    yield
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    logs.trace_ids(None)


def test_json_lines_carry_the_trace_id_while_traces_are_on(root_logging):
    stream = io.StringIO()
    configure_logging("info", "json", stream)
    logging.getLogger("app.test").warning("before")
    logs.trace_ids(tracing.current_trace_id)
    with TracerProvider().get_tracer("test").start_as_current_span("request") as span:
        logging.getLogger("app.test").warning("inside")
    logging.getLogger("app.test").warning("after")
    before, inside, after = (json.loads(line) for line in stream.getvalue().splitlines())
    assert "trace_id" not in before  # traces off: the line is as it always was
    assert inside["trace_id"] == trace.format_trace_id(span.get_span_context().trace_id)
    assert after["trace_id"] is None


# --- on: a real server, a real receiver ---------------------------------------------------------
@pytest.fixture(scope="module")
def traced(model_dir):
    with Sink() as sink:
        env = {
            "SORTER_MODEL_DIR": str(model_dir),
            "OTEL_EXPORTER_OTLP_ENDPOINT": sink.url,
            "OTEL_BSP_SCHEDULE_DELAY": "100",  # milliseconds: spans reach the receiver at once
        }
        with running_server(env) as server, httpx.Client(base_url=server.url, timeout=30) as client:
            yield sink, server, client


@pytest.mark.slow
def test_a_classify_request_continues_the_callers_trace_with_our_spans_under_its_server_span(traced, test_set):
    sink, server, client = traced
    response = client.post(
        "/classify",
        files={"file": ("a.png", png(test_set[0][0]))},
        headers={"traceparent": traceparent(CALLER_TRACE, CALLER_SPAN), "X-Item-Id": "item-7"},
    )
    assert response.status_code == 200
    answer = response.json()
    spans = of_trace(sink.wait_for(complete(CALLER_TRACE, 1 + len(OUR_SPANS))), CALLER_TRACE)

    assert sorted(span.name for span in spans) == sorted(["POST /classify", *OUR_SPANS])
    by_name = {span.name: span for span in spans}
    server_span = by_name["POST /classify"]
    assert server_span.kind == SERVER_KIND
    assert server_span.parent_span_id == CALLER_SPAN  # the scanner's span is the parent
    assert server_span.service_name == "garment-sorter"
    assert server_span.attributes["http.route"] == "/classify"
    assert server_span.attributes["http.status_code"] == 200
    assert server_span.attributes["sorter.decision_id"] == answer["decision_id"]
    assert server_span.attributes["sorter.item_id"] == "item-7"
    ours = [by_name[name] for name in SPAN_NAMES]
    assert_children_of(server_span, ours)

    decode, segmentation, queue_wait, inference, policy, log_write = ours
    # One after the other, each where the one before ended (or later); the shared boundaries are
    # the same reading of the clock.
    assert decode.end_ns == segmentation.start_ns
    assert segmentation.end_ns <= queue_wait.start_ns + 1  # (+1 ns: the wait's start is derived)
    assert queue_wait.end_ns == inference.start_ns
    assert inference.end_ns <= policy.start_ns
    assert policy.end_ns == log_write.start_ns
    # The spans measure what the answer reports (rounded there to the microsecond).
    timings = answer["timings_ms"]
    assert (segmentation.end_ns - decode.start_ns) / 1e6 == pytest.approx(timings["preprocess"], abs=2e-3)
    assert (queue_wait.end_ns - queue_wait.start_ns) / 1e6 == pytest.approx(timings["queue"], abs=2e-3)
    assert (inference.end_ns - inference.start_ns) / 1e6 == pytest.approx(timings["inference"], abs=2e-3)

    assert inference.attributes == {"sorter.batch_size": 1, "sorter.images": 1}  # alone in its batch
    assert queue_wait.attributes == {"sorter.images": 1}
    assert policy.attributes == log_write.attributes == {"sorter.decision_id": answer["decision_id"]}
    assert decode.attributes == segmentation.attributes == {}
    assert all(span.status_code == 0 for span in spans)
    # The decision the log-write span waited for is on record.
    with sqlite3.connect(server.data_dir / "decisions.db") as db:
        rows = db.execute("select item_id from decisions where decision_id = ?", (answer["decision_id"],)).fetchall()
    assert rows == [("item-7",)]


@pytest.mark.slow
def test_a_batch_request_gets_spans_per_image_per_model_batch_and_per_request(traced, test_set):
    sink, _, client = traced
    files = [("files", (f"{i}.png", png(test_set[0][i]))) for i in range(3)]
    response = client.post("/classify/batch", files=files)  # no traceparent: a trace of its own
    assert response.status_code == 200 and response.json()["failed"] == 0
    decision_ids = [entry["result"]["decision_id"] for entry in response.json()["results"]]

    def batch_trace(spans: list[ReceivedSpan]) -> str | None:
        return next((s.trace_id for s in spans if s.name == "POST /classify/batch"), None)

    def done(spans: list[ReceivedSpan]) -> bool:
        trace_id = batch_trace(spans)
        return trace_id is not None and any(s.name == DECISION_LOG_WRITE for s in of_trace(spans, trace_id))

    spans = sink.wait_for(done)
    spans = of_trace(spans, batch_trace(spans))
    server_span = next(s for s in spans if s.name == "POST /classify/batch")
    assert server_span.parent_span_id == ""  # no caller's trace: ours is the root
    assert server_span.attributes["sorter.images"] == 3
    ours = [s for s in spans if s is not server_span]
    assert_children_of(server_span, ours)
    named = {name: [s for s in ours if s.name == name] for name in SPAN_NAMES}
    assert sum(map(len, named.values())) == len(ours)  # no span of another name
    # Each image is decoded on its own: a decode and a segmentation span each, by file position.
    for name in (DECODE, SEGMENTATION):
        assert sorted(s.attributes["sorter.index"] for s in named[name]) == [0, 1, 2]
    decodes = {s.attributes["sorter.index"]: s for s in named[DECODE]}
    for segmentation in named[SEGMENTATION]:
        assert decodes[segmentation.attributes["sorter.index"]].end_ns == segmentation.start_ns
    # Waits and model batches shared by several of its images are one span each.
    assert sum(s.attributes["sorter.images"] for s in named[QUEUE_WAIT]) == 3
    assert sum(s.attributes["sorter.images"] for s in named[INFERENCE]) == 3
    for inference in named[INFERENCE]:
        assert 1 <= inference.attributes["sorter.images"] <= inference.attributes["sorter.batch_size"]
        assert any(wait.end_ns == inference.start_ns for wait in named[QUEUE_WAIT])
    [policy], [log_write] = named[POLICY], named[DECISION_LOG_WRITE]
    assert policy.attributes == log_write.attributes == {"sorter.decision_ids": decision_ids, "sorter.images": 3}
    assert max(s.end_ns for s in named[INFERENCE]) <= policy.start_ns and policy.end_ns == log_write.start_ns


@pytest.mark.slow
def test_a_caller_that_did_not_sample_its_trace_gets_no_spans(traced, test_set):
    sink, _, client = traced
    unsampled, sampled = "a" * 32, "b" * 32
    photo = {"file": ("a.png", png(test_set[0][1]))}
    for trace_id, flag in ((unsampled, False), (sampled, True)):
        headers = {"traceparent": traceparent(trace_id, "c" * 16, flag)}
        assert client.post("/classify", files=photo, headers=headers).status_code == 200
    spans = sink.wait_for(complete(sampled, 1 + len(OUR_SPANS)))  # exported after the unsampled one's would be
    assert of_trace(spans, unsampled) == []
