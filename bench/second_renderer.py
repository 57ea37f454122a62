"""A second scanner renderer, written apart from bench/scanner.py's, to check its figures
(`python -m bench scanner-second`).

The first renderer paints in display values: a belt of a grey level, a lamp as a multiplier, noise
of a fixed size. Models trained with its renders (candidate 13) could have learnt its habits rather
than a scanner's. This one forms the photo the way a camera does, in linear light: the belt's and
the garment's reflectance (belts of kinds the first renderer has not: a grooved rubber belt and a
woven one) times an illumination field (lens vignetting and a lamp to one side, in every photo),
white balance, shot and read noise on the linear signal, the sRGB curve, a slight keystone from a
camera not square to the belt, and 4:2:0 JPEG at another frame size (1600x1200, 2 MP). The garment
is placed anywhere that it fits, turned a few degrees, coloured by a random hue.

What it shares with the first renderer is only what the dataset fixes: a garment's shape and
lightness come from its image as bench.garment.unmix_edge reads them. Nothing here knows how the
service segments or trims; its parameters are physical guesses, set before any photo was scored.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from PIL import Image

from bench.garment import EMPTY, LIGHT, unmix_edge

FRAME = (1600, 1200)  # width, height: 2 MP, another size than the first renderer's
Reflectance = np.ndarray  # float32 (height, width, 3), linear 0..1
LUMINANCE = np.array([0.2126, 0.7152, 0.0722], np.float32)  # linear RGB -> luminance (Rec. 709)


def to_linear(srgb: np.ndarray) -> np.ndarray:
    """sRGB values 0..1 to linear light (IEC 61966-2-1)."""
    linear: np.ndarray = np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)
    return linear.astype(np.float32)


def to_srgb(linear: np.ndarray) -> np.ndarray:
    clipped = np.clip(linear, 0.0, 1.0)
    srgb: np.ndarray = np.where(clipped <= 0.0031308, 12.92 * clipped, 1.055 * clipped ** (1 / 2.4) - 0.055)
    return srgb.astype(np.float32)


def _grid() -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates scaled to -1..1 across the frame's width (y keeps the aspect ratio)."""
    width, height = FRAME
    x = (np.arange(width, dtype=np.float32) - width / 2) / (width / 2)
    y = (np.arange(height, dtype=np.float32) - height / 2) / (width / 2)
    return x[None, :], y[:, None]


def _smooth_noise(rng: np.random.Generator, cells: int, amplitude: float) -> np.ndarray:
    """Low-frequency variation (scuffs, wear): a coarse random grid upscaled bicubically."""
    width, height = FRAME
    coarse = rng.normal(0.0, 1.0, (max(2, cells * height // width), cells)).astype(np.float32)
    image = Image.fromarray(coarse, "F").resize(FRAME, Image.Resampling.BICUBIC)
    variation: np.ndarray = 1.0 + amplitude * np.asarray(image, np.float32)[..., None]
    return variation


def _coloured(base: float, rng: np.random.Generator, spread: float) -> np.ndarray:
    """A reflectance of luminance ``base`` with a random hue ``spread`` away from neutral."""
    gains = 1.0 + rng.uniform(-spread, spread, 3).astype(np.float32)
    gains /= float(gains @ LUMINANCE)  # keep the luminance
    return np.float32(base) * gains


def _plain_belt(
    rng: np.random.Generator, reflectance: tuple[float, float], hue_spread: float, wear: float
) -> Reflectance:
    """A belt of one colour, a reflectance drawn from the range, with some wear."""
    belt = _coloured(rng.uniform(*reflectance), rng, hue_spread)
    scene: Reflectance = np.broadcast_to(belt, (FRAME[1], FRAME[0], 3)) * _smooth_noise(rng, 12, wear)
    return scene


def light_belt(rng: np.random.Generator) -> Reflectance:
    return _plain_belt(rng, (0.60, 0.85), 0.03, 0.02)


def grey_belt(rng: np.random.Generator) -> Reflectance:
    return _plain_belt(rng, (0.12, 0.25), 0.05, 0.04)


def grooved_rubber_belt(rng: np.random.Generator) -> Reflectance:
    """Black rubber with grooves along the direction of travel and worn patches."""
    x, _ = _grid()
    period = rng.uniform(0.02, 0.04)  # of the half width: a groove every 16-32 px
    grooves = 1.0 + 0.35 * np.sin(2 * np.pi * x / period + rng.uniform(0, 2 * np.pi))
    base = _coloured(rng.uniform(0.008, 0.025), rng, 0.05)
    scene: Reflectance = base * grooves[..., None] * _smooth_noise(rng, 8, 0.25)
    return scene


def woven_belt(rng: np.random.Generator) -> Reflectance:
    """A coloured fabric belt: a fine weave of warp and weft."""
    x, y = _grid()
    period = rng.uniform(0.008, 0.012)  # 6-10 px
    weave = 1.0 + 0.12 * np.sin(2 * np.pi * x / period) * np.sin(2 * np.pi * y / period)
    base = _coloured(rng.uniform(0.04, 0.30), rng, 0.4)
    scene: Reflectance = base * weave[..., None] * _smooth_noise(rng, 10, 0.06)
    return scene


def lay_garment(belt: Reflectance, image: np.ndarray, rng: np.random.Generator) -> Reflectance:
    """The garment on the belt: its reflectance over the belt's, by its alpha."""
    coverage, alpha = unmix_edge(image)
    size_px = int(rng.uniform(0.45, 0.80) * FRAME[1])
    angle_deg = rng.uniform(-8.0, 8.0)
    layers = []
    # The garment's shade bilinearly (bicubic overshoot would darken its edge), its shape bicubically.
    for plane, resample in ((coverage, Image.Resampling.BILINEAR), (alpha, Image.Resampling.BICUBIC)):
        layer = Image.fromarray(np.rint(255 * plane).astype(np.uint8), "L").resize((size_px, size_px), resample)
        layers.append(np.asarray(layer.rotate(angle_deg, resample, expand=True), np.float32) / 255)
    shown, shape = layers
    garment = to_linear(LIGHT * (1.0 - shown) / 255.0)[..., None] * _coloured(1.0, rng, rng.uniform(0.0, 0.5))
    h, w = shape.shape
    top = int(rng.integers(0, FRAME[1] - h + 1))
    left = int(rng.integers(0, FRAME[0] - w + 1))
    scene = np.array(belt, np.float32)
    window = scene[top : top + h, left : left + w]
    window[:] = window * (1.0 - shape[..., None]) + np.clip(garment, 0.0, 1.0) * shape[..., None]
    return scene


def illumination(rng: np.random.Generator) -> np.ndarray:
    """Lens vignetting (cos^4 falloff) times a lamp to one side, around a random exposure."""
    x, y = _grid()
    field = 1.0 / (1.0 + rng.uniform(0.05, 0.25) * (x**2 + y**2)) ** 2
    direction = rng.uniform(0, 2 * np.pi)
    lamp = 1.0 + rng.uniform(0.0, 0.35) * (np.cos(direction) * x + np.sin(direction) * y)
    light: np.ndarray = (rng.uniform(0.85, 1.15) * field * lamp)[..., None].astype(np.float32)
    return light


def camera_jpeg(radiance: np.ndarray, rng: np.random.Generator) -> bytes:
    """White balance, shot and read noise, the sRGB curve, a keystone, 4:2:0 JPEG of quality 60-90."""
    balanced = radiance * _coloured(1.0, rng, 0.06)
    noise = np.sqrt(4e-4 * np.clip(balanced, 0.0, None) + 2e-3**2)
    sensed = balanced + noise * rng.standard_normal(balanced.shape, dtype=np.float32)
    photo = Image.fromarray(np.rint(255 * to_srgb(sensed)).astype(np.uint8), "RGB")
    width, height = FRAME
    inset = rng.uniform(0.0, 0.03, 4) * np.array([width, height, width, height])
    # The source quadrilateral (upper left, lower left, lower right, upper right): narrower at the top.
    left, top, right, bottom = inset
    quad = (left, top, left * 0.3, height - bottom, width - right * 0.3, height - bottom, width - right, top)
    photo = photo.transform(FRAME, Image.Transform.QUAD, quad, Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    photo.save(buffer, "JPEG", quality=int(rng.integers(60, 91)), subsampling="4:2:0")
    return buffer.getvalue()


Belt = Callable[[np.random.Generator], Reflectance]
BELTS: dict[str, Belt] = {
    "light belt": light_belt,
    "mid-grey belt": grey_belt,
    "grooved black rubber belt": grooved_rubber_belt,
    "woven coloured belt": woven_belt,
}
CONDITIONS = [*BELTS, EMPTY]


def render(condition: str, image: np.ndarray, seed: int) -> bytes:
    """One photo of ``image`` (28x28 uint8, Fashion-MNIST polarity) under ``condition``."""
    rng = np.random.default_rng(seed)
    if condition == EMPTY:
        scene = BELTS[list(BELTS)[int(rng.integers(len(BELTS)))]](rng)
    else:
        scene = lay_garment(BELTS[condition](rng), image, rng)
    return camera_jpeg(scene * illumination(rng), rng)
