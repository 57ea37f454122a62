"""Photo -> 28x28: dataset images pass through bit-exact, photos follow the dataset's own recipe,
and hostile input ends in a refusal with a stable code, never an exception of another kind."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from app.errors import ApiError
from app.inference import preprocess
from app.reasons import Reason
from bench.photos import png_bytes, render_catalog_photo, render_photos

MAX_PIXELS = 40_000_000


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def run(data: bytes, resize: str = "antialias") -> np.ndarray:
    out = preprocess.preprocess(data, MAX_PIXELS, resize).pixels
    assert out.shape == (28, 28) and out.dtype == np.uint8
    return out


def refused(data: bytes, max_pixels: int = MAX_PIXELS) -> ApiError:
    with pytest.raises(ApiError) as caught:
        preprocess.preprocess(data, max_pixels)
    return caught.value


@pytest.fixture(scope="module")
def photo(test_set) -> tuple[np.ndarray, Image.Image]:
    """An ankle boot (asymmetric left/right and top/bottom) as an RGB catalog photo."""
    images, labels = test_set
    original = images[0]
    assert labels[0] == 9
    jpeg = render_catalog_photo(original, np.random.default_rng(0))
    return original, Image.open(io.BytesIO(jpeg)).convert("RGB")


def test_all_test_set_images_pass_through_bit_exact(test_set):
    images, _ = test_set
    for image in images:
        assert np.array_equal(run(png_bytes(image)), image)


def test_dataset_image_stored_as_rgb_or_other_lossless_format_passes_through(test_set):
    image = test_set[0][1]
    gray = Image.fromarray(image, "L")
    for data in (
        encode(gray.convert("RGB"), "PNG"),
        encode(gray, "BMP"),
        encode(gray, "TIFF"),
        encode(gray, "WEBP", lossless=True),
    ):
        assert np.array_equal(run(data), image)


def test_light_background_28x28_is_negated_not_passed_through(test_set):
    image = test_set[0][0]
    inverted = 255 - image  # dark garment on white: a photo, not a dataset image
    out = run(png_bytes(inverted))
    assert out[0, 0] == 0 and abs(float(out.mean()) - float(image.mean())) < 25


def recipe(canvas: np.ndarray) -> np.ndarray:
    """The dataset's own recipe alone (what runs after segmentation)."""
    return preprocess.photo_to_28(Image.fromarray(canvas))


def test_trim_resize_and_centre_exactly():
    # A black 60x30 block on white at an off-centre position -> a 28x14 block, centred with the
    # dataset's convention (odd margins put the extra pixel on top), negated to white on black.
    canvas = np.full((100, 200, 3), 255, np.uint8)
    canvas[10:40, 20:80] = 0
    out = recipe(canvas)
    expected = np.zeros((28, 28), np.uint8)
    expected[7:21, 0:28] = 255
    assert np.array_equal(out, expected)


def test_odd_margin_goes_left_like_the_dataset():
    canvas = np.full((140, 140, 3), 255, np.uint8)
    canvas[0:140, 30:95] = 0  # 140 x 65 -> 28 x 13: 15 columns of margin, 8 left and 7 right
    out = recipe(canvas)
    columns = np.flatnonzero(out.max(axis=0) > 128)
    assert (columns[0], 27 - columns[-1]) == (8, 7)


def test_trim_uses_the_five_percent_rgb_distance():
    canvas = np.full((90, 90, 3), 253, np.uint8)  # the dataset's #fdfdfd
    canvas[:, 0:10] = 253 - 12  # 12 * sqrt(3) = 20.8 < 22.1: background, trimmed away
    canvas[40:50, 40:50] = 0
    out = recipe(canvas)
    assert np.array_equal(out, np.full((28, 28), 255, np.uint8))  # only the 10x10 block is left
    canvas[:, 0:10] = 253 - 14  # 14 * sqrt(3) = 24.2 > 22.1: content, kept
    out = recipe(canvas)
    assert out[14, 0] > 0 and out[14, 27] == 255


def test_rendered_photos_come_back_close_to_the_dataset_images(test_set):
    images = test_set[0][:100]
    photos = render_photos(images, seed=7)
    for resize in ("antialias", "subsample"):
        errors = [
            np.abs(run(p, resize).astype(int) - image.astype(int)).mean()
            for p, image in zip(photos, images, strict=False)
        ]
        # Mean absolute error on a 0..255 scale; without the negation it would be ~150.
        assert np.mean(errors) < 18, (resize, np.mean(errors))
        assert max(errors) < 45, (resize, max(errors))


def test_every_supported_format_is_decoded_by_content(photo):
    _, image = photo
    reference = run(encode(image, "PNG"))
    lossless = {"BMP": {}, "TIFF": {}, "WEBP": {"lossless": True}}
    for fmt, options in lossless.items():
        assert np.array_equal(run(encode(image, fmt, **options)), reference), fmt
    for fmt in ("JPEG", "GIF", "WEBP"):
        out = run(encode(image, fmt))
        assert np.abs(out.astype(int) - reference.astype(int)).mean() < 6, fmt


def test_exif_orientation_is_applied(photo):
    _, image = photo
    upright = run(encode(image, "JPEG", quality=95))
    # Stored rotated, with EXIF saying "rotate 90 CW to display" (orientation 6).
    stored = image.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    rotated = run(encode(stored, "JPEG", quality=95, exif=exif.tobytes()))
    assert np.abs(rotated.astype(int) - upright.astype(int)).mean() < 3
    ignored = run(encode(stored, "JPEG", quality=95))
    assert np.abs(ignored.astype(int) - upright.astype(int)).mean() > 20  # orientation matters


def test_transparency_is_composited_onto_white(photo):
    _, image = photo
    rgb = np.asarray(image)
    on_white = run(encode(image, "PNG"))
    # Same garment, background made transparent *black*: read naively it would be a black photo.
    alpha = np.where(np.abs(rgb.astype(int) - 253).max(axis=2) > 20, 255, 0).astype(np.uint8)
    rgba = np.dstack([np.where(alpha[..., None] > 0, rgb, 0), alpha])
    out = run(encode(Image.fromarray(rgba, "RGBA"), "PNG"))
    assert np.abs(out.astype(int) - on_white.astype(int)).mean() < 6
    palette = Image.fromarray(rgba, "RGBA").convert("P", palette=Image.Palette.ADAPTIVE)
    gray_alpha = Image.fromarray(rgba, "RGBA").convert("LA")
    for variant in (gray_alpha,):
        assert np.abs(run(encode(variant, "PNG")).astype(int) - on_white.astype(int)).mean() < 8
    assert run(encode(palette, "PNG")).shape == (28, 28)


def test_sixteen_bit_grayscale_is_scaled_not_clipped(test_set):
    image = test_set[0][3]
    wide = Image.fromarray(image.astype(np.uint16) * 257)  # I;16, same picture
    assert np.array_equal(run(encode(wide, "PNG")), image)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_float_images_with_non_finite_pixels_are_refused(test_set, bad):
    values = test_set[0][3].astype(np.float32)
    values[10, 10] = bad
    error = refused(encode(Image.fromarray(values, "F"), "TIFF"))
    assert (error.status, error.code) == (415, "corrupt_image")
    assert np.array_equal(run(encode(Image.fromarray(test_set[0][3].astype(np.float32), "F"), "TIFF")), test_set[0][3])


def test_camera_size_photo_is_reduced_first(photo):
    _, image = photo
    small = run(encode(image, "JPEG", quality=95))
    big = image.resize((image.width * 10, image.height * 10), Image.Resampling.BICUBIC)
    out = run(encode(big, "JPEG", quality=90))
    assert np.abs(out.astype(int) - small.astype(int)).mean() < 8


def _camera_photo(size: tuple[int, int], garment: tuple[int, int, int, int]) -> Image.Image:
    photo = np.full((size[1], size[0], 3), 60, np.uint8)  # a dark belt
    left, top, right, bottom = garment
    photo[top:bottom, left:right] = (200, 170, 60)
    return Image.fromarray(photo)


@pytest.mark.parametrize("size", [(1600, 1200), (4000, 3000)])
def test_a_camera_jpeg_is_decoded_at_working_size_never_at_camera_size(size, monkeypatch):
    garment = (size[0] // 4, size[1] // 5, size[0] // 2, 3 * size[1] // 4)
    data = encode(_camera_photo(size, garment), "JPEG", quality=90)
    decoded = preprocess.decode(preprocess.open_image(data, MAX_PIXELS))
    # DCT-scaled while decoding: at most 1/4 of the camera's edge, at least the working size.
    assert preprocess.WORK_MIN_EDGE <= max(decoded.image.size) <= max(size) // 4
    assert decoded.photo_size == size
    seen = preprocess.finish(preprocess.open_image(data, MAX_PIXELS))
    assert seen.reasons == ()
    # The box is in the photo's own pixels, to within one working pixel.
    tolerance = max(size) / max(preprocess.work_image(decoded.image).size)
    assert seen.box is not None
    assert np.abs(np.array(seen.box) - np.array(garment)).max() <= tolerance


def test_the_box_is_in_the_upright_photo_pixels_when_exif_rotates_it():
    garment = (400, 240, 800, 900)  # in the upright 1200x1600 photo
    upright = _camera_photo((1200, 1600), garment)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned, "rotate 90 CW to display"
    data = encode(upright.transpose(Image.Transpose.ROTATE_90), "JPEG", quality=90, exif=exif.tobytes())
    seen = preprocess.preprocess(data, MAX_PIXELS)
    assert seen.box is not None
    assert np.abs(np.array(seen.box) - np.array(garment)).max() <= 1600 / 200


def test_an_empty_belt_is_answered_with_no_garment_not_refused():
    data = encode(Image.new("RGB", (1600, 1200), (45, 45, 50)), "JPEG", quality=85)
    seen = preprocess.preprocess(data, MAX_PIXELS)
    assert seen.reasons == (Reason.NO_GARMENT,) and seen.box is None
    assert not seen.pixels.any()  # nothing for the model to see


def _png_with_declared_size(width: int, height: int) -> bytes:
    """A tiny valid PNG whose IHDR is rewritten to claim width x height."""
    data = bytearray(encode(Image.new("L", (4, 4), 255), "PNG"))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return bytes(data)


def test_decompression_bomb_is_refused_from_the_header():
    error = refused(_png_with_declared_size(8000, 6000))  # 48 MP, pixels never decoded
    assert (error.status, error.code) == (413, "image_too_large")
    assert "8000x6000 = 48000000 pixels; the limit is 40000000" in error.detail
    error = refused(_png_with_declared_size(200_000, 200_000))  # beyond Pillow's own bomb limit
    assert (error.status, error.code) == (413, "image_too_large")
    small_limit = refused(encode(Image.new("RGB", (100, 100)), "PNG"), max_pixels=9_999)
    assert small_limit.code == "image_too_large"


@pytest.mark.parametrize(
    ("data", "status", "code"),
    [
        (b"", 400, "empty_image"),
        (b"hello, this is text and not an image", 415, "not_an_image"),
        (b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n", 415, "not_an_image"),
        (b"\x89PNG\r\n\x1a\n", 415, "corrupt_image"),  # a signature and nothing after it
    ],
)
def test_bad_bytes_are_refused_with_stable_codes(data, status, code):
    error = refused(data)
    assert (error.status, error.code) == (status, code)


def test_truncated_images_are_refused(photo):
    _, image = photo
    for fmt in ("JPEG", "PNG", "WEBP"):
        data = encode(image, fmt)
        error = refused(data[: len(data) // 2])
        assert (error.status, error.code) == (415, "corrupt_image"), fmt


@pytest.mark.parametrize(("fmt", "name"), [("ICO", "ICO"), ("PPM", "PPM"), ("TGA", "TGA"), ("PCX", "PCX")])
def test_images_in_other_formats_are_refused_by_name(fmt, name):
    error = refused(encode(Image.new("RGB", (32, 32), (200, 10, 10)), fmt))
    assert (error.status, error.code) == (415, "unsupported_image_format")
    assert error.detail.startswith(f"{name} images are not supported")


def refusal(data: bytes) -> ApiError | None:
    """The API error the bytes are refused with, or None when they are an image; anything else raises."""
    try:
        run(data)
    except ApiError as error:
        return error
    return None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_never_escape_as_another_exception(data):
    error = refusal(data)
    assert error is None or error.status in (400, 413, 415)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fmt=st.sampled_from(["PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP"]), data=st.data())
def test_damaged_real_images_never_escape_as_another_exception(fmt, data):
    original = bytearray(encode(Image.new("RGB", (40, 30), (120, 200, 30)), fmt))
    for _ in range(data.draw(st.integers(1, 8))):
        position = data.draw(st.integers(0, len(original) - 1))
        original[position] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(1, len(original)))
    error = refusal(bytes(original[:cut]))
    assert error is None or error.status in (400, 413, 415)
