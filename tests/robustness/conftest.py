"""Fixtures of the robustness suite: real `garment-sorter serve` processes on free loopback ports."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from robustness_helpers import KEYED, MODEL_DIR, build_fault_model, serving

from bench.server import Server
from contract.versions import latest


@pytest.fixture(scope="session")
def model_dir() -> Path:
    latest(MODEL_DIR)  # a clear VersionError when no version is there
    return MODEL_DIR


@pytest.fixture(scope="session")
def server(model_dir: Path) -> Iterator[Server]:
    """The real model behind default settings plus API keys (so the documented security holds):
    what schemathesis and the fuzzer attack."""
    with serving({"SORTER_MODEL_DIR": str(model_dir), **KEYED}) as running:
        yield running


@pytest.fixture(scope="session")
def fault_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_fault_model(tmp_path_factory.mktemp("fault-model"))


@pytest.fixture(scope="session")
def failing_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_fault_model(tmp_path_factory.mktemp("failing-model"), always_fail=True)
