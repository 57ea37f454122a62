"""Loading the SavedModel against the contract, choosing its precision, and padded-batch inference
that does not change answers."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from app.inference.model import ModelError, bucket_for, padded_sizes
from app.inference.precision import choose_precision
from app.inference.tensorflow_model import load_tensorflow_model
from contract.versions import latest

BOTH = {"float32": "serving_default", "bfloat16": "serving_bfloat16"}


def test_padded_sizes_are_powers_of_two_up_to_the_maximum():
    assert padded_sizes(1) == (1,)
    assert padded_sizes(64) == (1, 2, 4, 8, 16, 32, 64)
    assert padded_sizes(100) == (1, 2, 4, 8, 16, 32, 64, 100)
    assert [bucket_for(n, padded_sizes(64)) for n in (1, 2, 3, 5, 33, 64)] == [1, 2, 4, 8, 64, 64]
    with pytest.raises(ValueError, match="batch of 65 exceeds the largest padded size 64"):
        bucket_for(65, padded_sizes(64))


def test_a_savedmodel_with_the_wrong_signature_is_refused(tmp_path, model_dir):
    import tensorflow as tf

    class Wrong(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 28, 28], tf.float32, name="images")])
        def serve(self, images):
            return {"probabilities": tf.nn.softmax(tf.reshape(images, [-1, 784])[:, :10])}

    module = Wrong()
    version = tmp_path / "1"
    tf.saved_model.save(module, str(version), signatures={"serving_default": module.serve})
    metadata = json.loads((latest(model_dir) / "metadata.json").read_text())
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
    shutil.copytree(latest(model_dir), version)
    metadata = json.loads((version / "metadata.json").read_text())
    metadata["signatures"] = {"float32": "serving_default", "bfloat16": "serving_nowhere"}
    (version / "metadata.json").write_text(json.dumps(metadata))
    with pytest.raises(ModelError, match=r"no 'serving_nowhere' signature"):
        load_tensorflow_model(tmp_path, 8, precision="bfloat16")
