"""Fixtures for the contract tests."""

from __future__ import annotations

import json

import pytest
from contract_helpers import MODEL_DIR

from contract.versions import latest


@pytest.fixture
def shipped_metadata() -> dict:
    """The served version's metadata.json as a plain document, to be broken by a test."""
    return json.loads((latest(MODEL_DIR) / "metadata.json").read_text())
