"""`make gpu-check` (`python -m bench gpu-check`): what the service and its training do on an NVIDIA GPU.

One run, under 8 minutes, that prints and writes to docs/gpu.md: the GPU (nvidia-smi), the device
the framework computes on, raw images/s by batch size, single-image and camera-photo HTTP throughput
with p50/p99 with dynamic batching on and off, and the time of one training epoch of the production
recipe. Without a GPU it says so and exits 0 before anything heavy starts.

Two paths, chosen by what the machine can run:

- **The service on TensorFlow** (the normal one). TensorFlow must see the GPU: if the installed one
  does not, ``tensorflow[and-cuda]`` of the same version is installed with pip into this Python
  (the CUDA libraries as wheels), and, if the service's own packages are missing, the project
  (``pip install -e .[train]``). Then: the SavedModel's signatures by batch size (as
  `python -m training bench-model`), a real `garment-sorter serve` per build (batching on: the
  defaults; off: SORTER_MAX_BATCH_SIZE=1) driven by wrk with a 28x28 PNG and a 2 MP camera JPEG,
  and two epochs of training (the first includes tracing and compilation).
- **Keras 3 on JAX** (the fallback). Where TensorFlow cannot see the GPU and cannot be installed
  (a machine without a package index), but JAX can: the production architecture rebuilt in Keras
  (bench.gpu_weights), one network and the served ensemble with the shipped weights read from the
  SavedModel's variables file through a carried index, and two epochs of the recipe on the real
  training split. HTTP is not measured on this path: the service needs TensorFlow. The carry folder
  (``--carry``, made by ``--prepare-carry``, see bench.gpu_carry) brings what such a machine lacks:
  Keras' wheels, the dataset and the weight index.

Framework work runs in child processes (bench.gpu_worker, `garment-sorter serve`): each sets up its
own backend, and this process imports neither TensorFlow nor Keras, so it runs on any Python 3.11+
with NumPy.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.gpu_carry import CARRY_DATASET, CARRY_INDEX, CARRY_WHEELS, MODEL_DIR, prepare
from bench.gpu_report import headlines, report
from bench.server import REPO
from training.data import DIR_VARIABLE

DEFAULT_REPORT = REPO / "docs" / "gpu.md"
# The service's own packages, by import name: without them `garment-sorter serve` cannot start.
SERVICE_MODULES = ("tensorflow", "keras", "fastapi", "uvicorn", "pydantic_settings", "multipart", "sqlalchemy")
PIP_NETWORK = ["--retries", "1", "--timeout", "20"]  # fail fast where there is no package index
PIP_TIMEOUT_S = 1800.0  # tensorflow[and-cuda] is about 3 GB of wheels
PROBE_TIMEOUT_S = 300.0
COMMAND_VARIABLE = "GPU_CHECK_COMMAND"  # the command to record, when a wrapper (make) started this one


@dataclass(frozen=True)
class Plan:
    """How long and how much: the full run (under 8 minutes on a GPU) or --quick (tests, CPU)."""

    batch_sizes: tuple[int, ...]
    seconds_per_size: float
    single_concurrency: tuple[int, ...]
    camera_concurrency: tuple[int, ...]
    http_seconds: float
    http_warmup_s: float
    epochs: int
    limit_train: int | None
    limit_val: int | None


FULL = Plan((1, 8, 32, 64, 128, 256, 1024, 4096), 3.0, (1, 16, 64), (1, 8), 5.0, 2.0, 2, None, None)
QUICK = Plan((1, 8), 0.3, (1, 4), (1,), 1.0, 1.0, 2, 256, 256)


def say(text: str) -> None:
    print(text, flush=True)


# --- what the machine has -----------------------------------------------------------------------
def nvidia_gpus(command: str = "nvidia-smi") -> list[dict[str, str]]:
    """Each NVIDIA GPU nvidia-smi lists (name, memory, driver); empty without one or without nvidia-smi."""
    if shutil.which(command) is None:
        return []
    query = "--query-gpu=name,memory.total,driver_version"
    try:
        out = subprocess.run(
            [command, query, "--format=csv,noheader"], capture_output=True, text=True, timeout=30, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in out.splitlines():
        fields = [field.strip() for field in line.split(",")]
        if len(fields) == 3 and fields[0]:
            gpus.append({"name": fields[0], "memory": fields[1], "driver": fields[2]})
    return gpus


def _python_json(code: str, env: dict[str, str] | None = None) -> tuple[dict[str, Any] | None, str]:
    """Run code in a fresh interpreter; its last stdout line as JSON, or None and why not."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT_S,
            cwd=REPO,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})},
        )
    except subprocess.TimeoutExpired:
        return None, f"timed out after {PROBE_TIMEOUT_S:.0f} s"
    lines = done.stdout.strip().splitlines()
    if done.returncode == 0 and lines:
        try:
            return json.loads(lines[-1]), ""
        except json.JSONDecodeError:
            pass
    error = (done.stderr.strip().splitlines() or ["no output"])[-1]
    return None, error


TENSORFLOW_PROBE = """
import json
import tensorflow as tf
gpus = tf.config.list_physical_devices("GPU")
names = [tf.config.experimental.get_device_details(g).get("device_name", g.name) for g in gpus]
print(json.dumps({"version": tf.__version__, "gpus": names, "cuda": tf.test.is_built_with_cuda()}))
"""


def probe_tensorflow() -> dict[str, Any]:
    """The installed TensorFlow's version and the GPUs it sees; version None where it does not import."""
    found, error = _python_json(TENSORFLOW_PROBE)
    return found or {"version": None, "gpus": [], "error": error}


def missing_service_modules() -> list[str]:
    return [name for name in SERVICE_MODULES if importlib.util.find_spec(name) is None]


def pip_install(arguments: list[str], why: str) -> tuple[bool, str]:
    """`python -m pip install ...` into this Python; (succeeded, pip's last words on failure)."""
    command = [sys.executable, "-m", "pip", "install", "--quiet", *PIP_NETWORK, *arguments]
    say(f"{why}: {shlex.join(command)}")
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=PIP_TIMEOUT_S, cwd=REPO)
    except subprocess.TimeoutExpired:
        return False, f"pip did not finish within {PIP_TIMEOUT_S:.0f} s"
    if done.returncode == 0:
        return True, ""
    last = (done.stderr.strip().splitlines() or done.stdout.strip().splitlines() or ["no output"])[-1]
    say(f"  pip failed: {last}")
    return False, last


def ensure_tensorflow(gpus: list[dict[str, str]], install: bool, notes: list[str]) -> dict[str, Any]:
    """TensorFlow as installed, or as made to see the GPU: the project's packages where they are
    missing, then ``tensorflow[and-cuda]`` of the installed version where TensorFlow sees no GPU."""
    missing = missing_service_modules()
    if missing and install and gpus:
        ok, error = pip_install(["-e", f"{REPO}[train]"], f"the service's packages are missing ({', '.join(missing)})")
        notes.append(
            "installed the project's packages (`pip install -e .[train]`)"
            if ok
            else f"the service's packages ({', '.join(missing)}) are missing and could not be installed: {error}"
        )
        importlib.invalidate_caches()  # see the packages pip just installed
        missing = missing_service_modules()
    elif missing:
        notes.append(f"the service's packages are missing here: {', '.join(missing)}")
    tensorflow = probe_tensorflow()
    if gpus and tensorflow["version"] and not tensorflow["gpus"]:
        if install:
            version = str(tensorflow["version"]).split("+")[0]
            ok, error = pip_install(
                [f"tensorflow[and-cuda]=={version}"], f"TensorFlow {version} sees no GPU; installing its CUDA wheels"
            )
            if ok:
                notes.append(f"installed `tensorflow[and-cuda]=={version}` so that TensorFlow sees the GPU")
                tensorflow = probe_tensorflow()
            else:
                notes.append(
                    f"TensorFlow {version} sees no GPU, and `tensorflow[and-cuda]` could not be installed: {error}"
                )
        else:
            notes.append(f"TensorFlow {tensorflow['version']} sees no GPU; installing was not allowed (--offline)")
    elif gpus and not tensorflow["version"]:
        notes.append(
            "TensorFlow is not installed"
            + (
                " and could not be installed"
                if install
                else "; installing was not allowed (--offline: no package index)"
            )
        )
    tensorflow["service_ready"] = not missing
    return tensorflow


# --- child processes ----------------------------------------------------------------------------
def run_worker(parts: list[str], options: list[str], env: dict[str, str]) -> dict[str, Any]:
    """bench.gpu_worker in a child process (its progress goes straight to our stdout)."""
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        out = Path(tmp) / "worker.json"
        command = [sys.executable, "-m", "bench.gpu_worker", "--parts", ",".join(parts), "--json-out", str(out)]
        done = subprocess.run([*command, *options], cwd=REPO, env=env)
        if done.returncode != 0:
            raise RuntimeError(f"bench.gpu_worker --parts {','.join(parts)} exited with {done.returncode}")
        result: dict[str, Any] = json.loads(out.read_text())
        return result


def worker_env(extra: dict[str, str], site: Path | None = None) -> dict[str, str]:
    """This environment for a worker: the repository (and carried packages, if any) importable."""
    paths = [str(site)] if site else []
    paths += [str(REPO), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": os.pathsep.join(paths), **extra}


def install_carried_wheels(carry: Path) -> Path | None:
    """The carried wheels (``carry``/whl) into a directory of their own; None when there are none."""
    wheels = sorted((carry / CARRY_WHEELS).glob("*.whl"))
    if not wheels:
        return None
    site = Path(tempfile.mkdtemp(prefix="gpu-check-site-"))
    command = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile"]
    command += ["--no-cache-dir", "--upgrade", "--target", str(site), *map(str, wheels)]
    say(f"installing the carried wheels ({', '.join(w.name.split('-')[0] for w in wheels)}) into {site}")
    subprocess.run(command, check=True, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S)
    return site


# --- the service over HTTP ----------------------------------------------------------------------
BUILDS = {"batching on": {}, "batching off": {"SORTER_MAX_BATCH_SIZE": "1"}}


def http_figures(plan: Plan) -> list[dict[str, Any]]:
    """wrk against a real server per build: a 28x28 PNG, then a 2 MP camera JPEG, per concurrency."""
    from bench.camera import SIZES, camera_photos
    from bench.load import measure, multipart_body, single_image_body, whole_s, wrk
    from bench.server import running_server

    photo = camera_photos(SIZES["2 MP"], count=1)[0]
    requests = {
        "28x28 PNG": (single_image_body(), plan.single_concurrency),
        f"2 MP JPEG ({len(photo) // 1000} KB)": (
            multipart_body([("file", "photo.jpg", photo)]),
            plan.camera_concurrency,
        ),
    }
    rows = []
    for build, env in BUILDS.items():
        started = time.monotonic()
        with running_server(env) as server:
            say(f"  {build}: server ready in {time.monotonic() - started:.0f} s")
            for request, ((body, content_type), concurrencies) in requests.items():
                wrk(server.url + "/classify", body, content_type, max(concurrencies), whole_s(plan.http_warmup_s))
                for concurrency in concurrencies:
                    row = {
                        "build": build,
                        "request": request,
                        **measure(server, body, content_type, concurrency, plan.http_seconds),
                    }
                    rows.append(row)
                    say(
                        f"  {build:>12}  {request:<18} c={concurrency:<3} {row['requests_per_s']:8,.0f} images/s"
                        f"  p50 {row['p50_ms']:7.2f} ms  p99 {row['p99_ms']:7.2f} ms  errors {row['errors']}"
                    )
    return rows


# --- the two paths ------------------------------------------------------------------------------
def dataset_options(args: argparse.Namespace) -> list[str]:
    dataset_dir = args.dataset_dir or (args.carry / CARRY_DATASET if args.carry else None)
    return ["--dataset-dir", str(dataset_dir)] if dataset_dir else []


def plan_options(plan: Plan) -> list[str]:
    options = ["--batch-sizes", *map(str, plan.batch_sizes), "--seconds", str(plan.seconds_per_size)]
    options += ["--epochs", str(plan.epochs)]
    if plan.limit_train:
        options += ["--limit-train", str(plan.limit_train)]
    if plan.limit_val:
        options += ["--limit-val", str(plan.limit_val)]
    return options


# A part that fails is recorded and the others still run and are reported: a GPU machine's time
# is too scarce to lose what was measured.
PART_ERRORS = (RuntimeError, subprocess.SubprocessError, OSError, ValueError, KeyError)


def attempt(results: dict[str, Any], part: str, measure: Callable[[], dict[str, Any]]) -> None:
    """Measure one part into ``results``, or record why it failed under ``results["failed"]``."""
    try:
        results.update(measure())
    except PART_ERRORS as exc:
        results.setdefault("failed", {})[part] = f"{type(exc).__name__}: {exc}"
        say(f"  {part} failed: {exc}")


def tensorflow_path(args: argparse.Namespace, plan: Plan, results: dict[str, Any]) -> None:
    if args.dataset_dir:  # this process (the request bodies), the servers and the workers read it
        os.environ[DIR_VARIABLE] = str(args.dataset_dir)
    env = worker_env({"KERAS_BACKEND": "tensorflow"})
    model = ["--model-dir", str(MODEL_DIR), *plan_options(plan)]
    say("== the device TensorFlow uses ==")
    results.update(run_worker(["device"], [], env))
    say("== the SavedModel by batch size ==")
    attempt(results, "raw", lambda: run_worker(["savedmodel"], model, env))
    say("== POST /classify with batching on and off ==")
    if shutil.which("wrk") is None:
        results["http"] = {"skipped": "wrk is not installed (apt-get install wrk): HTTP was not measured"}
        say(f"  {results['http']['skipped']}")
    else:
        attempt(results, "http", lambda: {"http": {"rows": http_figures(plan)}})
    say("== training epochs of the production recipe ==")
    attempt(results, "train", lambda: run_worker(["train"], [*model, "--augment"], env))


def keras_path(args: argparse.Namespace, plan: Plan, results: dict[str, Any], on_gpu: bool) -> None:
    backend = {"KERAS_BACKEND": args.keras_backend}
    site = None
    keras_version = "import json, keras; print(json.dumps(keras.__version__))"
    if args.carry and _python_json(keras_version, worker_env(backend))[0] is None:
        site = install_carried_wheels(args.carry)
    try:
        keras_parts(args, plan, results, on_gpu, worker_env(backend, site))
    finally:
        if site is not None:
            shutil.rmtree(site, ignore_errors=True)


def keras_parts(
    args: argparse.Namespace, plan: Plan, results: dict[str, Any], on_gpu: bool, env: dict[str, str]
) -> None:
    say(f"== the device Keras on {args.keras_backend} uses ==")
    results.update(run_worker(["device"], [], env))
    if on_gpu and results["device"]["platform"] == "cpu" and not args.allow_cpu:
        raise RuntimeError(f"{results['device']['framework']} computes on the CPU, not the GPU: nothing measured")
    index = args.weights_index or (args.carry / CARRY_INDEX if args.carry else None)
    if index is not None and not index.is_file():
        say(f"  no weight index at {index}: the networks get fresh weights")
        index = None
    model = ["--model-dir", str(MODEL_DIR), *dataset_options(args), *plan_options(plan)]
    say("== the production architecture by batch size (Keras) ==")
    weights = ["--weights-index", str(index)] if index else []
    attempt(results, "raw", lambda: run_worker(["ensemble"], [*model, *weights], env))
    say("== training epochs of the production recipe ==")
    attempt(results, "train", lambda: run_worker(["train"], model, env))
    results["http"] = {
        "skipped": "HTTP serving was not measured: the service runs on TensorFlow, which cannot compute on this"
        " machine's GPU here (see how this path was chosen)"
    }


# --- the command --------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench gpu-check", description=__doc__.split("\n\n")[0])
    p.add_argument("--allow-cpu", action="store_true", help="run even without a GPU (on the CPU: tests)")
    p.add_argument(
        "--quick", action="store_true", help="tiny sizes and durations (tests); writes no report unless --report"
    )
    p.add_argument(
        "--path", choices=("auto", "tensorflow", "keras"), default="auto", help="auto: TensorFlow if it sees the GPU"
    )
    p.add_argument("--keras-backend", default="jax", help="the fallback's Keras backend (jax; tests: tensorflow)")
    p.add_argument("--offline", action="store_true", help="install nothing from a package index (carried wheels only)")
    p.add_argument(
        "--carry", type=Path, default=None, help="a folder made by --prepare-carry: wheels, dataset, weight index"
    )
    p.add_argument(
        "--dataset-dir", type=Path, default=None, help="the Fashion-MNIST IDX files (default: training.data's)"
    )
    p.add_argument("--weights-index", type=Path, default=None, help="bench.gpu_weights' index (default: in --carry)")
    p.add_argument("--report", type=Path, default=None, help=f"default: {DEFAULT_REPORT.relative_to(REPO)} (full runs)")
    p.add_argument("--json-out", type=Path, default=None, help="also write the figures as JSON")
    p.add_argument("--prepare-carry", type=Path, default=None, metavar="DIR", help="write the carry folder and stop")
    return p


def recorded_command(argv: list[str]) -> str:
    return os.environ.get(COMMAND_VARIABLE) or shlex.join(["python", "-m", "bench", "gpu-check", *argv])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    if args.prepare_carry:
        prepare(args.prepare_carry)
        return 0
    started = time.monotonic()
    gpus = nvidia_gpus()
    if not gpus and not args.allow_cpu:
        say("gpu-check: no NVIDIA GPU on this machine (nvidia-smi finds none): nothing to measure.")
        return 0
    plan = QUICK if args.quick else FULL
    for gpu in gpus:
        say(f"GPU: {gpu['name']}, {gpu['memory']}, driver {gpu['driver']}")
    if not gpus:
        say("no NVIDIA GPU: measuring on the CPU (--allow-cpu)")
    notes: list[str] = []
    results: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": recorded_command(argv),
        "gpus": gpus,
        "host": _host(),
        "plan": {"name": "quick" if args.quick else "full", **asdict(plan)},
        "notes": notes,
    }
    path = args.path
    if path in ("auto", "tensorflow"):
        tensorflow = ensure_tensorflow(gpus, not args.offline, notes)
        results["tensorflow"] = tensorflow
        usable = tensorflow["version"] and tensorflow["service_ready"] and (tensorflow["gpus"] or not gpus)
        if usable:
            path = "tensorflow"
        elif path == "tensorflow":
            say("gpu-check: the TensorFlow path cannot run here: " + "; ".join(notes))
            return 1
        else:
            path = "keras"
            notes.append(f"so the fallback ran: Keras 3 on {args.keras_backend}, without the service")
    results["path"] = path
    fallback = f"Keras 3 on {args.keras_backend} (fallback)"
    say(f"path: {'the service on TensorFlow' if path == 'tensorflow' else fallback}")
    for note in notes:
        say(f"  {note}")
    try:
        if path == "tensorflow":
            tensorflow_path(args, plan, results)
        else:
            keras_path(args, plan, results, on_gpu=bool(gpus))
    except PART_ERRORS as exc:  # no device: nothing else can be measured
        say(f"gpu-check failed: {exc}")
        return 1
    results["elapsed_min"] = (time.monotonic() - started) / 60
    for line in headlines(results):
        say(line)
    out = args.report or (None if args.quick or not gpus else DEFAULT_REPORT)
    if out is not None:
        out.write_text(report(results))
        say(f"wrote {out}")
    if args.json_out:
        args.json_out.write_text(json.dumps(results, indent=2) + "\n")
    failed = results.get("failed", {})
    say(
        f"gpu-check: done in {results['elapsed_min']:.1f} minutes"
        + (f"; failed: {', '.join(failed)}" if failed else "")
    )
    return 1 if failed else 0


def _host() -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": f"{cpu}, {os.cpu_count()} logical CPUs",
        "python": platform.python_version(),
        "os": platform.platform(),
    }


if __name__ == "__main__":
    sys.exit(main())
