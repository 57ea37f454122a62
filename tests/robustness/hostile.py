"""Hostile and odd image payloads, built from scratch with Pillow and a few hand-patched headers,
plus an independent verdict of what the service must answer for each one.

The verdict restates the API contract in Pillow's terms (format by content, size from the header
before decoding, first frame decodable) without calling the service's own code.
"""

from __future__ import annotations

import functools
import io
import struct
import warnings
import zlib

import numpy as np
from PIL import Image

warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the bombs are the point here

MAX_PIXELS = 40_000_000  # SORTER_MAX_IMAGE_PIXELS default
ALLOWED = frozenset({"JPEG", "MPO", "PNG", "WEBP", "GIF", "BMP", "TIFF"})
FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
# Multipart part headers longer than this are refused by python-multipart (its documented
# DEFAULT_MAX_HEADER_SIZE, 4096 + 128 bytes per header line).
SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"II*\x00", b"MM\x00*")
MULTIPART_HEADER_LINE_LIMIT = 4096 + 128


def verdict(data: bytes) -> tuple[int, str | None]:
    """(status, code) the service owes for these bytes sent as an image: 200 (code None) or a 4xx."""
    if not data:
        return 400, "empty_image"
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format not in ALLOWED:
                return 415, "unsupported_image_format"
            width, height = image.size
            if width * height > MAX_PIXELS:
                return 413, "image_too_large"
            try:
                image.load()
            except Exception:
                return 415, "corrupt_image"
            if image.mode == "F" and not np.isfinite(np.asarray(image)).all():
                return 415, "corrupt_image"  # NaN or infinity: a broken sensor's frame, not a photo
    except Image.DecompressionBombError:
        return 413, "image_too_large"
    except Exception:
        return 415, "corrupt_image" if data.startswith(SIGNATURES) or data[:4] + data[
            8:12
        ] == b"RIFFWEBP" else "not_an_image"
    return 200, None


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    if fmt == "JPEG" and image.mode not in ("L", "RGB", "CMYK"):
        image = image.convert("RGB")
    if fmt == "GIF" and image.mode not in ("L", "P", "1"):
        image = image.convert("P")
    if fmt == "BMP" and image.mode not in ("1", "L", "P", "RGB", "RGBA"):
        image = image.convert("RGB")
    if fmt == "WEBP" and image.mode not in ("RGB", "RGBA"):
        image = image.convert("RGBA" if "A" in image.mode else "RGB")
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def photo(width: int, height: int, seed: int, mode: str = "RGB") -> Image.Image:
    """A garment-like dark blob on a light background, any size and mode."""
    rng = np.random.default_rng(seed)
    canvas = np.full((height, width, 3), 250, np.uint8)
    top, left = height // 4, width // 4
    canvas[top : max(top + 1, 3 * height // 4), left : max(left + 1, 3 * width // 4)] = rng.integers(0, 120, 3)
    canvas ^= rng.integers(0, 8, canvas.shape, dtype=np.uint8)  # sensor noise
    return Image.fromarray(canvas, "RGB").convert(mode) if mode != "RGB" else Image.fromarray(canvas, "RGB")


# --- tiny files declaring huge images (decompression bombs) --------------------------------------
def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def bomb(fmt: str, width: int, height: int) -> bytes:
    """A file of a few hundred bytes whose header declares width x height pixels."""
    if fmt == "PNG":
        rows = zlib.compress(b"\x00" * (width + 1) * 4, 9)  # a few rows of a gray image, the rest missing
        ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
        return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", rows) + _png_chunk(b"IEND", b"")
    if fmt == "GIF":
        data = bytearray(encode(Image.new("L", (1, 1)), "GIF"))
        data[6:10] = struct.pack("<HH", width, height)  # logical screen
        descriptor = data.index(b"\x2c")  # image descriptor: left, top, width, height
        data[descriptor + 5 : descriptor + 9] = struct.pack("<HH", width, height)
        return bytes(data)
    if fmt == "BMP":
        data = bytearray(encode(Image.new("RGB", (1, 1)), "BMP"))
        data[18:26] = struct.pack("<ii", width, height)
        return bytes(data)
    if fmt == "JPEG":
        data = bytearray(encode(Image.new("L", (8, 8)), "JPEG"))
        sof = data.index(b"\xff\xc0")
        data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
        return bytes(data)
    if fmt == "TIFF":
        data = bytearray(encode(Image.new("L", (1, 1)), "TIFF"))
        assert data[:4] == b"II*\x00"
        ifd = struct.unpack("<I", data[4:8])[0]
        for i in range(struct.unpack("<H", data[ifd : ifd + 2])[0]):
            entry = ifd + 2 + 12 * i
            tag = struct.unpack("<H", data[entry : entry + 2])[0]
            if tag in (256, 257):  # ImageWidth, ImageLength as LONG
                data[entry + 2 : entry + 12] = struct.pack("<HII", 4, 1, width if tag == 256 else height)
        return bytes(data)
    if fmt == "WEBP":
        vp8x = struct.pack("<B3x", 0) + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
        body = b"WEBP" + b"VP8X" + struct.pack("<I", len(vp8x)) + vp8x
        return b"RIFF" + struct.pack("<I", len(body)) + body
    raise ValueError(fmt)


# --- real images in formats the service does not take ------------------------------------------
FOREIGN_FORMATS = ("ICO", "PPM", "TGA", "PCX", "SGI", "IM", "XBM", "MSP")


def foreign(fmt: str, width: int, height: int, seed: int) -> bytes:
    image = photo(width, height, seed)
    return encode(image.convert("1") if fmt in ("XBM", "MSP") else image, fmt)


# --- animations --------------------------------------------------------------------------------
@functools.lru_cache(maxsize=16)
def animation(fmt: str, frames: int) -> bytes:
    """`frames` frames of 48x48 (GIF, APNG or animated WebP); built once per (format, count)."""
    images = [photo(48, 48, seed=i, mode="RGB") for i in range(frames)]
    if fmt == "GIF":
        images = [image.convert("P") for image in images]
    return encode(images[0], fmt, save_all=True, append_images=images[1:], duration=20, loop=0)


# --- odd but valid encodings -------------------------------------------------------------------
def odd_mode(kind: str, width: int, height: int, seed: int) -> bytes:
    """Valid images in the modes scanners and editors actually write."""
    rng = np.random.default_rng(seed)
    base = photo(width, height, seed)
    if kind == "cmyk_jpeg":
        return encode(base.convert("CMYK"), "JPEG", quality=90)
    if kind == "cmyk_tiff":
        return encode(base.convert("CMYK"), "TIFF")
    if kind == "png16":
        values = np.asarray(base.convert("L"), np.uint16) * np.uint16(257)
        image = Image.fromarray(values)
        assert image.mode == "I;16", image.mode
        return encode(image, "PNG")
    if kind == "palette_alpha_png":
        paletted = base.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
        return encode(paletted, "PNG", transparency=int(rng.integers(0, 16)))
    if kind == "rgba_png":
        rgba = base.convert("RGBA")
        rgba.putalpha(Image.fromarray(rng.integers(0, 256, (height, width), dtype=np.uint8), "L"))
        return encode(rgba, "PNG")
    if kind == "la_png":
        return encode(base.convert("LA"), "PNG")
    if kind == "transparent_webp":
        rgba = base.convert("RGBA")
        rgba.putalpha(0)  # nothing visible at all
        return encode(rgba, "WEBP", lossless=True)
    if kind == "bilevel_tiff":
        return encode(base.convert("1"), "TIFF")
    if kind == "bilevel_bmp":
        return encode(base.convert("1"), "BMP")
    if kind == "float_tiff":
        values = rng.normal(0.5, 2.0, (height, width)).astype(np.float32)
        values.flat[:: max(1, values.size // 7)] = np.nan  # NaN and infinities from a broken sensor
        values.flat[1 :: max(2, values.size // 5)] = np.inf
        return encode(Image.fromarray(values, "F"), "TIFF")
    if kind == "int32_tiff":
        return encode(Image.fromarray(rng.integers(-(2**31), 2**31 - 1, (height, width), dtype=np.int32), "I"), "TIFF")
    if kind == "gray_jpeg_progressive":
        return encode(base.convert("L"), "JPEG", progressive=True, quality=75)
    if kind == "ycbcr_tiff_jpeg":
        return encode(base, "TIFF", compression="jpeg")
    if kind == "uniform_white_png":
        return encode(Image.new("RGB", (width, height), (255, 255, 255)), "PNG")
    if kind == "uniform_black_gif":
        return encode(Image.new("L", (width, height), 0), "GIF")
    raise ValueError(kind)


ODD_MODES = (
    "cmyk_jpeg",
    "cmyk_tiff",
    "png16",
    "palette_alpha_png",
    "rgba_png",
    "la_png",
    "transparent_webp",
    "bilevel_tiff",
    "bilevel_bmp",
    "float_tiff",
    "int32_tiff",
    "gray_jpeg_progressive",
    "ycbcr_tiff_jpeg",
    "uniform_white_png",
    "uniform_black_gif",
)


def exif_rotated(fmt: str, orientation: int, width: int, height: int, seed: int) -> bytes:
    """An image carrying an EXIF Orientation tag (including values outside 1..8)."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(photo(width, height, seed), fmt, exif=exif.tobytes())


# --- polyglots: one file, two readings ----------------------------------------------------------
ZIP_EMPTY = b"PK\x05\x06" + b"\x00" * 18
TRAILERS = {
    "zip": ZIP_EMPTY,
    "html": b"<html><script>alert(document.domain)</script></html>",
    "php": b"<?php system($_GET['c']); ?>",
    "pdf": b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF",
}
PREFIXES = {
    "html": b"<!doctype html><html><body>",
    "pdf": b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n",
    "zip": b"PK\x03\x04" + b"\x00" * 26,
    "svg": b'<svg xmlns="http://www.w3.org/2000/svg"><image href="data:image/png;base64,',
    "bom": b"\xef\xbb\xbf",
}


def gifar(script: bytes) -> bytes:
    """GIF89a whose header bytes are also the start of a JavaScript comment (GIF/JS polyglot)."""
    return b"GIF89a/*\x00\x00\x00\x00\x00*/=1;" + script + b";\x3b"
