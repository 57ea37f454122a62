"""Fixtures for the service tests: the real exported model, in-process apps and a real server."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from service_helpers import READY_TIMEOUT_S, ControlledModel

from app.config import load_settings
from app.inference.tensorflow_model import TensorFlowModel, load_tensorflow_model
from app.main import create_app
from bench.photos import load_test_set
from bench.server import Server, running_server
from contract.versions import latest

REPO = Path(__file__).resolve().parents[2]
MODEL_DIR = Path(os.environ.get("SORTER_MODEL_DIR", REPO / "models" / "fashion-cnn"))


@pytest.fixture(scope="session")
def model_dir() -> Path:
    latest(MODEL_DIR)  # fails with a clear VersionError when no version is committed
    return MODEL_DIR


@pytest.fixture(scope="session")
def tf_model(model_dir: Path) -> TensorFlowModel:
    """The committed SavedModel, loaded and warmed once for the whole session."""
    model = load_tensorflow_model(model_dir, max_batch_size=64)
    model.warmup()
    return model


@pytest.fixture(scope="session")
def test_set() -> tuple[np.ndarray, np.ndarray]:
    return load_test_set()


@pytest.fixture(scope="session")
def predicted_test_labels(tf_model: TensorFlowModel, test_set) -> np.ndarray:
    """The model's own answers on the first 1,000 raw test images (the reference for HTTP answers)."""
    images = test_set[0][:1000]
    return np.concatenate([tf_model.predict(images[i : i + 64]).argmax(axis=1) for i in range(0, len(images), 64)])


@pytest.fixture(scope="session")
def make_client(tf_model: TensorFlowModel, tmp_path_factory: pytest.TempPathFactory) -> Callable[..., TestClient]:
    """A factory: create_app with settings overrides around the shared model, lifespan run, ready.
    Each app keeps its decision log in a directory of its own."""
    clients: list[TestClient] = []

    def factory(model=None, wait: bool = True, **overrides) -> TestClient:
        overrides.setdefault("model_dir", str(MODEL_DIR))
        overrides.setdefault("data_dir", str(tmp_path_factory.mktemp("data")))
        settings = load_settings(**overrides)
        if model is None and settings.model_backend != "null":
            model = tf_model
        app = create_app(settings, model=model)
        client = TestClient(app, raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        if wait:
            assert app.state.service.wait_ready(READY_TIMEOUT_S), app.state.service.lifecycle.warmup_error
        return client

    yield factory
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def controlled(tf_model: TensorFlowModel) -> Iterator[ControlledModel]:
    model = ControlledModel(tf_model)
    yield model
    model.gate.set()
    model.warmup_gate.set()


@pytest.fixture(scope="module")
def client(make_client) -> Iterator[TestClient]:
    client = make_client()
    return client


@pytest.fixture(scope="session")
def server(model_dir: Path) -> Iterator[Server]:
    """A real `garment-sorter serve` process on a free port (default settings)."""
    with running_server({"SORTER_MODEL_DIR": str(model_dir)}) as running:
        yield running
