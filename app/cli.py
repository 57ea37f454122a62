"""`garment-sorter`: serve | classify, plus the commands of installed plugins (training/'s train,
calibrate, export, ...), found through the ``garment_sorter.commands`` entry points: app/ never
imports training/ by name, and the service image, which has no training/, simply lacks them.

Configuration errors (settings, policy file, model directory) end in one line on stderr and
exit code 2 before anything starts.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import json
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from app.config import Settings
    from app.inference.preprocess import ModelInput

EXIT_USAGE = 2
EXIT_STARTUP_FAILURE = 3
APP_COMMANDS = {"serve", "classify", "dataset", "review-threshold"}
PLUGIN_GROUP = "garment_sorter.commands"


def _settings(**overrides: Any) -> Settings:
    from app.config import load_settings

    return load_settings(**{k: v for k, v in overrides.items() if v is not None})


UVICORN_SHUTDOWN_GRACE_S = 1


def cmd_serve(args: argparse.Namespace) -> int:
    from app.logs import configure_logging
    from app.main import create_app
    from app.server.uvicorn_adapter import ConnectionLimits, ServerExit, build_server
    from app.service.service import preflight

    settings = _settings(log_level=args.log_level, access_log=args.access_log)
    preflight(settings)
    configure_logging(settings.log_level, settings.log_format)
    app = create_app(settings)
    service = app.state.service
    server = build_server(
        app,
        host=args.host,
        port=args.port,
        limits=ConnectionLimits.from_settings(settings),
        on_reject=service.count_rejection,
        on_connections=service.metrics.open_connections.set,
        log_level=settings.log_level,
        keep_alive_s=args.keep_alive_s,
        backlog=args.backlog,
        # Our SIGTERM drain already waited up to SORTER_DRAIN_TIMEOUT_S for accepted work; uvicorn
        # only has to close what is left, so the whole exit stays within the drain budget.
        shutdown_grace_s=UVICORN_SHUTDOWN_GRACE_S,
    )
    service.lifecycle.server_exit = ServerExit(server)
    server.run()
    return 0 if server.started else EXIT_STARTUP_FAILURE


def cmd_classify(args: argparse.Namespace) -> int:
    import numpy as np

    from app.errors import ApiError
    from app.inference import preprocess
    from app.inference.loader import load_model
    from app.policy import load_policy_for
    from app.reasons import before_policy
    from app.service.service import preflight

    settings = _settings(log_level="warning")
    preflight(settings)
    model = load_model(settings)
    policy = load_policy_for(settings, model.class_names, model.review_threshold)
    on = args.as_of or dt.date.today()
    images: list[ModelInput] = []
    paths: list[str] = []
    failures = 0
    for path in args.photos:
        try:
            data = Path(path).read_bytes()
            images.append(preprocess.preprocess(data, settings.max_image_pixels, settings.resize))
            paths.append(path)
        except (OSError, ApiError) as exc:
            failures += 1
            reason = f"{exc.code}: {exc.detail}" if isinstance(exc, ApiError) else exc.strerror or str(exc)
            print(f"{path}: error: {reason}", file=sys.stderr)
    step = settings.max_batch_size
    for start in range(0, len(images), step):
        chunk = images[start : start + step]
        inference = model.infer(np.stack([seen.pixels for seen in chunk]))
        rows = zip(paths[start : start + step], inference.probabilities, inference.unfamiliar, chunk, strict=True)
        for path, row, unfamiliar, seen in rows:
            class_id = int(np.argmax(row))
            decision = policy.decide(row, on, before_policy(seen.reasons, bool(unfamiliar)))
            record = {
                "file": path,
                "label": model.class_names[class_id],
                "confidence": round(float(row[class_id]), 4),
                "season": decision.season,
                "bin": decision.bin,
                "zone": decision.zone,
                "needs_review": decision.needs_review,
                "review_reasons": [str(reason) for reason in decision.reasons],
            }
            if args.json:
                print(json.dumps(record))
            else:
                review = f"  (needs review: {', '.join(decision.reasons)})" if decision.needs_review else ""
                print(
                    f"{path}\t{record['label']}\t{record['confidence']:.4f}\t{decision.season}\t{decision.bin}{review}"
                )
    return 1 if failures else 0


def cmd_dataset_export(args: argparse.Namespace) -> int:
    from app.records.database import connect, migrate
    from app.records.export import export_reviewed
    from app.records.photos import PhotoStore

    settings = _settings(log_level="warning")
    engine = connect(settings.resolved_database_url())
    migrate(engine)  # an older database gets the tables the query reads
    since = dt.datetime.combine(args.since, dt.time(), tzinfo=dt.UTC)
    try:
        manifest = export_reviewed(engine, PhotoStore(settings.data_dir / "photos"), since, Path(args.out))
    except FileExistsError as exc:
        print(f"garment-sorter: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        engine.dispose()
    print(
        f"{manifest['items']} reviewed items since {args.since} -> {args.out}"
        f" (by source {manifest['by_source']}; {manifest['skipped_without_photo']} without a kept photo)"
    )
    return 0


def cmd_review_threshold(args: argparse.Namespace) -> int:
    from app.records import threshold
    from app.records.database import connect, migrate

    settings = _settings(log_level="warning")
    engine = connect(settings.resolved_database_url())
    try:
        migrate(engine)  # an older database gets the season_confidence column (null on its old rows)
        since = None if args.since is None else dt.datetime.combine(args.since, dt.time(), tzinfo=dt.UTC)
        outcomes = threshold.read_outcomes(engine, args.model_version, since, args.candidate)
    except LookupError as exc:
        print(f"garment-sorter: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        engine.dispose()
    found = threshold.report(outcomes, tuple(args.target or [threshold.DEFAULT_TARGET]))
    print(json.dumps(found, indent=2) if args.json else "\n".join(threshold.lines(found)))
    return 0


def _share_of_items(text: str) -> float:
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a share between 0 and 1 (0.01 = 1 %), got {text!r}")
    return value


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an ISO date (YYYY-MM-DD), got {text!r}") from None


class Subcommands(Protocol):
    """What ``ArgumentParser.add_subparsers()`` returns, as far as a plugin uses it."""

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser: ...


class CommandPlugin(Protocol):
    """What a ``garment_sorter.commands`` entry point names: a module with these two functions."""

    def register(self, subparsers: Subcommands) -> None: ...

    def run(self, args: argparse.Namespace, parser: argparse.ArgumentParser) -> int: ...


def _plugins() -> list[CommandPlugin]:
    plugins = []
    for entry_point in importlib.metadata.entry_points(group=PLUGIN_GROUP):
        try:
            plugins.append(entry_point.load())
        except ImportError as exc:  # declared by the package, absent here (the service image has no training/)
            logging.getLogger(__name__).debug("command plugin %s unavailable: %s", entry_point.name, exc)
    return plugins


def build_parser(with_plugins: bool) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="garment-sorter",
        description="Classify clothing photos into Fashion-MNIST classes and storage bins.",
        epilog="Service settings come from SORTER_* environment variables (docs/configuration.md).",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the HTTP service (uvicorn, one worker)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--log-level", default=None, choices=["critical", "error", "warning", "info", "debug"])
    p.add_argument(
        "--access-log", action=argparse.BooleanOptionalAction, default=None, help="overrides SORTER_ACCESS_LOG"
    )
    p.add_argument("--keep-alive-s", type=int, default=5)
    p.add_argument("--backlog", type=int, default=2048)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("classify", help="classify photos locally (no server): label, confidence, season, bin")
    p.add_argument("photos", nargs="+", metavar="PHOTO")
    p.add_argument("--as-of", type=_date, default=None, help="date for the zone (default today)")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(func=cmd_classify)

    p = sub.add_parser("dataset", help="the warehouse's reviewed photos as a training set")
    dataset = p.add_subparsers(dest="dataset_command", required=True)
    p = dataset.add_parser(
        "export",
        help="write the reviewed and audited items (28x28 inputs, originals, labels, decision ids) to a new "
        "directory, for `garment-sorter train --extra-data` (docs/decisions.md)",
    )
    p.add_argument("--since", type=_date, required=True, help="reviews from this date on (YYYY-MM-DD, UTC)")
    p.add_argument("--out", required=True, help="a directory that does not exist yet")
    p.set_defaults(func=cmd_dataset_export)

    p = sub.add_parser(
        "review-threshold",
        help="review share and wrong bins by review threshold on this warehouse's reviewed and audited items,"
        " and the lowest threshold for a wrong-bin target (docs/decisions.md)",
    )
    p.add_argument("--model-version", type=int, default=None, help="default: the newest decision's")
    p.add_argument(
        "--candidate",
        type=int,
        default=None,
        metavar="VERSION",
        help="measure this shadow candidate's answers on the same decisions' verdicts, before promoting it",
    )
    p.add_argument("--since", type=_date, default=None, help="decisions from this date on (YYYY-MM-DD, UTC)")
    p.add_argument(
        "--target",
        type=_share_of_items,
        action="append",
        help="wrong bin without review, as a share of all items (repeatable; default 0.01)",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_review_threshold)

    if with_plugins:
        for plugin in _plugins():
            before = set(sub.choices)
            plugin.register(sub)
            for name in set(sub.choices) - before:
                sub.choices[name].set_defaults(plugin=plugin)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    argv = sys.argv[1:] if argv is None else argv
    # Plugins may pull in Keras (training/); skip them for the service's own commands.
    parser = build_parser(with_plugins=not (argv and argv[0] in APP_COMMANDS))
    args = parser.parse_args(argv)
    from app.config import SettingsError
    from app.inference.model import ModelError
    from app.policy import PolicyError
    from contract.metadata import MetadataError
    from contract.versions import VersionError

    try:
        plugin: CommandPlugin | None = getattr(args, "plugin", None)
        if plugin is not None:
            return int(plugin.run(args, parser) or 0)
        return int(args.func(args) or 0)
    except (SettingsError, PolicyError, ModelError, MetadataError, VersionError) as exc:
        print(f"garment-sorter: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
