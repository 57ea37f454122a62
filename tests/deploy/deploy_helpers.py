"""Shared helpers for the deployment tests: paths, external validators, durations."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from bench.server import Server, start_server

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
DOCS = REPO / "docs" / "deploy.md"
RULES_FILE = DEPLOY / "prometheus" / "rules" / "garment-sorter.yml"
RULE_TESTS_DIR = DEPLOY / "prometheus" / "tests"
# The Kubernetes release the manifests are validated against (kubernetes-validate's schemas).
KUBERNETES_VERSION = "1.33.0"

# The service's metric families (issue 4); dashboards and rules may use nothing else (plus `up`).
SERVICE_METRICS = {
    "garment_sorter_requests_total": "counter",
    "garment_sorter_request_duration_seconds": "histogram",
    "garment_sorter_queue_depth": "gauge",
    "garment_sorter_batch_size": "histogram",
    "garment_sorter_queue_wait_seconds": "histogram",
    "garment_sorter_inference_duration_seconds": "histogram",
    "garment_sorter_rejections_total": "counter",
    "garment_sorter_predictions_total": "counter",
    "garment_sorter_model_info": "gauge",
    # Beyond issue 4's list, exported by app/metrics.py: queue capacity, readiness and drain state.
    "garment_sorter_queue_capacity": "gauge",
    "garment_sorter_ready": "gauge",
    "garment_sorter_draining": "gauge",
    # Issue 14: why answers went to the review bin.
    "garment_sorter_review_reasons_total": "counter",
    # Issue 15: the decision log, kept photos and reviews.
    "garment_sorter_decisions_recorded_total": "counter",
    "garment_sorter_decision_log_write_seconds": "histogram",
    "garment_sorter_decision_log_spool_records": "gauge",
    "garment_sorter_decisions_replayed_total": "counter",
    "garment_sorter_decisions_not_recorded_total": "counter",
    "garment_sorter_photos_kept_total": "counter",
    "garment_sorter_photos_not_kept_total": "counter",
    "garment_sorter_photos_purged_total": "counter",
    "garment_sorter_reviews_total": "counter",
    "garment_sorter_audited_total": "counter",
    "garment_sorter_review_backlog": "gauge",
    "garment_sorter_review_oldest_pending_seconds": "gauge",
    # Issue 16: the model roll-out.
    "garment_sorter_model_role": "gauge",
    "garment_sorter_model_loads_total": "counter",
    "garment_sorter_rollout_file_errors_total": "counter",
    "garment_sorter_version_answers_total": "counter",
    "garment_sorter_shadow_answers_total": "counter",
    "garment_sorter_shadow_silent_bin_changes_total": "counter",
    "garment_sorter_shadow_dropped_total": "counter",
    # Issue 17: slow clients.
    "garment_sorter_open_connections": "gauge",
}


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def require_tool(name: str, how: str) -> str:
    """Path of an executable from the project's venv or PATH. Missing: a failure under CI (every
    validator must run there), a skip naming the install command elsewhere."""
    beside_python = Path(sys.executable).parent / name
    found = str(beside_python) if beside_python.exists() else shutil.which(name)
    if found:
        return found
    message = f"`{name}` not found; install it with: {how}"
    if in_ci():
        pytest.fail(message + " (CI=true: validators may not be skipped)")
    pytest.skip(message)


def run(cmd: list[str], *, cwd: Path = REPO, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def load_yaml(path: Path):
    return yaml.safe_load(path.read_text())


def load_yaml_all(path: Path) -> list:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def project_version() -> str:
    with open(REPO / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]["version"]


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s|us)")
_UNIT_S = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6}


def duration_s(text: str) -> float:
    """Compose/Go duration ('1m30s', '40s', '500ms') in seconds; anything else raises."""
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a duration: {text!r}")
    return sum(float(n) * _UNIT_S[u] for n, u in parts)


METRIC_NAME = re.compile(r"\b(garment_sorter_[a-z_]+|up)\b(?!\s*\()")


def metric_families(promql: str) -> set[str]:
    """Metric families a PromQL expression reads (histogram series map to their family)."""
    names = set()
    for name in METRIC_NAME.findall(promql):
        for suffix in ("_bucket", "_sum", "_count"):
            if name.endswith(suffix) and name[: -len(suffix)] in SERVICE_METRICS:
                name = name[: -len(suffix)]
        names.add(name)
    return names


def sorter_env_fields() -> set[str]:
    """Environment variable names the service's settings class accepts."""
    from app.config import ENV_PREFIX, Settings

    return {ENV_PREFIX + name.upper() for name in Settings.model_fields}


# --- a real service process --------------------------------------------------------------------
def served_model_dir() -> Path:
    """The model directory the test servers load: SORTER_MODEL_DIR when the caller set it, else the
    repository's models/fashion-cnn (what the image ships)."""
    model_dir = Path(os.environ.get("SORTER_MODEL_DIR", REPO / "models" / "fashion-cnn"))
    if not model_dir.is_absolute():
        model_dir = REPO / model_dir
    versions = [p for p in model_dir.glob("*") if p.name.isdigit() and (p / "saved_model.pb").is_file()]
    if not versions:
        message = f"no exported model version under {model_dir} (python -m training export writes one)"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    return model_dir


def start_served(**settings: str) -> Server:
    """The model the image ships, served by a real `garment-sorter serve` with SORTER_<NAME> settings;
    returns once it is ready."""
    env = {"SORTER_MODEL_DIR": str(served_model_dir())}
    env.update({f"SORTER_{name.upper()}": value for name, value in settings.items()})
    return start_server(env)


def png(seed: int) -> bytes:
    """A deterministic 28x28 garment-like PNG: a bright textured blob on black, Fashion-MNIST's look."""
    import io

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:28, 0:28] / 28
    cy, cx = rng.uniform(0.4, 0.6, 2)
    ry, rx = rng.uniform(0.2, 0.4, 2)
    blob = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
    pixels = (blob * rng.uniform(0.6, 1.0, (28, 28)) * 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(out, format="PNG")
    return out.getvalue()


def photo(seed: int, size_px: int = 320) -> bytes:
    """A deterministic catalogue-style JPEG: a dark tinted garment on a light background, which the
    service decodes, trims, resizes and sharpens (the expensive path)."""
    import io

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size_px, 0:size_px] / size_px
    cy, cx = rng.uniform(0.4, 0.6, 2)
    ry, rx = rng.uniform(0.2, 0.4, 2)
    blob = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
    shade = 0.5 + 0.3 * np.sin(xx * rng.uniform(5, 20)) * np.cos(yy * rng.uniform(5, 20))
    gray = 253 - blob * shade * 200
    pixels = np.stack([gray, gray * 0.95, gray * 0.9], axis=-1).clip(0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels, mode="RGB").save(out, format="JPEG", quality=90)
    return out.getvalue()
