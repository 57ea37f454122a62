"""Which exported signature the service runs: float32, or bfloat16 where the hardware computes it."""

from __future__ import annotations

from app.inference.model import ModelError
from contract.signature import PRECISIONS, native_bfloat16


def choose_precision(requested: str, exported: dict[str, str], on_gpu: bool, flags: frozenset[str]) -> str:
    """The precision to serve: as requested, or for 'auto' bfloat16 only where it is both
    exported and native to the CPU (elsewhere bfloat16 is emulated and slower than float32)."""
    if requested == "auto":
        native = not on_gpu and native_bfloat16(flags)
        return "bfloat16" if native and "bfloat16" in exported else "float32"
    if requested not in PRECISIONS:
        raise ModelError(f"precision must be auto, {' or '.join(PRECISIONS)} (got {requested!r})")
    if requested not in exported:
        raise ModelError(f"SORTER_PRECISION={requested}, but the model exports only {', '.join(exported)}")
    return requested
