"""Fashion-MNIST from the four original IDX files: find, validate, split, scale.

The files may be gzipped (as shipped), xz-compressed (smaller, for carrying the dataset to a
machine without it) or raw.

NumPy only: exploring the data and driving the service with its images need no TensorFlow
(training.pipeline feeds it to Keras).
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import lzma
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from contract.classes import IMAGE_SHAPE, NUM_CLASSES

log = logging.getLogger(__name__)

APT_PACKAGE = "dataset-fashion-mnist"
DIR_VARIABLE = "FASHION_MNIST_DIR"
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
KERAS_CACHE_DIR = Path("~/.keras/datasets/fashion-mnist")

# array -> (file name stem, IDX magic number, expected shape)
IDX_MAGIC_IMAGES = 2051  # 0x00000803: unsigned byte, 3 dimensions
IDX_MAGIC_LABELS = 2049  # 0x00000801: unsigned byte, 1 dimension
FILES = {
    "x_train": ("train-images-idx3-ubyte", IDX_MAGIC_IMAGES, (60000, *IMAGE_SHAPE)),
    "y_train": ("train-labels-idx1-ubyte", IDX_MAGIC_LABELS, (60000,)),
    "x_test": ("t10k-images-idx3-ubyte", IDX_MAGIC_IMAGES, (10000, *IMAGE_SHAPE)),
    "y_test": ("t10k-labels-idx1-ubyte", IDX_MAGIC_LABELS, (10000,)),
}

VALIDATION_SIZE = 10_000
DEFAULT_SPLIT_SEED = 1234


class DatasetError(RuntimeError):
    """The dataset is missing or a file in it is not a valid Fashion-MNIST IDX file."""


@dataclass(frozen=True)
class FashionMNIST:
    """The raw dataset as shipped: uint8 images (N, 28, 28) and uint8 labels (N,)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str
    sha256: dict[str, str]


@dataclass(frozen=True)
class Split:
    """The 60,000 training images split into train and validation; test stays untouched."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    train_index: np.ndarray
    val_index: np.ndarray


def candidate_dirs() -> list[Path]:
    """Where the IDX files are looked for, in order."""
    dirs = []
    if os.environ.get(DIR_VARIABLE):
        dirs.append(Path(os.environ[DIR_VARIABLE]).expanduser())
    dirs.append(DEBIAN_DIR)
    dirs.append(KERAS_CACHE_DIR.expanduser())
    return dirs


COMPRESSED_SUFFIXES = (".gz", ".xz")
GZIP_MAGIC = b"\x1f\x8b"
XZ_MAGIC = b"\xfd7zXZ\x00"


def _find_file(directory: Path, stem: str) -> Path | None:
    for name in (*(stem + suffix for suffix in COMPRESSED_SUFFIXES), stem):
        path = directory / name
        if path.is_file():
            return path
    return None


def _has_all_files(directory: Path) -> bool:
    return all(_find_file(directory, stem) is not None for stem, _, _ in FILES.values())


def read_idx(path: Path, expected_magic: int, expected_shape: tuple[int, ...]) -> np.ndarray:
    """Read one IDX file (gzipped, xz-compressed or raw), checking magic number, dimensions and length."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(len(XZ_MAGIC))
        if head.startswith(GZIP_MAGIC):
            raw = gzip.decompress(path.read_bytes())
        elif head == XZ_MAGIC:
            raw = lzma.decompress(path.read_bytes())
        else:
            raw = path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile, lzma.LZMAError) as exc:
        raise DatasetError(f"{path}: cannot be read ({exc})") from exc
    ndim = len(expected_shape)
    header_len = 4 + 4 * ndim
    if len(raw) < header_len:
        raise DatasetError(f"{path}: truncated header ({len(raw)} bytes, expected at least {header_len})")
    magic = int.from_bytes(raw[:4], "big")
    if magic != expected_magic:
        raise DatasetError(f"{path}: bad IDX magic number {magic:#010x}, expected {expected_magic:#010x}")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if dims != expected_shape:
        raise DatasetError(f"{path}: header declares shape {dims}, expected {expected_shape}")
    expected_bytes = int(np.prod(expected_shape))
    body = raw[header_len:]
    if len(body) != expected_bytes:
        what = "truncated" if len(body) < expected_bytes else "has trailing bytes"
        raise DatasetError(f"{path}: {what}: {len(body)} data bytes, expected {expected_bytes}")
    return np.frombuffer(body, dtype=np.uint8).reshape(expected_shape).copy()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_arrays(directory: Path, keys: tuple[str, ...] = tuple(FILES)) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Some of the four arrays (``FILES``' keys, e.g. the training split alone) from one directory,
    each validated, with the sha256 of each file read."""
    arrays: dict[str, np.ndarray] = {}
    sha: dict[str, str] = {}
    for key in keys:
        stem, magic, shape = FILES[key]
        path = _find_file(directory, stem)
        if path is None:
            raise DatasetError(f"{directory}: missing {stem}(.gz)")
        arrays[key] = read_idx(path, magic, shape)
        sha[path.name] = _sha256(path)
        if key.startswith("y_"):
            bad = arrays[key][arrays[key] >= NUM_CLASSES]
            if bad.size:
                raise DatasetError(f"{directory / stem}: label {int(bad[0])} outside 0..{NUM_CLASSES - 1}")
    return arrays, sha


def load_from_dir(directory: Path) -> FashionMNIST:
    """Load and validate the four IDX files in one directory."""
    arrays, sha = load_arrays(directory)
    return FashionMNIST(source=str(directory), sha256=sha, **arrays)


def _load_from_keras() -> FashionMNIST:
    # Keras only for the download fallback: reading the local files needs no TensorFlow.
    import keras

    (x_train, y_train), (x_test, y_test) = keras.datasets.fashion_mnist.load_data()
    return FashionMNIST(
        x_train=np.asarray(x_train, np.uint8),
        y_train=np.asarray(y_train, np.uint8),
        x_test=np.asarray(x_test, np.uint8),
        y_test=np.asarray(y_test, np.uint8),
        source="keras.datasets.fashion_mnist (downloaded)",
        sha256={},
    )


def load_fashion_mnist(allow_download: bool = True) -> FashionMNIST:
    """Find the dataset in the known places; download through Keras only if none has it."""
    explicit = os.environ.get(DIR_VARIABLE)
    if explicit and not _has_all_files(Path(explicit).expanduser()):
        # A directory the user named on purpose is never silently replaced by another copy.
        raise DatasetError(f"${DIR_VARIABLE}={explicit} does not hold the four Fashion-MNIST IDX files")
    for directory in candidate_dirs():
        if directory.is_dir() and _has_all_files(directory):
            log.info("Fashion-MNIST from %s", directory)
            return load_from_dir(directory)
    hint = (
        f"Fashion-MNIST not found: run `apt-get install -y {APT_PACKAGE}` "
        f"or set ${DIR_VARIABLE} to a directory with the four IDX files"
    )
    if not allow_download:
        raise DatasetError(hint)
    log.warning("Fashion-MNIST not found locally; downloading through keras.datasets (needs internet)")
    try:
        return _load_from_keras()
    except Exception as exc:  # any network or parse failure ends in the same advice
        raise DatasetError(f"{hint} (download failed: {type(exc).__name__})") from exc


def split_train_validation(
    data: FashionMNIST, val_size: int = VALIDATION_SIZE, seed: int = DEFAULT_SPLIT_SEED
) -> Split:
    """Stratified, seeded split of the 60,000 training images; the test set is passed through."""
    rng = np.random.default_rng(seed)
    per_class = val_size // NUM_CLASSES
    val_parts = []
    for label in range(NUM_CLASSES):
        members = np.flatnonzero(data.y_train == label)
        val_parts.append(rng.choice(members, size=per_class, replace=False))
    val_index = np.sort(np.concatenate(val_parts))
    train_mask = np.ones(len(data.y_train), dtype=bool)
    train_mask[val_index] = False
    train_index = np.flatnonzero(train_mask)
    return Split(
        x_train=data.x_train[train_index],
        y_train=data.y_train[train_index],
        x_val=data.x_train[val_index],
        y_val=data.y_train[val_index],
        x_test=data.x_test,
        y_test=data.y_test,
        train_index=train_index,
        val_index=val_index,
    )


def to_model_inputs(images: np.ndarray) -> np.ndarray:
    """uint8 (N, 28, 28) -> float32 (N, 28, 28, 1) in [0, 1]."""
    return (images.astype(np.float32) / 255.0)[..., None]


def one_hot(labels: np.ndarray) -> np.ndarray:
    """Labels (N,) -> float32 one-hot rows (N, 10)."""
    rows: np.ndarray = np.eye(NUM_CLASSES, dtype=np.float32)[labels]
    return rows
