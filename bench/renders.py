"""`python -m bench renders`: a render set (contract/renders.py) for training or tuning.

Images of the 50,000-image training split (or, ``--renders-split validation``, of the 10,000 held
out for tuning) become scanner photos under every garment condition of bench.scanner in turn, and each
photo goes through the service's own preprocessing: the 28x28 image is what the model would see.
`garment-sorter train --renders FILE` then trains on them beside the dataset's images.

The test split is never rendered here (it is the scanner benchmark's), and the seeds start at
SEED_BASE, far from the benchmark's, so no training photo is a benchmark photo's twin. The
renderer is the benchmark's own: a model trained on these has seen its belts, lamps and labels,
so its scanner-benchmark figures measure those conditions, not new ones, and must say so.
"""

from __future__ import annotations

import argparse
import functools
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from bench.garment import EMPTY
from bench.scanner import CONDITIONS, render
from bench.server import REPO
from contract.renders import RenderSet

SEED_BASE = 10_000_000  # the scanner benchmark's seeds stay below 20,000
GARMENT_CONDITIONS = tuple(c for c in CONDITIONS if c != EMPTY)


@functools.cache
def _split(split: str) -> tuple[np.ndarray, np.ndarray]:
    from training import data

    held_out = data.split_train_validation(data.load_fashion_mnist(allow_download=False))
    if split == "validation":
        return held_out.x_val, held_out.y_val
    return held_out.x_train, held_out.y_train


def _seen(job: tuple[str, int, int]) -> np.ndarray:
    """Worker: one photo rendered and preprocessed; an all-black image where the service refused it
    or found no garment (the model then learns nothing from it: the caller drops those)."""
    from app.errors import ApiError
    from app.inference import preprocess

    split, index, condition = job
    images, _ = _split(split)
    try:
        found = preprocess.preprocess(
            render(GARMENT_CONDITIONS[condition], images[index], SEED_BASE + index), 40_000_000
        )
    except ApiError:
        return np.zeros((28, 28), np.uint8)
    return found.pixels if found.box is not None else np.zeros((28, 28), np.uint8)


def render_set(split: str, count: int, workers: int, seed: int = 0) -> RenderSet:
    """``count`` images of the split, drawn by ``seed``, each under the next garment condition."""
    _, labels = _split(split)
    chosen = np.sort(np.random.default_rng(seed).permutation(len(labels))[:count])
    conditions = np.arange(len(chosen)) % len(GARMENT_CONDITIONS)
    jobs = [(split, int(i), int(c)) for i, c in zip(chosen, conditions, strict=True)]
    with ProcessPoolExecutor(workers) as pool:
        seen = np.stack(list(pool.map(_seen, jobs, chunksize=32)))
    kept = seen.reshape(len(seen), -1).any(axis=1)
    return RenderSet(
        images=seen[kept],
        labels=labels[chosen][kept].astype(np.uint8),
        sources=chosen[kept].astype(np.int32),
        conditions=conditions[kept].astype(np.uint8),
        condition_names=GARMENT_CONDITIONS,
    )


def bench_renders(args: argparse.Namespace) -> dict[str, Any]:
    """The `renders` part: write the render set and say how many photos it holds."""
    split = args.renders_split
    made = render_set(split, args.renders_count, args.workers)
    out = Path(args.renders_out or REPO / "data" / f"renders-{split}.npz")
    made.save(out)
    summary = {
        "out": str(out),
        "split": split,
        "images": len(made.labels),
        # rendered but left out (no garment found, or refused); a count past the split's size is not
        "dropped": min(args.renders_count, len(_split(split)[1])) - len(made.labels),
    }
    print(summary, flush=True)
    return summary
