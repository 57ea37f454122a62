"""The carry folder: what the GPU check's fallback needs on a machine without a package index.

`python -m bench gpu-check --prepare-carry .gpu` (here, with TensorFlow) writes:

- ``whl/``: Keras and the two packages it needs that such a machine lacks (namex, optree), the
  versions installed here, as wheels for CPython 3.12 on x86-64 Linux (pip download);
- ``fashion-mnist/``: the training split, its images xz-compressed (22.6 MB instead of the
  shipped 26.4 MB gzip: the whole copy that travels must stay small) and its labels as shipped;
- ``weights-index.json``: where each served network's tensors lie in the SavedModel's variables
  file (bench.gpu_weights), checked against the SavedModel on 2,000 test images.

Keep the folder out of git (``/.gpu/`` in .git/info/exclude).
"""

from __future__ import annotations

import importlib.metadata
import lzma
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from bench.server import REPO

MODEL_DIR = REPO / "models" / "fashion-cnn"
CARRY_WHEELS = "whl"
CARRY_DATASET = "fashion-mnist"
CARRY_INDEX = "weights-index.json"

WHEELS = ("keras", "namex", "optree")
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
PYTHON_VERSION = "3.12"
CHECK_IMAGES = 2000
MiB = 2**20
BUDGET_MIB = 60  # the repository's files and this folder together, as they travel


def _say(text: str) -> None:
    print(text, flush=True)


def write_wheels(folder: Path) -> None:
    for old in folder.glob("*.whl"):
        old.unlink()
    pins = [f"{name}=={importlib.metadata.version(name)}" for name in WHEELS]
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:"]
    command += ["--python-version", PYTHON_VERSION, "--implementation", "cp"]
    for platform in PLATFORMS:
        command += ["--platform", platform]
    _say(f"wheels: {' '.join(pins)}")
    subprocess.run([*command, "-d", str(folder), *pins], check=True)


def write_dataset(folder: Path, source: Path) -> None:
    from training import data

    for key in ("x_train", "y_train"):
        stem, magic, shape = data.FILES[key]
        if key == "y_train":
            shutil.copyfile(source / f"{stem}.gz", folder / f"{stem}.gz")
            continue
        target = folder / f"{stem}.xz"
        if target.exists():
            _say(f"dataset: kept {target}")
            continue
        raw = data.read_idx(source / f"{stem}.gz", magic, shape)
        header = magic.to_bytes(4, "big") + b"".join(size.to_bytes(4, "big") for size in shape)
        _say(f"dataset: compressing {stem} with xz -9e (about a minute)")
        target.write_bytes(lzma.compress(header + raw.tobytes(), preset=9 | lzma.PRESET_EXTREME))


def write_index(folder: Path, images: np.ndarray) -> None:
    from bench.gpu_weights import write_index as index_of
    from contract.versions import latest

    index = index_of(latest(MODEL_DIR), folder / CARRY_INDEX, images)
    check = index["check"]
    _say(
        f"weight index: version {index['version']}, {len(index['networks'])} networks; rebuilt ensemble within"
        f" {check['max_abs_logit_difference']:.1g} of the SavedModel's logits on {check['images']} test images"
    )


def tracked_bytes() -> int:
    names = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout.split(b"\0")
    return sum((REPO / name.decode()).stat().st_size for name in names if name and (REPO / name.decode()).is_file())


def prepare(carry: Path) -> None:
    """Write (or refresh) the carry folder and say how large it and the repository are together."""
    carry = Path(carry)
    for sub in (CARRY_WHEELS, CARRY_DATASET):
        (carry / sub).mkdir(parents=True, exist_ok=True)
    from training import data

    fashion = data.load_fashion_mnist(allow_download=False)
    write_wheels(carry / CARRY_WHEELS)
    write_dataset(carry / CARRY_DATASET, Path(fashion.source))
    write_index(carry, fashion.x_test[:CHECK_IMAGES])
    carried = sum(path.stat().st_size for path in carry.rglob("*") if path.is_file())
    tracked = tracked_bytes()
    _say(
        f"{carry}: {carried / MiB:.1f} MiB; with the repository's tracked files ({tracked / MiB:.1f} MiB):"
        f" {(carried + tracked) / MiB:.1f} MiB (budget {BUDGET_MIB} MiB)"
    )
    ignored = subprocess.run(["git", "check-ignore", "-q", carry.name], cwd=carry.resolve().parent).returncode == 0
    if not ignored:
        _say(f"warning: git does not ignore {carry}: add /{carry.name}/ to .git/info/exclude")
