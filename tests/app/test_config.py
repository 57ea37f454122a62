"""Settings: validated at start-up, every error names the SORTER_ variable."""

from __future__ import annotations

import pytest

from app.config import SettingsError, load_settings


def test_defaults_match_the_documented_service():
    settings = load_settings()
    assert (settings.max_batch_size, settings.max_wait_ms, settings.max_queue) == (64, 2.0, 1024)
    assert settings.request_timeout_s == 5.0 and settings.drain_timeout_s == 30.0
    assert settings.max_body_bytes == 10 * 1024 * 1024 and settings.max_image_pixels == 40_000_000
    assert settings.max_batch_files == 256 and settings.default_top_k == 3
    assert settings.api_keys == [] and settings.metrics_require_key is False
    assert settings.policy_file.name == "policy.yaml" and settings.policy_file.is_file()


def test_environment_is_read_with_the_prefix(monkeypatch):
    monkeypatch.setenv("SORTER_MAX_BATCH_SIZE", "1")
    monkeypatch.setenv("SORTER_API_KEYS", "k" * 16 + " , " + "z" * 20 + ",")
    monkeypatch.setenv("SORTER_HEMISPHERE", "southern")
    settings = load_settings()
    assert settings.max_batch_size == 1
    assert settings.api_keys == ["k" * 16, "z" * 20]
    assert settings.hemisphere == "southern"
    assert "k" * 16 not in repr(settings)  # keys never reach logs through repr


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("SORTER_MAX_BATCH_SIZE", "0", "SORTER_MAX_BATCH_SIZE: Input should be greater than or equal to 1 (got '0')"),
        ("SORTER_MAX_WAIT_MS", "soon", "SORTER_MAX_WAIT_MS: Input should be a valid number"),
        ("SORTER_MODEL_BACKEND", "onnx", "SORTER_MODEL_BACKEND: Input should be 'tensorflow' or 'null'"),
        ("SORTER_REVIEW_THRESHOLD", "1.5", "SORTER_REVIEW_THRESHOLD: Input should be less than or equal to 1"),
        ("SORTER_API_KEYS", "tiny-key", "SORTER_API_KEYS: Value error, every API key needs at least 16 characters"),
        ("SORTER_RESIZE", "bicubic", "SORTER_RESIZE: Input should be 'antialias' or 'subsample'"),
        ("SORTER_MAX_BATCH_FILES", "2000", "max_batch_files (2000) exceeds max_queue (1024)"),
    ],
)
def test_bad_values_name_the_variable(monkeypatch, variable, value, message):
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert message in str(caught.value)
    assert str(caught.value).startswith("invalid configuration: ")
    if variable == "SORTER_API_KEYS":
        assert "tiny-key" not in str(caught.value)  # a rejected key is not echoed
