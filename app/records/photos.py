"""Photos kept for review and audit, content-addressed: ``<root>/<first 2 hex>/<sha256>.orig``
(the bytes the scanner sent) and ``<sha256>.seen.png`` (the 28x28 image the model saw).

A photo is written to a temporary name, fsync'd and renamed, so a stored photo is whole; a name
is only ever built from a 64-hex SHA-256, so no request can reach outside the store. Storing can
fail (a full disk): the caller classifies on, without the photo.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import time
from pathlib import Path

import numpy as np
from PIL import Image

SHA256_HEX = re.compile(r"[0-9a-f]{64}")
ORIGINAL, SEEN = ".orig", ".seen.png"


class PhotoStore:
    def __init__(self, root: Path):
        self.root = root

    def _path(self, sha256: str, suffix: str) -> Path:
        if not SHA256_HEX.fullmatch(sha256):
            raise ValueError("not a photo reference")
        return self.root / sha256[:2] / f"{sha256}{suffix}"

    def put(self, original: bytes, seen: np.ndarray) -> str:
        """Store both images; return the reference. OSError when the disk refuses."""
        sha256 = hashlib.sha256(original).hexdigest()
        buffer = io.BytesIO()
        Image.fromarray(np.asarray(seen, dtype=np.uint8).reshape(28, 28), "L").save(buffer, "PNG")
        for suffix, data in ((ORIGINAL, original), (SEEN, buffer.getvalue())):
            _write_whole(self._path(sha256, suffix), data)
        return sha256

    def read(self, sha256: str, seen: bool = False) -> bytes | None:
        """The stored bytes, or None when never kept or purged (or not a reference at all)."""
        try:
            return self._path(sha256, SEEN if seen else ORIGINAL).read_bytes()
        except (ValueError, OSError):
            return None

    def purge(self, older_than_s: float) -> int:
        """Delete photos stored more than ``older_than_s`` ago; return how many files went."""
        cutoff = time.time() - older_than_s
        removed = 0
        for path in self.root.glob("*/*"):
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
        return removed


def media_type(data: bytes) -> str:
    """The stored photo's media type, from its content (stored as received, so it may be anything)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.get_format_mimetype() or "application/octet-stream"
    except Exception:  # bytes PIL cannot name are served as bytes
        return "application/octet-stream"


def _write_whole(path: Path, data: bytes) -> None:
    if path.exists():  # the same content stored again: it counts as new for the retention clock
        os.utime(path)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with temporary.open("wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        temporary.replace(path)
    except OSError:
        temporary.unlink(missing_ok=True)
        raise
