"""`make gpu-check` / `python -m bench gpu-check` on a machine without a GPU: it says so at once and
exits 0; with --allow-cpu --quick each path measures every part on the CPU (tiny sizes); the
fallback's networks carry the shipped weights (checked against the SavedModel)."""

from __future__ import annotations

import ast
import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from bench.gpu_check import QUICK, nvidia_gpus
from bench.gpu_report import headlines, report
from bench.gpu_weights import bucket, load_ensemble, write_index
from contract.versions import latest
from training import data

REPO = Path(__file__).resolve().parents[2]
MODEL_DIR = REPO / "models" / "fashion-cnn"
NO_GPU = "no NVIDIA GPU on this machine"
H200 = "NVIDIA H200, 143771 MiB, 580.159.04"


def fake_nvidia_smi(folder: Path, prints: str | None) -> dict[str, str]:
    """An environment whose nvidia-smi lists one GPU (``prints``) or, with None, fails as it does
    where there is none."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "nvidia-smi"
    script.write_text(
        f"#!/bin/sh\necho '{prints}'\n" if prints else "#!/bin/sh\necho 'No devices were found'\nexit 6\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return {**os.environ, "PATH": f"{folder}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(REPO)}


def gpu_check(*args: str, env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench", "gpu-check", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_make_gpu_check_without_a_gpu_says_so_and_installs_nothing(tmp_path):
    started = time.monotonic()
    done = subprocess.run(
        ["make", "--no-print-directory", "gpu-check"],
        cwd=REPO,
        env=fake_nvidia_smi(tmp_path / "bin", None),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert NO_GPU in done.stdout
    assert "pip" not in done.stdout + done.stderr
    assert time.monotonic() - started < 10


def test_python_m_bench_gpu_check_without_a_gpu_exits_0_at_once(tmp_path):
    started = time.monotonic()
    done = gpu_check(env=fake_nvidia_smi(tmp_path / "bin", None))
    assert done.returncode == 0, done.stderr
    assert NO_GPU in done.stdout
    assert time.monotonic() - started < 10


def test_nvidia_smi_is_read_for_name_memory_and_driver(tmp_path):
    fake_nvidia_smi(tmp_path, H200)
    assert nvidia_gpus(str(tmp_path / "nvidia-smi")) == [
        {"name": "NVIDIA H200", "memory": "143771 MiB", "driver": "580.159.04"}
    ]
    assert nvidia_gpus(str(tmp_path / "no-such-command")) == []


def test_the_check_starts_without_the_service_or_a_framework():
    # The GPU machine may have none of them: bench's command line and the check import neither.
    code = (
        "import sys, bench.cli, bench.gpu_check; "
        "print(sorted(m for m in ('tensorflow', 'keras', 'fastapi', 'bench.suite') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def module_level_imports(module: str) -> set[str]:
    """Every module a project module imports when it is imported (top-level statements only),
    followed through the project's own modules."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = REPO / (name.replace(".", "/") + ".py")
        if not path.is_file():
            path = REPO / name.replace(".", "/") / "__init__.py"
        if not path.is_file():
            continue  # not ours
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Import):
                todo += [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                todo += [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        parent = name.rpartition(".")[0]
        if parent:
            todo.append(parent)
    return seen


def test_the_fallback_worker_imports_keras_but_never_tensorflow():
    # On the fallback's machine there is no TensorFlow: only the parts that run on it may need it.
    imported = {name.split(".")[0] for name in module_level_imports("bench.gpu_worker")}
    imported |= {name.split(".")[0] for name in module_level_imports("bench.gpu_weights")}
    assert "keras" in imported
    assert not imported & {"tensorflow", "pydantic", "fastapi", "app"}


@pytest.mark.slow
def test_quick_run_on_the_cpu_measures_every_part_through_the_service(tmp_path):
    out, figures = tmp_path / "gpu.md", tmp_path / "gpu.json"
    env = {**fake_nvidia_smi(tmp_path / "bin", None)}
    done = gpu_check("--allow-cpu", "--quick", "--report", str(out), "--json-out", str(figures), env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads(figures.read_text())
    assert results["path"] == "tensorflow"
    assert results["device"]["platform"] == "cpu"
    assert set(results["savedmodel"]["images_per_s"]) == {"float32", "bfloat16"}
    for rates in results["savedmodel"]["images_per_s"].values():
        assert [int(size) for size in rates] == list(QUICK.batch_sizes) and min(rates.values()) > 0
    rows = results["http"]["rows"]
    expected = len(QUICK.single_concurrency) + len(QUICK.camera_concurrency)
    assert [r["build"] for r in rows] == ["batching on"] * expected + ["batching off"] * expected
    assert all(r["requests_per_s"] > 0 and r["errors"] == 0 and r["p99_ms"] >= r["p50_ms"] for r in rows)
    train = results["train"]
    assert train["augmented"] and len(train["epoch_s"]) == QUICK.epochs and train["images"] == QUICK.limit_train
    text = out.read_text()
    assert [line for line in text.splitlines() if line.startswith("## ")] == [
        "## Headline figures",
        "## Raw images/s by batch size",
        "## POST /classify over HTTP, batching on and off",
        "## Training epochs of the production recipe",
        "## Reproduce",
    ]
    assert "| 2 MP JPEG" in text and "| 28x28 PNG | batching off | 1 |" in text


@pytest.fixture(scope="module")
def weight_index(tmp_path_factory):
    images = data.load_fashion_mnist(allow_download=False).x_test[:256]
    path = tmp_path_factory.mktemp("carry") / "weights-index.json"
    return path, write_index(latest(MODEL_DIR), path, images)


def test_the_weight_index_rebuilds_the_served_logits(weight_index):
    _, index = weight_index
    assert len(index["networks"]) == 3  # two averaged members and the unsure-only one
    assert index["check"]["max_abs_logit_difference"] < 1e-3
    assert 0 < index["check"]["second_look_share"] < 0.2


def test_a_weight_index_of_another_variables_file_is_refused(weight_index, tmp_path):
    _, index = weight_index
    other = tmp_path / "other.json"
    other.write_text(json.dumps({**index, "variables_sha256": "0" * 64}))
    with pytest.raises(ValueError, match="sha256 differs"):
        load_ensemble(latest(MODEL_DIR), other)


def test_without_an_index_the_networks_are_fresh_and_say_so():
    served = load_ensemble(latest(MODEL_DIR), None)
    assert served.networks == 3 and "freshly initialised" in served.weights
    logits, _ = served.logits(np.zeros((3, 28, 28, 1), np.uint8))
    assert logits.shape == (3, 10)


def test_the_second_look_is_padded_to_a_power_of_two():
    assert [bucket(n) for n in (1, 2, 3, 5, 64, 65)] == [1, 2, 4, 8, 64, 128]


@pytest.mark.slow
def test_the_fallback_runs_where_tensorflow_sees_no_gpu_and_cannot_be_installed(weight_index, tmp_path):
    # A machine whose nvidia-smi lists a GPU that TensorFlow cannot use, with no package index: the
    # Keras fallback (here on Keras' TensorFlow backend, on the CPU; on such a machine JAX).
    index_path, _ = weight_index
    figures = tmp_path / "gpu.json"
    arguments = ["--allow-cpu", "--quick", "--offline", "--keras-backend", "tensorflow"]
    arguments += ["--weights-index", str(index_path), "--json-out", str(figures)]
    done = gpu_check(*arguments, env=fake_nvidia_smi(tmp_path / "bin", H200))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads(figures.read_text())
    assert results["path"] == "keras"
    assert results["gpus"] == [{"name": "NVIDIA H200", "memory": "143771 MiB", "driver": "580.159.04"}]
    assert any("--offline" in note for note in results["notes"])
    assert "not measured" in results["http"]["skipped"]
    ensemble = results["ensemble"]
    assert ensemble["images"] == "test split" and "shipped weights of version" in ensemble["weights"]
    assert ensemble["accuracy"]["top1"] > 0.9  # the shipped weights, not fresh ones
    assert [row["batch"] for row in ensemble["rows"]] == list(QUICK.batch_sizes)
    assert not results["train"]["augmented"] and results["train"]["recipe_augments"]
    lines = headlines(results)
    assert lines[0] == (
        "GPU: NVIDIA H200 (143771 MiB, driver 580.159.04); path: fallback: Keras 3 on tensorflow, without the service"
    )
    assert "## How this path was chosen" in report({**results, "elapsed_min": 1.0})


def test_a_part_that_failed_is_reported_as_not_measured():
    results = {
        "date": "2026-11-30 12:00 UTC",
        "command": "python -m bench gpu-check",
        "gpus": [{"name": "NVIDIA H200", "memory": "143771 MiB", "driver": "580.159.04"}],
        "host": {"cpu": "x", "python": "3.12.3", "os": "Linux"},
        "plan": {"name": "full"},
        "path": "keras",
        "device": {"backend": "jax", "framework": "JAX 0.11.2 (Keras 3.15.1)", "device": "GPU:0 (NVIDIA H200)"},
        "failed": {"raw": "RuntimeError: out of memory", "train": "RuntimeError: bench.gpu_worker exited with 1"},
        "http": {"skipped": "HTTP serving was not measured: no TensorFlow"},
        "elapsed_min": 2.0,
    }
    text = report(results)
    assert "Not measured: RuntimeError: out of memory." in text
    assert "- training: not measured (RuntimeError: bench.gpu_worker exited with 1)" in text
    assert "- HTTP serving was not measured: no TensorFlow" in text
