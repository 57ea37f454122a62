"""The client installs on its own: a fresh virtual environment gets ./contract and ./clients/python from
their directories (their dependencies from the package index), has no TensorFlow and no service, and
its `garment-sorter-client` command classifies a photo on the real server."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from client_helpers import REPO, SCANNER_KEY, Photo

from bench.server import Server

pytestmark = pytest.mark.slow
INSTALL_TIMEOUT_S = 240
SOURCES = {"contract": REPO / "contract", "client": REPO / "clients" / "python"}


def isolated_env() -> dict[str, str]:
    """This environment without what would let the venv see the checkout or the dev venv."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}


def test_a_fresh_venv_gets_the_client_without_tensorflow(sorter: Server, photos: list[Photo], tmp_path: Path):
    # Copies, so that the builds leave no build/ or *.egg-info in the checkout; commands run in an empty
    # directory, so that `python -c` (which imports from its working directory) cannot see the copies.
    sources, workdir, venv = tmp_path / "src", tmp_path / "work", tmp_path / "venv"
    for name, source in SOURCES.items():
        shutil.copytree(source, sources / name, ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info"))
    workdir.mkdir()
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python, env = venv / "bin" / "python", isolated_env()

    def run(*command: str | Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(part) for part in command], cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout
        )

    install = run(
        python, "-m", "pip", "install", "--quiet", sources / "contract", sources / "client", timeout=INSTALL_TIMEOUT_S
    )
    assert install.returncode == 0, install.stdout + install.stderr
    installed_s = time.monotonic() - started
    assert run(python, "-m", "pip", "check").returncode == 0

    # No TensorFlow, no service: only the contract and the client.
    probe = (
        "import importlib.util, json, contract, contract.api, garment_sorter_client; "
        "print(json.dumps({m: importlib.util.find_spec(m) is not None for m in ('tensorflow', 'keras', 'app')} "
        "| {'contract': contract.__file__}))"
    )
    found = run(python, "-c", probe)
    assert found.returncode == 0, found.stderr
    seen = json.loads(found.stdout)
    assert (seen["tensorflow"], seen["keras"], seen["app"]) == (False, False, False)
    assert Path(seen["contract"]).is_relative_to(venv)  # the installed copy, not the checkout
    policy = run(python, "-c", "import contract.seasons as s; print(s.default_season_of_class()['Ankle boot'])")
    assert policy.stdout.strip() == "winter", policy.stderr  # policy.yaml travelled with the package

    env["GARMENT_SORTER_API_KEY"] = SCANNER_KEY
    classified = run(venv / "bin" / "garment-sorter-client", "classify", "--url", sorter.url, "--json", photos[0].path)
    assert classified.returncode == 0, classified.stderr
    answer = json.loads(classified.stdout)
    assert answer["result"]["label"] == "Ankle boot" and answer["error"] is None
    print(f"\nfresh venv with contract + client installed in {installed_s:.1f} s")
