import numpy as np

from training import data, pipeline


def test_augmenter_keeps_shape_and_changes_pixels(fashion):
    images = data.to_model_inputs(fashion.x_train[:64])
    augmented = np.asarray(pipeline.make_augmenter(seed=1)(images, training=True))
    assert augmented.shape == images.shape
    assert not np.array_equal(augmented, images)
    assert augmented.min() >= 0.0 and augmented.max() <= 1.0


def test_zoom_rescales_first_and_only_when_asked():
    assert pipeline.make_augmenter(seed=1).layers[0].__class__.__name__ == "ZeroPadding2D"
    zooming = pipeline.make_augmenter(seed=1, zoom=0.1).layers[0]
    assert zooming.__class__.__name__ == "RandomZoom"
    assert (zooming.height_factor, zooming.width_factor) == ((-0.1, 0.1), None)  # None: aspect kept
    # A white square covering the middle: zooming out by up to 10 % shrinks it, zooming in grows
    # it, so across a batch its bright area spreads on both sides of the original 196 pixels.
    images = np.zeros((64, 28, 28, 1), np.float32)
    images[:, 7:21, 7:21] = 1.0
    rescale_only = pipeline.make_augmenter(seed=1, zoom=0.1).layers[0]
    area = (np.asarray(rescale_only(images, training=True)) > 0.5).sum(axis=(1, 2, 3))
    assert area.min() < 196 < area.max()
    assert area.min() >= int(196 * 0.9**2 * 0.9) and area.max() <= int(196 * 1.1**2 * 1.1) + 1
