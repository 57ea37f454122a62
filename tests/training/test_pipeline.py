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


def test_scanner_augmentation_adds_pose_and_look_only_when_asked():
    names = [layer.__class__.__name__ for layer in pipeline.make_augmenter(seed=1, scanner=True).layers]
    assert names == [
        "RandomRotation",
        "RandomTranslation",
        "ZeroPadding2D",
        "RandomCrop",
        "RandomFlip",
        "ScannerLook",
        "RandomErasing",
    ]
    plain = [layer.__class__.__name__ for layer in pipeline.make_augmenter(seed=1).layers]
    assert "ScannerLook" not in plain and "RandomRotation" not in plain


def test_the_scanner_look_makes_garments_lighter_and_darker_and_keeps_black_black(fashion):
    images = data.to_model_inputs(fashion.x_train[:256])
    look = pipeline.ScannerLook(blur_rate=0.0, seed=3)
    out = np.asarray(look(images, training=True))
    assert out.shape == images.shape and out.min() >= 0.0 and out.max() <= 1.0
    assert (out[images == 0.0] == 0.0).all()  # the background stays the dataset's black
    ratio = out.sum(axis=(1, 2, 3)) / images.sum(axis=(1, 2, 3))
    assert ratio.min() < 0.8 and ratio.max() > 1.2  # some garments darker, some lighter
    assert np.array_equal(np.asarray(look(images, training=False)), images)


def test_the_scanner_look_blurs_edges_of_the_share_asked():
    square = np.zeros((200, 28, 28, 1), np.float32)
    square[:, 8:20, 8:20] = 1.0
    look = pipeline.ScannerLook(gamma_range=(1.0, 1.0), gain_range=(1.0, 1.0), blur_rate=0.5, seed=5)
    out = np.asarray(look(square, training=True))
    blurred = out[:, 7, 10, 0] > 0  # the row just outside the square picks up light when blurred
    assert 0.35 < blurred.mean() < 0.65
    assert np.allclose(out[~blurred], square[~blurred])


def test_targets_replace_the_one_hot_labels_image_for_image(fashion):
    images, labels = fashion.x_train[:10], fashion.y_train[:10]
    targets = np.full((10, 10), 0.1, np.float32) * np.arange(1, 11, dtype=np.float32)[:, None]
    batch_images, batch_targets = next(iter(pipeline.make_dataset(images, labels, 10, targets=targets)))
    assert np.array_equal(np.asarray(batch_targets), targets)
    assert np.array_equal(np.asarray(batch_images), data.to_model_inputs(images))
    _, plain = next(iter(pipeline.make_dataset(images, labels, 10)))
    assert np.array_equal(np.asarray(plain), data.one_hot(labels))
