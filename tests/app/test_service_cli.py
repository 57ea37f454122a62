"""`garment-sorter`: classify locally, refuse bad configuration before starting, expose training."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from service_helpers import png

from bench.photos import render_catalog_photo

REPO = Path(__file__).resolve().parents[2]


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})},
    )


def test_classify_photos_locally(tmp_path, model_dir, tf_model, test_set):
    images = test_set[0][:2]
    (tmp_path / "item0.png").write_bytes(png(images[0]))
    (tmp_path / "item1.jpg").write_bytes(render_catalog_photo(images[1], np.random.default_rng(1)))
    (tmp_path / "notes.txt").write_text("not a photo")
    files = [str(tmp_path / n) for n in ("item0.png", "notes.txt", "item1.jpg")]
    done = cli("classify", "--json", "--as-of", "2025-07-01", *files, env={"SORTER_MODEL_DIR": str(model_dir)})
    assert done.returncode == 1  # one file failed
    assert f"{files[1]}: error: not_an_image: The data is not an image in a recognised format." in done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["file"] for r in records] == [files[0], files[2]]
    expected = tf_model.class_names[int(tf_model.predict(images[:1])[0].argmax())]
    assert records[0]["label"] == expected
    for record in records:
        assert set(record) == {"file", "label", "confidence", "season", "bin", "zone", "needs_review", "review_reasons"}
        assert 0 < record["confidence"] <= 1
    plain = cli("classify", files[0], env={"SORTER_MODEL_DIR": str(model_dir)})
    assert plain.returncode == 0
    path, label, confidence, _season, _rest = plain.stdout.strip().split("\t", 4)
    assert (path, label) == (files[0], expected) and 0 < float(confidence) <= 1


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"SORTER_MAX_QUEUE": "-3"},
            "invalid configuration: SORTER_MAX_QUEUE: Input should be greater than or equal to 1 (got '-3')",
        ),
        (
            {"SORTER_MODEL_DIR": "/nonexistent/models"},
            "model directory /nonexistent/models does not exist (SORTER_MODEL_DIR names it)",
        ),
    ],
)
def test_serve_refuses_bad_configuration_before_starting(env, message):
    done = cli("serve", "--port", "1", env=env, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip() == f"garment-sorter: error: {message}"


def test_serve_refuses_a_bad_policy_file(tmp_path, model_dir):
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        (REPO / "contract" / "policy.yaml").read_text().replace("[Trouser, Shirt", "[Trouser, Coat, Shirt")
    )
    done = cli("serve", "--port", "1", env={"SORTER_POLICY_FILE": str(policy), "SORTER_MODEL_DIR": str(model_dir)})
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"garment-sorter: error: policy file {policy}: "
        "class 'Coat' is mapped more than once ('winter' and 'all-season')"
    )


def test_help_lists_service_and_plugin_commands():
    """serve and classify are the service's; train, calibrate, ... come from training/ through the
    garment_sorter.commands entry point, which this checkout installs."""
    done = cli("--help")
    assert done.returncode == 0
    listed = done.stdout.split("{", 1)[1].split("}", 1)[0].split(",")
    assert listed[:2] == ["serve", "classify"]
    for command in ("explore", "train", "compare", "export", "calibrate", "bench-model", "model-card"):
        assert command in listed
