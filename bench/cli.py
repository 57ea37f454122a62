"""`python -m bench [PART ...]`: the service's performance and preprocessing benchmarks.

Figures, not tests: each part starts its own `garment-sorter serve` on a free loopback port and
prints what it measured. `make bench` runs `suite`, which rewrites docs/benchmarks.md.
`python -m bench gpu-check [...]` (`make gpu-check`) has flags of its own: see bench.gpu_check.

Each part's module is imported only when the part runs: the GPU check must start on a machine that
has none of the service's packages.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.server import REPO

Part = Callable[[argparse.Namespace], Any]
# part -> "module:function", imported when the part runs
PARTS: dict[str, str] = {
    "http": "bench.scenarios:bench_http",
    "batch": "bench.scenarios:bench_batch",
    "preprocess": "bench.scenarios:bench_preprocess",
}
# Run only when named: they take many minutes, and `suite` writes docs/benchmarks.md (make bench).
ON_REQUEST: dict[str, str] = {
    "suite": "bench.suite:run_suite",
    "soak": "bench.suite:run_soak",
    "scanner": "bench.scanner:bench_scanner",
    "scanner-second": "bench.scanner:bench_scanner_second",
    "camera": "bench.suite:run_camera",
    "decisions": "bench.suite:run_decision_log",
    "rollout": "bench.suite:run_rollout",
    "tracing": "bench.suite:run_tracing",
    "renders": "bench.renders:bench_renders",
}
GPU_CHECK = "gpu-check"


def part_function(name: str) -> Part:
    module, _, function = {**PARTS, **ON_REQUEST}[name].partition(":")
    found: Part = getattr(importlib.import_module(module), function)
    return found


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "parts",
        nargs="*",
        metavar="PART",
        help="http, batch and/or preprocess (default: those three); or suite (docs/benchmarks.md), soak,"
        " camera (camera-size photos, into docs/benchmarks.md), decisions (the decision log's cost, into"
        " docs/benchmarks.md), rollout (a swap under load and the shadow's cost, into docs/benchmarks.md),"
        " tracing (what traces cost, into docs/benchmarks.md), scanner (docs/scanner.md), scanner-second (the same"
        " on a second, independent renderer's photos) or renders (a render set"
        " to train on, not a benchmark); or gpu-check with"
        " its own flags (`python -m bench gpu-check --help`)",
    )
    p.add_argument("--duration-s", type=float, default=10.0, help="per measurement")
    p.add_argument("--warmup-s", type=float, default=3.0)
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    p.add_argument("--batch-files", type=int, default=256)
    p.add_argument("--limit", type=int, default=10_000, help="test images for `preprocess`")
    p.add_argument("--server-nice", type=int, default=0, help="run the servers under nice")
    p.add_argument("--json-out", type=Path, default=None, help="also write the figures as JSON")
    p.add_argument("--soak-s", type=float, default=600.0, help="`suite`/`soak`: soak length (0: skip in suite)")
    p.add_argument("--capacity-s", type=float, default=10.0, help="`soak`: capacity measurement")
    p.add_argument("--raw-seconds", type=float, default=3.0, help="`suite`: per raw-model batch size")
    p.add_argument("--report", default=str(REPO / "docs" / "benchmarks.md"), help="`suite`: the report")
    p.add_argument("--per-class", type=int, default=200, help="`scanner`: test images per class")
    p.add_argument("--workers", type=int, default=2, help="`scanner`: processes rendering and decoding")
    p.add_argument(
        "--split",
        choices=("test", "validation"),
        default="test",
        help=(
            "`scanner`: render test images (the report) or validation images (to tune on: writes only the"
            " review thresholds of docs/bench/scanner-thresholds.json; run it with a model that held them out)"
        ),
    )
    p.add_argument(
        "--renders-split",
        choices=("train", "validation"),
        default="train",
        help="`renders`: render images of the training split or of the validation split",
    )
    p.add_argument("--renders-count", type=int, default=20_000, help="`renders`: photos to render")
    p.add_argument(
        "--renders-out", type=Path, default=None, help="`renders`: the file (default data/renders-<split>.npz)"
    )
    return p


def run(args: argparse.Namespace) -> int:
    known = {**PARTS, **ON_REQUEST}
    unknown = [part for part in args.parts if part not in known]
    if unknown:
        print(f"python -m bench: unknown part(s) {unknown}; choose from {list(known)}", file=sys.stderr)
        return 2
    results = {}
    for part in args.parts or list(PARTS):
        print(f"== bench {part} ==", flush=True)
        kwargs = args
        if part == "preprocess":
            kwargs = argparse.Namespace(**{**vars(args), "concurrency": 16})
        results[part] = part_function(part)(kwargs)
    if args.json_out:
        args.json_out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == [GPU_CHECK]:
        from bench.gpu_check import main as gpu_check

        return gpu_check(argv[1:])
    return run(build_parser().parse_args(argv))
