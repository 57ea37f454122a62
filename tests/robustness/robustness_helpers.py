"""Shared pieces of the robustness suite: real servers in subprocesses, a raw HTTP/1.1 client for
load and disconnects, Prometheus scraping, process memory, and the fault-injecting test model.

Everything talks to 127.0.0.1 only, and every loop is bounded in count and time.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from bench.photos import load_test_set
from bench.server import Server, start_server, stop_server
from contract.classes import CLASS_NAMES  # the contract the answers are held to

REPO = Path(__file__).resolve().parents[2]
MODEL_DIR = Path(os.environ.get("SORTER_MODEL_DIR", REPO / "models" / "fashion-cnn"))
START_TIMEOUT_S = 120.0
API_KEY = "robustness-suite-key-0123456789"  # the shared server runs keyed, as production may
KEYED = {"SORTER_API_KEYS": API_KEY, "SORTER_METRICS_REQUIRE_KEY": "true"}


# --- servers ------------------------------------------------------------------------------------
def _get(url: str, timeout_s: float = 2.0) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"X-API-Key": API_KEY})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@contextlib.contextmanager
def serving(env: dict[str, str], wait_for: str = "/readyz") -> Iterator[Server]:
    server = start_server(env, timeout_s=START_TIMEOUT_S, wait_for=wait_for)
    try:
        yield server
    finally:
        code = stop_server(server, timeout_s=30)
        log = server.log()
        server.log_path.unlink(missing_ok=True)
        # A clean SIGTERM drain exits 0; anything else (a crash under test) must not pass unseen.
        assert code == 0, f"server exited with {code}:\n{log[-3000:]}"


# --- metrics ------------------------------------------------------------------------------------
def scrape(server: Server) -> dict[tuple[str, frozenset], float]:
    """Every sample of /metrics keyed by (sample name, labels)."""
    status, body = _get(server.url + "/metrics", 5.0)
    assert status == 200, body
    samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def metric(samples: dict, name: str, **labels: str) -> float:
    """One sample's value; 0 for a labelled counter child that has not been created yet."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def ready_status(server: Server) -> tuple[int, dict]:
    status, body = _get(server.url + "/readyz")
    return status, json.loads(body)


# --- images -------------------------------------------------------------------------------------
def png_l(pixels: np.ndarray) -> bytes:
    """A 28x28 uint8 array as a grayscale PNG (passes through preprocessing bit-exact when it has
    the dataset's dark border)."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8), "L").save(buffer, "PNG")
    return buffer.getvalue()


# --- steady load -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Answer:
    sent_at: float  # time.monotonic() when the request left
    answered_at: float  # ... and when its answer (or error) came back
    status: int | str  # the HTTP status, or the transport error's name (a server killed under it)
    body: dict | None  # a 200's JSON answer


class Load:
    """``clients`` threads posting the first 64 test images to POST /classify until stopped; every
    answer is kept, in the order answers arrived."""

    def __init__(self, server: Server, clients: int = 8, headers: dict[str, str] | None = None):
        self.url = server.url + "/classify"
        self.images = [png_l(image) for image in load_test_set()[0][:64]]
        self.headers = {**(headers or {}), "Content-Type": "image/png"}
        self._answers: list[Answer] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(n, clients)) for n in range(clients)]

    def _run(self, number: int, clients: int) -> None:
        with httpx.Client(timeout=30.0) as client:
            sent = number
            while not self._stop.is_set():
                data = self.images[sent % len(self.images)]
                sent += clients
                sent_at = time.monotonic()
                try:
                    response = client.post(self.url, content=data, headers=self.headers)
                except httpx.HTTPError as exc:
                    answer = Answer(sent_at, time.monotonic(), type(exc).__name__, None)
                    time.sleep(0.05)
                else:
                    body = response.json() if response.status_code == 200 else None
                    answer = Answer(sent_at, time.monotonic(), response.status_code, body)
                with self._lock:
                    self._answers.append(answer)

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)

    @property
    def answers(self) -> list[Answer]:
        with self._lock:
            return list(self._answers)

    @property
    def statuses(self) -> Counter[int | str]:
        return Counter(answer.status for answer in self.answers)

    @property
    def answered(self) -> list[str]:
        """The decision ids of the 200s."""
        return [answer.body["decision_id"] for answer in self.answers if answer.body is not None]


# --- the fault-injecting test model -------------------------------------------------------------
POISON = 77  # an image whose first row is all POISON makes its whole batch raise
SLOW = 99  # an image whose first row is all SLOW holds its batch (second row's first pixel x 10 ms)
FAILURE_MESSAGE = "injected inference failure: poisoned image in batch"


def fault_class(pixels: np.ndarray) -> int:
    """The class the fault model answers for an image: the pixel sum modulo 10."""
    return int(np.asarray(pixels, dtype=np.int64).sum() % 10)


def clean_image(seed: int) -> np.ndarray:
    """A dataset-like 28x28 image (dark border, bright blob): passes through preprocessing unchanged."""
    rng = np.random.default_rng(seed)
    pixels = np.zeros((28, 28), np.uint8)
    pixels[6:22, 6:22] = rng.integers(60, 256, (16, 16), dtype=np.uint8)
    return pixels


def marked_image(marker: int, hold_ms: int = 0, seed: int = 0) -> np.ndarray:
    pixels = clean_image(seed)
    pixels[0, :] = marker
    pixels[1, 0] = hold_ms // 10
    return pixels


def build_fault_model(root: Path, *, always_fail: bool = False) -> Path:
    """A SavedModel honouring the service's contract whose answers are checkable (class = pixel
    sum mod 10, confidence ~0.998) and which fails or stalls on marked images. Returns the model
    directory (holding version 1)."""
    import tensorflow as tf

    class FaultModel(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 28, 28, 1], tf.uint8, name="images")])
        def serve(self, images):
            pixels = tf.cast(images[..., 0], tf.int32)
            first_row = pixels[:, 0, :]
            poisoned = tf.reduce_any(tf.reduce_all(tf.equal(first_row, POISON), axis=1))
            healthy = tf.less(tf.size(images), 0) if always_fail else tf.logical_not(poisoned)
            check = tf.debugging.Assert(healthy, [FAILURE_MESSAGE])
            slow_rows = tf.reduce_all(tf.equal(first_row, SLOW), axis=1)
            holds = tf.where(slow_rows, tf.cast(pixels[:, 1, 0], tf.float64) * 0.01, 0.0)
            hold_s = tf.reduce_max(tf.concat([[0.0], holds], axis=0))  # 0 for an empty batch
            with tf.control_dependencies([check]):
                started = tf.timestamp()
            spins = tf.while_loop(lambda i: tf.timestamp() - started < hold_s, lambda i: i + 1, [tf.constant(0)])[0]
            classes = tf.math.floormod(tf.reduce_sum(pixels, axis=[1, 2]), 10)
            logits = tf.one_hot(classes, 10, on_value=8.0, off_value=0.0) + 0.0 * tf.cast(spins, tf.float32)
            return {"probabilities": tf.nn.softmax(logits), "logits": logits}

    module = FaultModel()
    version_dir = root / "1"
    tf.saved_model.save(module, str(version_dir), signatures={"serving_default": module.serve})
    metadata = {
        "name": "fault-model" if not always_fail else "always-failing-model",
        "version": 1,
        "architecture": "test double: class = pixel sum mod 10",
        "class_names": list(CLASS_NAMES),
        "review_threshold": 0.5,
    }
    (version_dir / "metadata.json").write_text(json.dumps(metadata))
    return root


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")
