"""`garment-sorter`: serve | classify | bench, plus the training subcommands when installed.

Configuration errors (settings, policy file, model directory) end in one line on stderr and
exit code 2 before anything starts.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

EXIT_USAGE = 2
EXIT_STARTUP_FAILURE = 3
APP_COMMANDS = {"serve", "classify", "bench"}


def _settings(**overrides: Any):
    from app.config import load_settings

    return load_settings(**{k: v for k, v in overrides.items() if v is not None})


def _preflight(settings: Any) -> None:
    """Check policy and model metadata before the slow TensorFlow import (the app checks again)."""
    if settings.model_backend == "null":
        from app.model import NULL_CLASS_NAMES

        names, threshold = NULL_CLASS_NAMES, None
    else:
        from app.model import find_version, read_metadata

        metadata = read_metadata(find_version(settings.resolved_model_dir()))
        names, threshold = metadata["class_names"], metadata.get("review_threshold")
    from app.policy import load_policy

    load_policy(
        settings.policy_file,
        names,
        metadata_review_threshold=threshold,
        review_threshold_override=settings.review_threshold,
        hemisphere_override=settings.hemisphere,
    )


UVICORN_SHUTDOWN_GRACE_S = 1


# The multipart parser warns once per malformed body; the client already gets a 400 with the
# reason and the rejection is counted, so those lines would only let any client flood the log.
QUIET_LOGGERS = ("python_multipart", "python_multipart.multipart")


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.ERROR, logging.getLogger().level))


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from app.main import create_app
    from app.protocol import bounded_head_protocol

    settings = _settings(log_level=args.log_level)
    _preflight(settings)
    _configure_logging(settings.log_level)
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        http=bounded_head_protocol(settings.max_header_bytes, app.state.service.count_rejection),
        host=args.host,
        port=args.port,
        workers=1,  # the batcher needs every request in one process
        log_level=settings.log_level,
        access_log=args.access_log,
        # Our SIGTERM drain already waited up to SORTER_DRAIN_TIMEOUT_S for accepted work; uvicorn
        # only has to close what is left, so the whole exit stays within the drain budget.
        timeout_graceful_shutdown=UVICORN_SHUTDOWN_GRACE_S,
        timeout_keep_alive=args.keep_alive_s,
        backlog=args.backlog,
    )
    server = uvicorn.Server(config)
    server.run()
    return 0 if server.started else EXIT_STARTUP_FAILURE


def cmd_classify(args: argparse.Namespace) -> int:
    import numpy as np

    from app import preprocess
    from app.errors import ApiError
    from app.model import load_model
    from app.policy import load_policy

    settings = _settings(log_level="warning")
    _preflight(settings)
    model = load_model(settings)
    policy = load_policy(
        settings.policy_file,
        model.class_names,
        metadata_review_threshold=model.review_threshold,
        review_threshold_override=settings.review_threshold,
        hemisphere_override=settings.hemisphere,
    )
    on = args.as_of or dt.date.today()
    images: list[np.ndarray] = []
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
        probabilities = model.predict(np.stack(images[start : start + step]))
        for path, row in zip(paths[start : start + step], probabilities, strict=True):
            class_id = int(np.argmax(row))
            decision = policy.decide(row, on)
            record = {
                "file": path,
                "label": model.class_names[class_id],
                "confidence": round(float(row[class_id]), 4),
                "season": decision.season,
                "bin": decision.bin,
                "zone": decision.zone,
                "needs_review": decision.needs_review,
            }
            if args.json:
                print(json.dumps(record))
            else:
                review = "  (needs review)" if decision.needs_review else ""
                print(
                    f"{path}\t{record['label']}\t{record['confidence']:.4f}\t{decision.season}\t{decision.bin}{review}"
                )
    return 1 if failures else 0


def cmd_bench(args: argparse.Namespace) -> int:
    from app import bench

    return bench.run(args)


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an ISO date (YYYY-MM-DD), got {text!r}") from None


def build_parser(with_training: bool) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="garment-sorter",
        description="Classify clothing photos into Fashion-MNIST classes and storage bins.",
        epilog="Service settings come from SORTER_* environment variables (see README).",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the HTTP service (uvicorn, one worker)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--log-level", default=None, choices=["critical", "error", "warning", "info", "debug"])
    p.add_argument("--access-log", action=argparse.BooleanOptionalAction, default=False)
    p.add_argument("--keep-alive-s", type=int, default=5)
    p.add_argument("--backlog", type=int, default=2048)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("classify", help="classify photos locally (no server): label, confidence, season, bin")
    p.add_argument("photos", nargs="+", metavar="PHOTO")
    p.add_argument("--as-of", type=_date, default=None, help="date for the zone (default today)")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(func=cmd_classify)

    from app import bench

    bench.add_parser(sub)

    if with_training:
        try:
            from training import cli as training_cli
        except ImportError:  # the service runs without the training extras
            training_cli = None
        if training_cli is not None:
            training_cli.register(sub)
            parser.set_defaults(_training_cli=training_cli)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    argv = sys.argv[1:] if argv is None else argv
    # Importing the training package pulls in Keras; skip it for the service's own commands.
    with_training = not (argv and argv[0] in APP_COMMANDS)
    parser = build_parser(with_training)
    args = parser.parse_args(argv)
    from app.config import SettingsError
    from app.model import ModelError
    from app.policy import PolicyError

    try:
        if args.command not in APP_COMMANDS:
            training_cli = getattr(args, "_training_cli", None)
            run = getattr(training_cli, "run", None)
            if run is not None:
                return int(run(args, parser) or 0)
        return int(args.func(args) or 0)
    except (SettingsError, PolicyError, ModelError) as exc:
        print(f"garment-sorter: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
