"""Helpers shared by the service tests (imported by conftest and test modules)."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable

import numpy as np
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from app.inference.model import Inference
from app.inference.tensorflow_model import TensorFlowModel
from bench.photos import png_bytes

READY_TIMEOUT_S = 120


def png(image: np.ndarray) -> bytes:
    return png_bytes(image)


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


class ControlledModel:
    """The real model behind a gate: tests decide when a batch may run, or make it fail."""

    def __init__(self, inner: TensorFlowModel):
        self.inner = inner
        self.gate = threading.Event()
        self.gate.set()
        self.started = threading.Event()
        self.calls: list[int] = []
        self.fail_next: Exception | None = None
        self.warmup_gate = threading.Event()
        self.warmup_gate.set()
        self.warmup_error: Exception | None = None

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    def warmup(self) -> None:
        assert self.warmup_gate.wait(READY_TIMEOUT_S)
        if self.warmup_error is not None:
            raise self.warmup_error

    def infer(self, images: np.ndarray) -> Inference:
        self.calls.append(len(images))
        self.started.set()
        assert self.gate.wait(READY_TIMEOUT_S), "the test never opened the gate"
        if self.fail_next is not None:
            error, self.fail_next = self.fail_next, None
            raise error
        return self.inner.infer(images)


def wait_until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Poll a condition on the app running in the client's thread (HTTP-level tests only)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.001)


def samples(metrics_text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def metric(client, metric_name: str, /, **labels) -> float:
    return samples(client.get("/metrics").text).get((metric_name, tuple(sorted(labels.items()))), 0.0)


def assert_error(response, status: int, code: str, detail: str | None = None) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"detail", "code", "request_id"} and body["code"] == code, body
    assert body["request_id"] == response.headers["x-request-id"]
    assert isinstance(body["detail"], str) and body["detail"]
    if detail is not None:
        assert body["detail"] == detail
