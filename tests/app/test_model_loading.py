"""Model discovery and contract checks, and padded-batch inference that does not change answers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from app.model import (
    ModelError,
    bucket_for,
    choose_precision,
    cpu_flags,
    exported_signatures,
    find_version,
    load_tensorflow_model,
    padded_sizes,
    read_metadata,
)

BOTH = {"float32": "serving_default", "bfloat16": "serving_bfloat16"}


def test_padded_sizes_are_powers_of_two_up_to_the_maximum():
    assert padded_sizes(1) == (1,)
    assert padded_sizes(64) == (1, 2, 4, 8, 16, 32, 64)
    assert padded_sizes(100) == (1, 2, 4, 8, 16, 32, 64, 100)
    assert [bucket_for(n, padded_sizes(64)) for n in (1, 2, 3, 5, 33, 64)] == [1, 2, 4, 8, 64, 64]
    with pytest.raises(ValueError, match="batch of 65 exceeds the largest padded size 64"):
        bucket_for(65, padded_sizes(64))


def _fake_version(root: Path, name: str, with_model: bool = True) -> Path:
    path = root / name
    path.mkdir(parents=True)
    if with_model:
        (path / "saved_model.pb").write_bytes(b"")
    return path


def test_highest_integer_version_wins(tmp_path):
    for name in ("1", "2", "10"):
        _fake_version(tmp_path, name)
    _fake_version(tmp_path, "11", with_model=False)  # incomplete: skipped
    _fake_version(tmp_path, ".12.tmp-abc")  # an export in progress: not a version
    _fake_version(tmp_path, "latest")
    assert find_version(tmp_path) == tmp_path / "10"


def test_missing_models_are_reported_clearly(tmp_path):
    with pytest.raises(ModelError, match=f"model directory {tmp_path / 'absent'} does not exist"):
        find_version(tmp_path / "absent")
    with pytest.raises(ModelError, match=f"no version directory with a saved_model.pb under {tmp_path}"):
        find_version(tmp_path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m.pop("class_names"), "class_names must list the 10 class names"),
        (lambda m: m.update(class_names=["a"] * 10), "class_names has duplicates"),
        (lambda m: m.update(temperature=0), "temperature must be > 0"),
        (lambda m: m.update(temperature="warm"), "temperature must be a number"),
        (lambda m: m.update(review_threshold=2), r"review_threshold must be in \[0, 1\]"),
        (lambda m: m.update(flip_below="unsure"), "flip_below must be a number"),
        (lambda m: m.update(ensemble_size=1.5), "ensemble_size must be a count of networks, not 1.5"),
        (lambda m: m.update(unsure_members=-1), "unsure_members must be a count of networks, not -1"),
        (lambda m: m.update(calibrated_by=["runs/a"]), "calibrated_by must be an object whose runs lists"),
        (lambda m: m.update(calibrated_by={"runs": [1]}), "calibrated_by must be an object whose runs lists"),
    ],
)
def test_metadata_is_checked(tmp_path, model_dir, change, message):
    metadata = json.loads((find_version(model_dir) / "metadata.json").read_text())
    change(metadata)
    version = _fake_version(tmp_path, "3")
    (version / "metadata.json").write_text(json.dumps(metadata))
    with pytest.raises(ModelError, match=message):
        read_metadata(version)


def test_missing_or_broken_metadata(tmp_path):
    version = _fake_version(tmp_path, "1")
    with pytest.raises(ModelError, match="metadata.json is missing"):
        read_metadata(version)
    (version / "metadata.json").write_text("{not json")
    with pytest.raises(ModelError, match="cannot be read as JSON"):
        read_metadata(version)


def test_a_savedmodel_with_the_wrong_signature_is_refused(tmp_path, model_dir):
    import tensorflow as tf

    class Wrong(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 28, 28], tf.float32, name="images")])
        def serve(self, images):
            return {"probabilities": tf.nn.softmax(tf.reshape(images, [-1, 784])[:, :10])}

    module = Wrong()
    version = tmp_path / "1"
    tf.saved_model.save(module, str(version), signatures={"serving_default": module.serve})
    metadata = json.loads((find_version(model_dir) / "metadata.json").read_text())
    metadata.pop("signatures", None)  # only serving_default here
    (version / "metadata.json").write_text(json.dumps(metadata))
    with pytest.raises(
        ModelError, match=r"input 'images' must be uint8 \[None, 28, 28, 1\], is float32 \[None, 28, 28\]"
    ):
        load_tensorflow_model(tmp_path, 8)


def test_padding_does_not_change_any_answer(tf_model, test_set):
    images = test_set[0][:64]
    full = tf_model.predict(images)
    assert full.shape == (64, 10) and full.dtype == np.float32
    for n in (1, 3, 17, 33):  # padded to 1, 4, 32, 64
        np.testing.assert_allclose(tf_model.predict(images[:n]), full[:n], atol=1e-5)
    np.testing.assert_allclose(full.sum(axis=1), 1.0, atol=1e-5)


def test_probabilities_are_already_temperature_scaled(tf_model, test_set):
    import tensorflow as tf

    outputs = tf_model._signature(images=tf.constant(test_set[0][:16, :, :, None]))
    temperature = tf_model.temperature or 1.0
    logits = outputs["logits"].numpy().astype(np.float64) / temperature
    expected = np.exp(logits - logits.max(axis=1, keepdims=True))
    expected /= expected.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(tf_model.predict(test_set[0][:16]), expected, atol=1e-5)


@pytest.mark.parametrize(
    ("requested", "exported", "on_gpu", "flags", "chosen"),
    [
        ("auto", BOTH, False, {"avx2", "avx512_bf16"}, "bfloat16"),
        ("auto", BOTH, False, {"amx_bf16", "amx_tile"}, "bfloat16"),
        ("auto", BOTH, False, {"avx2", "avx512f"}, "float32"),  # emulated bfloat16 would be slower
        ("auto", BOTH, True, {"avx512_bf16"}, "float32"),
        ("auto", {"float32": "serving_default"}, False, {"avx512_bf16"}, "float32"),
        ("float32", BOTH, False, {"avx512_bf16"}, "float32"),
        ("bfloat16", BOTH, False, set(), "bfloat16"),
    ],
)
def test_precision_choice(requested, exported, on_gpu, flags, chosen):
    assert choose_precision(requested, exported, on_gpu, frozenset(flags)) == chosen


def test_asking_for_a_precision_the_model_lacks_is_an_error():
    with pytest.raises(ModelError, match="SORTER_PRECISION=bfloat16, but the model exports only float32"):
        choose_precision("bfloat16", {"float32": "serving_default"}, False, frozenset({"avx512_bf16"}))


def test_a_signature_listed_in_metadata_but_missing_is_refused(tmp_path, model_dir):
    version = tmp_path / "1"
    shutil.copytree(find_version(model_dir), version)
    metadata = json.loads((version / "metadata.json").read_text())
    metadata["signatures"] = {"float32": "serving_default", "bfloat16": "serving_nowhere"}
    (version / "metadata.json").write_text(json.dumps(metadata))
    with pytest.raises(ModelError, match=r"no 'serving_nowhere' signature"):
        load_tensorflow_model(tmp_path, 8, precision="bfloat16")


def test_exported_signatures_default_to_float32_for_older_versions():
    assert exported_signatures({}) == {"float32": "serving_default"}
    assert exported_signatures({"signatures": BOTH}) == BOTH
    assert exported_signatures({"signatures": {"int8": "serving_int8"}}) == {"float32": "serving_default"}


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512_bf16\n\nprocessor\t: 1\nflags\t\t: fpu\n")
    assert cpu_flags(cpuinfo) == {"fpu", "avx2", "avx512_bf16"}
    assert cpu_flags(tmp_path / "missing") == frozenset()
