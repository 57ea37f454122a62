"""The exported SavedModel's signatures: names, input and output, and which precision runs where.

Every version is a TensorFlow SavedModel (TF Serving layout) whose ``serving_default`` maps
``images`` uint8 [None, 28, 28, 1] (garment bright on black, as in the dataset) to
``probabilities`` float32 [None, 10] (softmax of logits / temperature, applied in the graph) and
``logits`` float32 [None, 10]. ``serving_bfloat16`` has the same inputs, outputs and weights but
computes in bfloat16.
"""

from __future__ import annotations

from pathlib import Path

from contract.classes import IMAGE_SHAPE, NUM_CLASSES

SIGNATURE = "serving_default"
SIGNATURES: dict[str, str] = {"float32": SIGNATURE, "bfloat16": "serving_bfloat16"}
PRECISIONS: tuple[str, ...] = tuple(SIGNATURES)
INPUT_NAME = "images"
INPUT_DTYPE = "uint8"
INPUT_SHAPE: tuple[int | None, ...] = (None, *IMAGE_SHAPE, 1)
OUTPUT_NAME = "probabilities"
LOGITS_NAME = "logits"
OUTPUT_DTYPE = "float32"
OUTPUT_SHAPE: tuple[int | None, ...] = (None, NUM_CLASSES)

# CPU flags (Linux /proc/cpuinfo) under which oneDNN runs bfloat16 convolutions in hardware;
# elsewhere bfloat16 is emulated and slower than float32.
NATIVE_BFLOAT16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
CPUINFO = Path("/proc/cpuinfo")


def cpu_flags(cpuinfo: Path = CPUINFO) -> frozenset[str]:
    """The CPU's feature flags as Linux lists them; empty where /proc/cpuinfo cannot be read."""
    try:
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("flags"):
                return frozenset(line.partition(":")[2].split())
    except OSError:
        pass
    return frozenset()


def native_bfloat16(flags: frozenset[str] | None = None) -> bool:
    """Whether this CPU computes bfloat16 in hardware (the service's 'auto' precision rule)."""
    return bool((cpu_flags() if flags is None else flags) & NATIVE_BFLOAT16_FLAGS)
