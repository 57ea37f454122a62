"""The training commands of `garment-sorter` (or `python -m training`): explore, train, compare,
export, unpack, score-renders, calibrate, unfamiliar, bench-model, model-card.

Every user mistake (missing dataset, unknown architecture, bad flag value) ends in one line on
stderr and exit code 2, before anything is written under models/ or reports/.

The `garment-sorter` console script loads this module to list the commands (for --help too), so
each command imports the modules it runs (TensorFlow, Keras, matplotlib) only when it runs; what is
imported at module level here needs none of them.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from contract.metadata import METADATA_FILE
from contract.signature import PRECISIONS
from contract.versions import VersionError, latest
from training.data import DatasetError

if TYPE_CHECKING:
    from training.ensemble import Ensemble
    from training.train import TrainConfig

EXIT_USAGE = 2
DEFAULT_MODEL_ROOT = Path("models/fashion-cnn")
BENCH_BATCH_SIZES = [1, 8, 32, 64, 128, 256]
CARD_BATCH_SIZES = (1, 64, 256)  # the card's speed table; 256 is the throughput target's batch
CARD_SECONDS_PER_SIZE = 5.0


class Subparsers(Protocol):
    """What a parent CLI's ``add_subparsers()`` returns, as far as register uses it."""

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser: ...


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _add_train_options(p: argparse.ArgumentParser, default_epochs: int) -> None:
    p.add_argument("--epochs", type=_positive_int, default=default_epochs)
    p.add_argument("--batch-size", type=_positive_int, default=128)
    p.add_argument(
        "--augment",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="random crop (2-px pad), horizontal flip, random erasing",
    )
    p.add_argument(
        "--zoom",
        type=float,
        default=0.0,
        help="with --augment: also rescale by a random factor in [1 - ZOOM, 1 + ZOOM]",
    )
    p.add_argument(
        "--scanner",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="with --augment: also rotations, shifts, lighter/darker garments and soft edges (scanner photos)",
    )
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--patience", type=_positive_int, default=50, help="EarlyStopping patience in epochs")
    p.add_argument("--optimizer", default="adam", help="adam | adamw | sgd")
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=0.0, help="AdamW decoupled weight decay")
    p.add_argument("--label-smoothing", type=float, default=0.0)
    p.add_argument("--lr-schedule", default="constant", help="constant | cosine (with --warmup-epochs)")
    p.add_argument("--warmup-epochs", type=int, default=0)
    p.add_argument("--strategy", default="default", help="default | mirrored | multiworker (TF_CONFIG)")
    p.add_argument("--limit-train", type=_positive_int, default=None, help="use the first N training images")
    p.add_argument(
        "--full-train",
        action="store_true",
        help="train on all 60,000 (train + validation); no early stopping, and the "
        "validation figures are then not held out",
    )
    p.add_argument(
        "--histograms",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="TensorBoard weight and gradient histograms",
    )
    p.add_argument("--resume", action="store_true", help="continue an interrupted run from its last epoch")
    p.add_argument(
        "--extra-data",
        default=None,
        metavar="DIR",
        help="a `garment-sorter dataset export` directory: the warehouse's reviewed photos join training, "
        "a fixed 20 %% slice (by decision id) held out and reported on",
    )
    p.add_argument(
        "--init-from",
        default=None,
        metavar="RUN",
        help="fine-tune: start from RUN's best weights (same --arch; `garment-sorter unpack` makes RUNs of a version)",
    )
    p.add_argument(
        "--renders",
        default=None,
        metavar="FILE",
        help="a render set (`python -m bench renders`): scanner photos as the service preprocessed them join training",
    )
    p.add_argument(
        "--teacher",
        default=None,
        metavar="RUN",
        help="distil: a calibrated RUN (`garment-sorter calibrate`); the probabilities it serves join each "
        "image's label as the target (a held-out run needs a held-out teacher)",
    )
    p.add_argument(
        "--teacher-weight",
        type=float,
        default=0.7,
        help="with --teacher: the teacher's share of each target, the one-hot label the rest (default 0.7)",
    )
    p.add_argument(
        "--teacher-temperature",
        type=float,
        default=None,
        metavar="T",
        help="with --teacher: soften the served probabilities and the student's alike by T and learn them "
        "in their own loss term (Hinton's distillation); without it they are mixed into the label",
    )
    p.add_argument(
        "--freeze-batch-norm",
        action="store_true",
        help="BatchNormalization in inference mode with fixed weights (fine-tuning an unpacked network needs it)",
    )


def _train_config(args: argparse.Namespace, arch: str) -> TrainConfig:
    from training.train import TrainConfig

    return TrainConfig(
        arch=arch,
        epochs=args.epochs,
        batch_size=args.batch_size,
        augment=args.augment,
        zoom=args.zoom,
        scanner=args.scanner,
        seed=args.seed,
        patience=args.patience,
        optimizer=args.optimizer,
        learning_rate=args.learning_rate,
        weight_decay=args.weight_decay,
        label_smoothing=args.label_smoothing,
        lr_schedule=args.lr_schedule,
        warmup_epochs=args.warmup_epochs,
        strategy=args.strategy,
        limit_train=args.limit_train,
        full_train=args.full_train,
        histograms=args.histograms,
        extra_data=args.extra_data,
        init_from=args.init_from,
        renders=args.renders,
        freeze_batch_norm=args.freeze_batch_norm,
        teacher=args.teacher,
        teacher_weight=args.teacher_weight,
        teacher_temperature=args.teacher_temperature,
    )


def cmd_explore(args: argparse.Namespace) -> int:
    from training import data, explore

    dataset = data.load_fashion_mnist()
    for path in explore.write_report(dataset, Path(args.out)):
        print(path)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from training.distill import teacher_targets
    from training.train import train

    out = Path(args.out) if args.out else Path("runs") / args.arch
    config = _train_config(args, args.arch)
    targets = None if config.teacher is None else teacher_targets(config)
    result = train(config, out, resume=args.resume, teacher_targets=targets)
    print(json.dumps({k: v for k, v in result.to_json().items() if k != "history"}, indent=2))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from training import architectures, export
    from training.compare import compare

    archs = args.archs or list(architectures.STUDY_ARCHITECTURES)
    base = _train_config(args, archs[0])
    payload = compare(archs, base, Path(args.runs_dir), Path(args.out), resume=args.resume, note=args.note or "")
    print(json.dumps({"selected_study_model": payload["selected_study_model"]}))
    if args.export and payload["selected_study_model"]:
        row = next(r for r in payload["rows"] if r["arch"] == payload["selected_study_model"])
        print(export.export_run(Path(row["run_dir"]), Path(args.model_root)))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from training import export

    print(export.export_run(Path(args.run), Path(args.model_root), args.version))
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from training.calibrate import calibrate_run

    runs = _ensemble_of(args)
    result = calibrate_run(
        runs,
        Path(args.out) if args.out else None,
        held_out_twin=Path(args.held_out_twin) if args.held_out_twin else None,
    )
    print(json.dumps(result, indent=2))
    return 0


def _version_dir(args: argparse.Namespace) -> Path:
    return Path(args.version_dir) if args.version_dir else latest(Path(args.model_root))


def cmd_bench_model(args: argparse.Namespace) -> int:
    from training import benchmark

    version_dir = _version_dir(args)
    precisions = args.precision or benchmark.exported_precisions(version_dir)
    figures = {p: benchmark.images_per_second(version_dir, args.batch_sizes, args.seconds, p) for p in precisions}
    print(benchmark.report(version_dir, figures))
    return 0


def cmd_model_card(args: argparse.Namespace) -> int:
    from training import benchmark, compare, model_card

    version_dir = _version_dir(args)
    figures = {
        p: benchmark.images_per_second(version_dir, CARD_BATCH_SIZES, CARD_SECONDS_PER_SIZE, p)
        for p in benchmark.exported_precisions(version_dir)
    }
    print(benchmark.report(version_dir, figures))
    print(model_card.write_card(version_dir, Path(args.figures), Path(args.model_root) / "README.md", figures))
    if args.run:
        compare.add_result(compare.load_run(Path(args.run)), Path(args.reports))
    compare.add_served_model(json.loads((version_dir / METADATA_FILE).read_text()), Path(args.reports))
    return 0


def _add_explore(subparsers: Subparsers) -> None:
    p = subparsers.add_parser("explore", help="dataset summary, samples and class balance")
    p.add_argument("--out", default="reports/")
    p.set_defaults(func=cmd_explore)


def _add_train(subparsers: Subparsers) -> None:
    # the architecture names for --help: the one command-line place that imports Keras on registration
    from training.architectures import ARCHITECTURES

    p = subparsers.add_parser("train", help="train one architecture on the 50k/10k split")
    p.add_argument("--arch", required=True, help=f"one of: {', '.join(ARCHITECTURES)}")
    p.add_argument("--out", default=None, help="run directory (default runs/<arch>)")
    _add_train_options(p, default_epochs=20)
    p.set_defaults(func=cmd_train)


def _add_compare(subparsers: Subparsers) -> None:
    p = subparsers.add_parser("compare", help="train several architectures, tabulate and select")
    p.add_argument("--archs", nargs="+", default=None, help="default: the study's eight")
    p.add_argument("--out", default="reports/")
    p.add_argument("--runs-dir", default="runs/compare")
    p.add_argument("--export", action="store_true", help="export the selected model as the next version")
    p.add_argument("--model-root", default=str(DEFAULT_MODEL_ROOT))
    p.add_argument("--note", default=None, help="a line added under the table (e.g. the epoch budget)")
    _add_train_options(p, default_epochs=10)
    p.set_defaults(func=cmd_compare)


def cmd_unpack(args: argparse.Namespace) -> int:
    from training.members import unpack

    for run_dir in unpack(Path(args.version_dir), Path(args.out) if args.out else None):
        print(run_dir)
    return 0


def cmd_score_renders(args: argparse.Namespace) -> int:
    from training.render_scores import score_renders, table

    scores = score_renders(_ensemble_of(args), Path(args.renders))
    print("\n".join(table(scores)))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(scores, indent=2) + "\n")
    return 0


def _add_score_renders(subparsers: Subparsers) -> None:
    p = subparsers.add_parser(
        "score-renders", help="runs calibrated on validation, scored on validation renders (scanner photos)"
    )
    p.add_argument("--run", required=True)
    _add_ensemble_options(p)
    p.add_argument(
        "--renders", default="data/renders-validation.npz", help="`python -m bench renders --renders-split validation`"
    )
    p.add_argument("--json-out", default=None)
    p.set_defaults(func=cmd_score_renders)


def _add_unpack(subparsers: Subparsers) -> None:
    p = subparsers.add_parser(
        "unpack", help="an exported version's networks as run directories (to fine-tune, calibrate or export again)"
    )
    p.add_argument("--version-dir", required=True, help="e.g. models/fashion-cnn/7")
    p.add_argument(
        "--out",
        default=None,
        help="writes OUT/member-<i>/ and OUT/unsure-<i>/ (default: the run directories the version records)",
    )
    p.set_defaults(func=cmd_unpack)


def _add_export(subparsers: Subparsers) -> None:
    p = subparsers.add_parser("export", help="export a finished run as models/fashion-cnn/<next version>")
    p.add_argument("--run", required=True, help="run directory with best.keras and run.json")
    p.add_argument("--model-root", default=str(DEFAULT_MODEL_ROOT))
    p.add_argument("--version", type=_positive_int, default=None)
    p.set_defaults(func=cmd_export)


def _add_bench_model(subparsers: Subparsers) -> None:
    p = subparsers.add_parser("bench-model", help="raw SavedModel images/s by batch size (CPU or GPU)")
    p.add_argument("--model-root", default=str(DEFAULT_MODEL_ROOT))
    p.add_argument("--version-dir", default=None, help="default: the highest version under --model-root")
    p.add_argument("--batch-sizes", type=_positive_int, nargs="+", default=BENCH_BATCH_SIZES)
    p.add_argument("--seconds", type=float, default=3.0, help="timed seconds per batch size")
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        action="append",
        default=None,
        help="signature(s) to time (repeatable); default: every one the version exports",
    )
    p.set_defaults(func=cmd_bench_model)


def _add_model_card(subparsers: Subparsers) -> None:
    p = subparsers.add_parser("model-card", help="write models/fashion-cnn/README.md from measurements")
    p.add_argument("--model-root", default=str(DEFAULT_MODEL_ROOT))
    p.add_argument("--version-dir", default=None, help="default: the highest version under --model-root")
    p.add_argument("--figures", default="reports/fashion-cnn", help="where the card's figures go")
    p.add_argument("--run", default=None, help="also add this run's row to the comparison report")
    p.add_argument("--reports", default="reports/")
    p.set_defaults(func=cmd_model_card)


def cmd_unfamiliar(args: argparse.Namespace) -> int:
    from training.unfamiliar import calibrate_unfamiliar, derive_version

    version_dir = _version_dir(args)
    twin = Path(args.held_out_twin) if args.held_out_twin else None
    block = calibrate_unfamiliar(version_dir, twin, args.trip_rate)
    target = derive_version(version_dir, block)
    print(json.dumps({"version_dir": str(target), "unfamiliar": block}, indent=2))
    return 0


def _add_unfamiliar(subparsers: Subparsers) -> None:
    p = subparsers.add_parser(
        "unfamiliar", help="add the calibrated `unfamiliar` threshold to an export, as the next version"
    )
    p.add_argument("--model-root", default=str(DEFAULT_MODEL_ROOT))
    p.add_argument("--version-dir", default=None, help="default: the highest version under --model-root")
    p.add_argument(
        "--held-out-twin",
        default=None,
        metavar="VERSION_DIR",
        help="for a full-train export: the version with the same recipes trained without the validation split",
    )
    p.add_argument("--trip-rate", type=float, default=0.01, help="share of clean validation images allowed to trip it")
    p.set_defaults(func=cmd_unfamiliar)


def _add_ensemble_options(p: argparse.ArgumentParser) -> None:
    """How --run is served with others: calibrate's options, which score-renders takes too."""
    p.add_argument(
        "--flip-below",
        type=float,
        default=None,
        metavar="P",
        help="average in the mirror image only where the top-class probability (uncalibrated) is "
        "below P: most of mirroring every image's gain at a fraction of its cost",
    )
    p.add_argument(
        "--ensemble-with",
        nargs="+",
        default=[],
        metavar="RUN",
        help="serve the mean logits of --run and these runs (same validation split)",
    )
    p.add_argument(
        "--unsure-with",
        nargs="+",
        default=[],
        metavar="RUN",
        help="with --flip-below: these runs join the mean, on both views, for the images below P only "
        "(a second look that costs little, since few images are unsure)",
    )


def _ensemble_of(args: argparse.Namespace) -> Ensemble[Path]:
    from training.ensemble import Ensemble

    return Ensemble(
        members=(Path(args.run), *map(Path, args.ensemble_with)),
        unsure_members=tuple(map(Path, args.unsure_with)),
        tta_flip=getattr(args, "tta_flip", False),
        flip_below=args.flip_below,
    )


def _add_calibrate(subparsers: Subparsers) -> None:
    p = subparsers.add_parser("calibrate", help="temperature, ECE and the review threshold for a run")
    p.add_argument("--run", required=True)
    p.add_argument("--out", default=None, help="directory for the calibration figures (default: the run)")
    p.add_argument(
        "--tta-flip",
        action="store_true",
        help="serve the average of the image and its mirror (export follows calibration.json)",
    )
    _add_ensemble_options(p)
    p.add_argument(
        "--held-out-twin",
        default=None,
        metavar="RUN",
        help="for --full-train runs: take the temperature and review threshold of this calibrated "
        "run (with its --ensemble-with and --unsure-with), the same recipes trained without the "
        "validation split",
    )
    p.set_defaults(func=cmd_calibrate)


def register(subparsers: Subparsers) -> None:
    """Add the training subcommands to a parent CLI (the `garment-sorter` console script)."""
    commands = (
        _add_explore,
        _add_train,
        _add_compare,
        _add_export,
        _add_unpack,
        _add_score_renders,
        _add_bench_model,
        _add_model_card,
        _add_calibrate,
        _add_unfamiliar,
    )
    for add in commands:
        add(subparsers)


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Dispatch, turning every anticipated user error into one line and exit code 2."""
    try:
        code: int = args.func(args)
    except (DatasetError, VersionError, ValueError, FileExistsError, FileNotFoundError) as exc:
        # UnknownArchitecture and contract.metadata's MetadataError are ValueErrors
        parser.exit(EXIT_USAGE, f"{parser.prog}: error: {exc}\n")
    return code


def main(argv: list[str] | None = None) -> int:
    """`python -m training`: the training commands without the service's."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    description = __doc__.splitlines()[0] if __doc__ else None
    parser = argparse.ArgumentParser(prog="python -m training", description=description)
    subparsers = parser.add_subparsers(dest="command", required=True)
    register(subparsers)
    args = parser.parse_args(argv)
    return run(args, parser)


if __name__ == "__main__":
    sys.exit(main())
