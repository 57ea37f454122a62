"""Photo bytes -> one 28x28 uint8 image, made the way Fashion-MNIST itself was made.

Xiao, Rasul & Vollgraf (2017), section 2: from a product photo on a light-gray (#fdfdfd)
background they (1) trimmed edges close to the corner colour (within 5 % of the maximum
distance in RGB space), (2) resized the longest edge to 28, (3) sharpened with a Gaussian of
radius and sigma 1.0, (4) extended the short edge to 28, centred, (5) negated and (6) kept
8-bit grayscale. The same steps here let a scanner photo look like what the model was trained on.

Before that: the format is detected from the content (never the name or Content-Type), the
size is checked from the header before any pixel is decoded, the photo is decoded at the small
working resolution the next steps need (JPEG: scaled in the DCT domain while decoding), EXIF
orientation is applied and transparency is composited onto white. Then ``segment`` finds the
garment on whatever belt and light the scanner has, and puts it upright on the dataset's light
background, with the reasons the photo needs a person's look. An image that already is
Fashion-MNIST-like (28x28 grayscale, dark border) is returned unchanged, bit for bit.
"""

from __future__ import annotations

import contextlib
import io
import math
import time
import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image, ImageFilter, ImageOps

from app import errors
from app.inference.segmentation.pieces import Box, box_of
from app.inference.segmentation.segment import segment
from app.reasons import Reason

SIZE = 28
ALLOWED_FORMATS = frozenset({"JPEG", "MPO", "PNG", "WEBP", "GIF", "BMP", "TIFF"})
# Phones write MPO (multi-picture JPEG); its first frame is an ordinary JPEG.

TRIM_FRACTION = 0.05  # of the largest possible RGB distance, sqrt(3) * 255
_MAX_RGB_DISTANCE = math.sqrt(3) * 255.0
SHARPEN = ImageFilter.UnsharpMask(radius=1.0, percent=100, threshold=0)  # out = 2*img - gauss(img, 1.0)
DARK_BORDER_MEAN = 128  # every one of the 70,000 dataset images has a border-ring mean below 108
# Photos are decoded (JPEG: DCT-scaled) and box-reduced to a longest edge in [WORK_MIN_EDGE,
# 2 * WORK_MIN_EDGE): the result is 28 px, a garment filling a third of the frame still spans over
# twice that, and the CPU per photo stays bounded whatever the camera's resolution.
WORK_MIN_EDGE = 128
MIN_SEGMENT_EDGE = 24  # a smaller photo has no border to learn a belt from: the recipe alone
Resize = Literal["antialias", "subsample"]
_RESAMPLE = {"antialias": Image.Resampling.LANCZOS, "subsample": Image.Resampling.NEAREST}

# Our own megapixel limit runs before decoding; Pillow's (larger) bomb check stays as a backstop.
warnings.simplefilter("ignore", Image.DecompressionBombWarning)


@dataclass(frozen=True)
class Opened:
    """A decoded-on-demand image whose header passed the format and size checks."""

    image: Image.Image
    format: str
    width: int
    height: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


def open_image(data: bytes, max_pixels: int) -> Opened:
    """Identify the format and read the size from the header only; raise ApiError on refusal."""
    if not data:
        raise errors.empty_image()
    try:
        image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError:
        raise errors.ApiError(413, "image_too_large", "The image exceeds the pixel limit.") from None
    except Exception:  # any parser failure on hostile input is a refusal, never a 500
        # A known signature that fails to parse is a damaged image, anything else is not one.
        raise (errors.corrupt_image() if _has_image_signature(data) else errors.not_an_image()) from None
    fmt = image.format or "unknown"
    if fmt not in ALLOWED_FORMATS:
        raise errors.unsupported_image_format(fmt)
    width, height = image.size
    if width < 1 or height < 1:
        raise errors.corrupt_image()
    if width * height > max_pixels:
        raise errors.image_too_large(width, height, max_pixels)
    return Opened(image, fmt, width, height)


_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"II*\x00", b"MM\x00*")


def _has_image_signature(data: bytes) -> bool:
    return data.startswith(_SIGNATURES) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")


@dataclass(frozen=True, slots=True)
class Decoded:
    """The photo, upright, at working resolution, and the size of the upright photo as sent."""

    image: Image.Image
    photo_size: tuple[int, int]  # width, height after EXIF orientation, at full resolution


@dataclass(frozen=True, slots=True)
class ModelInput:
    """What the model sees, and what the photo itself says about the answer's safety."""

    pixels: np.ndarray  # uint8 (28, 28), garment bright on black
    box: Box | None  # the garment in the upright photo's pixels; None: no garment found
    reasons: tuple[Reason, ...]  # from the photo (the model adds its own later)


def decode(opened: Opened) -> Decoded:
    """Decode the first frame, upright, as 'L' or 'RGB' (transparency composited onto white)."""
    image = opened.image
    try:
        longest = max(opened.width, opened.height)
        if opened.format in ("JPEG", "MPO") and longest >= 2 * WORK_MIN_EDGE:
            # DCT-domain downscale while decoding (1/2 .. 1/8): never at camera resolution.
            scale = WORK_MIN_EDGE / longest
            image.draft(None, (math.ceil(opened.width * scale), math.ceil(opened.height * scale)))
        image.load()
    except Exception:
        raise errors.corrupt_image() from None
    photo_size = (opened.width, opened.height)
    # A damaged EXIF block must not lose the photo: keep it as stored.
    with contextlib.suppress(Exception):
        upright = ImageOps.exif_transpose(image)
        if upright.size != image.size and upright.size == image.size[::-1]:
            photo_size = photo_size[::-1]
        image = upright
    try:
        return Decoded(_normalise_mode(image), photo_size)
    except Exception:
        raise errors.corrupt_image() from None


def _normalise_mode(image: Image.Image) -> Image.Image:
    mode = image.mode
    if mode in ("L", "RGB"):
        return image
    if mode.startswith("I;16") or mode in ("I", "F"):
        values = np.asarray(image, dtype=np.float64)
        if not np.isfinite(values).all():  # a float TIFF holding NaN or infinity is no photo
            raise errors.corrupt_image()
        top = 65535.0 if mode.startswith("I;16") or values.max(initial=0) > 255 else 255.0
        if mode == "F" and values.max(initial=0) <= 1.0:
            top = 1.0
        scaled = np.clip(np.rint(values * (255.0 / top)), 0, 255).astype(np.uint8)
        return Image.fromarray(scaled, "L")
    if mode == "1":
        return image.convert("L")
    has_alpha = mode in ("RGBA", "LA", "PA", "La", "RGBa") or (mode == "P" and "transparency" in image.info)
    if has_alpha:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        composited = Image.alpha_composite(white, rgba)
        if mode in ("LA", "La"):
            return composited.convert("L")
        return composited.convert("RGB")
    if mode == "P":
        palette_mode = image.palette.mode if image.palette is not None else "RGB"
        return image.convert("L" if palette_mode == "L" else "RGB")
    return image.convert("RGB")  # CMYK, YCbCr, LAB, HSV, ...


def has_dark_border(pixels: np.ndarray) -> bool:
    """A 28x28 gray array whose 1-px border (108 pixels) averages below DARK_BORDER_MEAN."""
    ring_sum = int(pixels.sum(dtype=np.int64)) - int(pixels[1:-1, 1:-1].sum(dtype=np.int64))
    return ring_sum < DARK_BORDER_MEAN * (4 * SIZE - 4)


def is_fashion_mnist_like(image: Image.Image) -> bool:
    """28x28 grayscale with a dark border: already in the dataset's form."""
    return image.size == (SIZE, SIZE) and image.mode == "L" and has_dark_border(np.asarray(image))


def _trim_box(image: Image.Image) -> Box | None:
    """Bounding box of the pixels farther than 5 % of the max RGB distance from the corner colour."""
    pixels = np.asarray(image, dtype=np.int32)
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    corners = np.stack([pixels[0, 0], pixels[0, -1], pixels[-1, 0], pixels[-1, -1]])
    background = np.median(corners, axis=0).astype(np.int32)
    # Channel by channel: a third of the time einsum over the colour axis took (0.4 ms on a work image).
    distance_sq = np.zeros(pixels.shape[:2], np.int32)
    for channel in range(pixels.shape[2]):
        diff = pixels[..., channel] - background[channel]
        distance_sq += diff * diff
    if pixels.shape[2] == 1:
        distance_sq *= 3  # a gray level stands for (v, v, v) in RGB space
    threshold_sq = (TRIM_FRACTION * _MAX_RGB_DISTANCE) ** 2
    return box_of(distance_sq > threshold_sq)


def work_image(image: Image.Image) -> Image.Image:
    """Box-reduce a decoded photo to a longest edge below 2 * WORK_MIN_EDGE."""
    factor = max(image.size) // WORK_MIN_EDGE
    return image.reduce(factor) if factor >= 2 else image


def photo_to_28(image: Image.Image, resize: Resize = "antialias") -> np.ndarray:
    """The dataset's own pipeline on an upright 'L' or 'RGB' photo (light background)."""
    box = _trim_box(image)
    if box is not None:
        image = image.crop(box)
    # Luma now rather than last: the remaining steps are linear per channel, so this is the same
    # image up to rounding, at a third of the work.
    gray = image.convert("L")
    width, height = gray.size
    scale = SIZE / max(width, height)
    new_size = (max(1, min(SIZE, round(width * scale))), max(1, min(SIZE, round(height * scale))))
    if new_size != gray.size:
        gray = gray.resize(new_size, _RESAMPLE[resize])
    gray = gray.filter(SHARPEN)
    canvas = Image.new("L", (SIZE, SIZE), 255)
    # An odd margin puts its extra pixel left/top, as in the dataset (on the test set the left
    # margin is never narrower than the right one, and the top almost never than the bottom).
    canvas.paste(gray, ((SIZE - new_size[0] + 1) // 2, (SIZE - new_size[1] + 1) // 2))
    return 255 - np.asarray(canvas, dtype=np.uint8)


def to_model_input(decoded: Decoded, resize: Resize = "antialias") -> ModelInput:
    """An upright decoded photo -> the model's input, the garment's box and the photo's reasons."""
    image = decoded.image
    if image.size == (SIZE, SIZE):
        pixels = np.asarray(image)  # one copy out of Pillow, reused for the check and the answer
        if image.mode == "RGB" and (pixels == pixels[..., :1]).all():  # a gray image stored as RGB
            pixels = np.ascontiguousarray(pixels[..., 0])
        if pixels.ndim == 2 and has_dark_border(pixels):
            return ModelInput(pixels, box_of(pixels > 0), ())
    work = work_image(image)
    if min(work.size) < MIN_SEGMENT_EDGE:
        return ModelInput(photo_to_28(work, resize), (0, 0, *decoded.photo_size), ())
    found = segment(np.asarray(work.convert("RGB")))
    if found.box is None:  # nothing on the belt: the model sees the dataset's empty background
        return ModelInput(np.zeros((SIZE, SIZE), np.uint8), None, found.reasons)
    pixels = photo_to_28(Image.fromarray(found.composite, "RGB"), resize)
    return ModelInput(pixels, _to_photo(found.box, work.size, decoded.photo_size), found.reasons)


def _to_photo(box: Box | None, work_size: tuple[int, int], photo_size: tuple[int, int]) -> Box | None:
    """A box in the work image's pixels -> the same box in the upright photo's pixels."""
    if box is None:
        return None
    sx, sy = photo_size[0] / work_size[0], photo_size[1] / work_size[1]
    left, top, right, bottom = box
    return (
        math.floor(left * sx),
        math.floor(top * sy),
        min(photo_size[0], math.ceil(right * sx)),
        min(photo_size[1], math.ceil(bottom * sy)),
    )


def preprocess(data: bytes, max_pixels: int, resize: Resize = "antialias") -> ModelInput:
    """Bytes of any supported image -> the model's input; raises ApiError for refused input."""
    opened = open_image(data, max_pixels)
    return finish(opened, resize)


def finish(opened: Opened, resize: Resize = "antialias") -> ModelInput:
    """Decode an opened image and bring it to the model's input (the CPU-heavy half)."""
    return finish_timed(opened, resize)[0]


def finish_timed(opened: Opened, resize: Resize = "antialias") -> tuple[ModelInput, float]:
    """``finish``, and the ``time.perf_counter()`` at which decoding ended and the garment's
    segmentation began (where a trace's decode span ends and its segmentation span starts)."""
    decoded = decode(opened)
    decoded_at = time.perf_counter()
    try:
        return to_model_input(decoded, resize), decoded_at
    except errors.ApiError:
        raise
    except Exception:
        raise errors.corrupt_image() from None
