import gzip
import lzma
import shutil
from pathlib import Path

import numpy as np
import pytest

from training import data


def test_loads_the_real_dataset_with_its_shapes(fashion):
    assert fashion.x_train.shape == (60000, 28, 28)
    assert fashion.x_test.shape == (10000, 28, 28)
    assert fashion.y_train.shape == (60000,)
    assert fashion.y_test.shape == (10000,)
    assert fashion.x_train.dtype == np.uint8 and fashion.y_train.dtype == np.uint8
    assert set(fashion.sha256) == {
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    }


def test_every_class_has_6000_train_and_1000_test_images(fashion):
    assert np.bincount(fashion.y_train).tolist() == [6000] * 10
    assert np.bincount(fashion.y_test).tolist() == [1000] * 10


def test_first_training_image_is_the_known_ankle_boot(fashion):
    # Fashion-MNIST's x_train[0] is an ankle boot (label 9); checks label/image alignment.
    assert int(fashion.y_train[0]) == 9
    assert int(fashion.x_train[0].sum()) == 76247


def test_split_is_stratified_disjoint_and_deterministic(fashion, split):
    assert len(split.train_index) == 50000 and len(split.val_index) == 10000
    assert not set(split.train_index) & set(split.val_index)
    assert np.bincount(split.y_val).tolist() == [1000] * 10
    assert np.bincount(split.y_train).tolist() == [5000] * 10
    again = data.split_train_validation(fashion)
    assert np.array_equal(again.val_index, split.val_index)
    other = data.split_train_validation(fashion, seed=7)
    assert not np.array_equal(other.val_index, split.val_index)
    assert split.x_test is fashion.x_test


def test_model_inputs_are_scaled_and_one_hot(fashion):
    x = data.to_model_inputs(fashion.x_train[:3])
    assert x.shape == (3, 28, 28, 1) and x.dtype == np.float32
    assert x.min() == 0.0 and x.max() == 1.0
    assert data.one_hot(np.array([2, 9])).tolist()[0] == [0, 0, 1, 0, 0, 0, 0, 0, 0, 0]


def _copy_dataset(tmp_path: Path) -> Path:
    target = tmp_path / "fmnist"
    shutil.copytree(data.DEBIAN_DIR, target)
    return target


def _rewrite_idx(path: Path, edit) -> None:
    """Decompress an IDX file, let `edit` change its bytes, write it back gzipped."""
    raw = bytearray(gzip.decompress(path.read_bytes()))
    path.write_bytes(gzip.compress(bytes(edit(raw))))


def test_reads_uncompressed_idx_files(tmp_path):
    target = _copy_dataset(tmp_path)
    for gz in target.glob("*.gz"):
        (target / gz.stem).write_bytes(gzip.decompress(gz.read_bytes()))
        gz.unlink()
    loaded = data.load_from_dir(target)
    assert loaded.x_test.shape == (10000, 28, 28)


def test_reads_xz_compressed_idx_files_and_the_training_split_alone(tmp_path):
    # The GPU check's carry folder: the training split only, its images xz-compressed (smaller than gzip).
    target = tmp_path / "carried"
    target.mkdir()
    for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"):
        raw = gzip.decompress((data.DEBIAN_DIR / f"{stem}.gz").read_bytes())
        (target / f"{stem}.xz").write_bytes(lzma.compress(raw, preset=0))  # the fastest xz: same format
    arrays, sha = data.load_arrays(target, ("x_train", "y_train"))
    expected = data.load_from_dir(data.DEBIAN_DIR)
    assert np.array_equal(arrays["x_train"], expected.x_train) and np.array_equal(arrays["y_train"], expected.y_train)
    assert set(sha) == {"train-images-idx3-ubyte.xz", "train-labels-idx1-ubyte.xz"}
    with pytest.raises(data.DatasetError, match="missing t10k-images-idx3-ubyte"):
        data.load_arrays(target, ("x_test",))


def test_truncated_file_names_the_file_and_the_problem(tmp_path):
    target = _copy_dataset(tmp_path)
    path = target / "t10k-labels-idx1-ubyte.gz"
    _rewrite_idx(path, lambda raw: raw[:-10])
    with pytest.raises(data.DatasetError) as err:
        data.load_from_dir(target)
    assert str(err.value) == f"{path}: truncated: 9990 data bytes, expected 10000"


def test_corrupt_gzip_names_the_file(tmp_path):
    target = _copy_dataset(tmp_path)
    path = target / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(data.DatasetError, match=rf"^{path}: cannot be read"):
        data.load_from_dir(target)


def test_bad_magic_number_names_the_file(tmp_path):
    target = _copy_dataset(tmp_path)
    path = target / "t10k-images-idx3-ubyte.gz"
    _rewrite_idx(path, lambda raw: raw[:2] + b"\x08\x01" + raw[4:])
    with pytest.raises(data.DatasetError) as err:
        data.load_from_dir(target)
    assert str(err.value) == f"{path}: bad IDX magic number 0x00000801, expected 0x00000803"


def test_label_out_of_range_is_rejected(tmp_path):
    target = _copy_dataset(tmp_path)
    path = target / "t10k-labels-idx1-ubyte.gz"
    _rewrite_idx(path, lambda raw: raw[:8] + b"\x0c" + raw[9:])
    with pytest.raises(data.DatasetError, match=r"label 12 outside 0\.\.9"):
        data.load_from_dir(target)


def test_environment_variable_wins_over_the_debian_directory(tmp_path, monkeypatch):
    target = _copy_dataset(tmp_path)
    monkeypatch.setenv(data.DIR_VARIABLE, str(target))
    assert data.candidate_dirs()[0] == target
    assert data.load_fashion_mnist(allow_download=False).source == str(target)


def test_missing_dataset_says_which_package_and_variable(tmp_path, monkeypatch):
    monkeypatch.delenv(data.DIR_VARIABLE, raising=False)
    monkeypatch.setattr(data, "DEBIAN_DIR", tmp_path / "none")
    monkeypatch.setattr(data, "KERAS_CACHE_DIR", tmp_path / "none2")
    with pytest.raises(data.DatasetError) as err:
        data.load_fashion_mnist(allow_download=False)
    assert str(err.value) == (
        "Fashion-MNIST not found: run `apt-get install -y dataset-fashion-mnist` "
        "or set $FASHION_MNIST_DIR to a directory with the four IDX files"
    )
