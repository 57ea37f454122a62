import numpy as np
import pytest

from training import data
from training.architectures import logits_model
from training.calibrate import softmax
from training.ensemble import Ensemble, predict_logits
from training.train import load_best


@pytest.fixture(scope="module")
def networks(smoke_run, other_run):
    return load_best(smoke_run.run_dir), load_best(other_run.run_dir)


def keras_logits(model, images):
    """One network on one view through Keras itself: the reference the ensemble arithmetic is held to."""
    return logits_model(model).predict(data.to_model_inputs(images), verbose=0)


@pytest.mark.parametrize(
    ("flip_below", "tta_flip", "message"),
    [
        (0.0, False, r"^flip_below must be in \(0, 1\] \(got 0.0\)$"),
        (1.5, False, r"^flip_below must be in \(0, 1\] \(got 1.5\)$"),
        (0.8, True, "^flip_below mirrors only unsure images; tta_flip already mirrors every image$"),
        (None, False, "^unsure-only members need flip_below: it decides which images they see$"),
    ],
)
def test_an_ensemble_is_checked_when_it_is_made(flip_below, tta_flip, message):
    with pytest.raises(ValueError, match=message):
        Ensemble(("runs/a",), ("runs/b",), tta_flip=tta_flip, flip_below=flip_below)
    with pytest.raises(ValueError, match=r"^an ensemble needs at least one member$"):
        Ensemble(())


def test_map_converts_every_member_and_keeps_the_views():
    runs = Ensemble(("a", "b"), ("c",), flip_below=0.6)
    assert runs.map(str.upper) == Ensemble(("A", "B"), ("C",), flip_below=0.6)
    assert runs.networks == ("a", "b", "c")


def test_members_are_averaged_on_one_view_or_both(networks, fashion):
    first, second = networks
    images = fashion.x_test[:300]  # more than one batch below
    mirrored = images[:, :, ::-1]
    mean = (keras_logits(first, images) + keras_logits(second, images)) / 2
    mean_mirrored = (keras_logits(first, mirrored) + keras_logits(second, mirrored)) / 2
    assert np.abs(predict_logits(Ensemble(networks), images, batch_size=128) - mean).max() < 1e-5
    both_views = predict_logits(Ensemble(networks, tta_flip=True), images, batch_size=128)
    assert np.abs(both_views - (mean + mean_mirrored) / 2).max() < 1e-5


def test_only_unsure_images_get_the_second_look(networks, fashion):
    first, second = networks
    images = fashion.x_test[:300]
    mirrored = images[:, :, ::-1]
    plain = keras_logits(first, images)
    unsure = softmax(plain).max(axis=1) < 0.9
    assert 0 < unsure.sum() < len(images)
    # the unsure images: both networks on both views; the others: the first network alone
    second_look = (
        plain + keras_logits(first, mirrored) + keras_logits(second, images) + keras_logits(second, mirrored)
    ) / 4
    expected = np.where(unsure[:, None], second_look, plain)
    served = predict_logits(Ensemble((first,), (second,), flip_below=0.9), images, batch_size=128)
    assert np.abs(served - expected).max() < 1e-5
    assert predict_logits(Ensemble((first,), (second,), flip_below=0.9), images[:0]).shape == (0, 10)
