"""``garment-sorter-client classify``: photos to the service, one line per photo.

    garment-sorter-client classify --url http://sorter:8000 --item-id SKU-1 --item-id SKU-2 a.jpg b.jpg

Each photo is one POST /classify (``--batch``: all in one POST /classify/batch). A line says the
label and its confidence, the season, the bin, whether the item goes to review and why, and the
decision id; ``--json`` prints one JSON object per photo instead (file, item_id, result, error).

Exit codes:
  0  every photo was classified (whether or not it goes to review)
  1  the service refused at least one photo (its line says why); the others were still sent
  2  usage: a bad argument, or a photo that cannot be read (nothing is sent)
  3  stopped: the service could not be reached or timed out, was unavailable (503) after the
     retries, refused the API key (401/403), or answered something that is not its API
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from contract.api import BatchItemError, ClassifyResponse
from garment_sorter_client.calls import DEFAULT_CONNECT_TIMEOUT_S, DEFAULT_READ_TIMEOUT_S, UNEXPECTED, __version__
from garment_sorter_client.client import Client
from garment_sorter_client.errors import ApiError, SorterError
from garment_sorter_client.retry import RetryPolicy

URL_ENV = "GARMENT_SORTER_URL"
API_KEY_ENV = "GARMENT_SORTER_API_KEY"
CLASSIFIED, REFUSED, USAGE, STOPPED = 0, 1, 2, 3
# Answers that no other photo would get past either: stop instead of sending the rest.
STOP_STATUSES = frozenset({401, 403, 503})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="garment-sorter-client", description="Client of the garment-sorter service")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    classify = commands.add_parser(
        "classify",
        help="classify photos: label, confidence, season, bin, review, decision id",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    classify.add_argument("photos", nargs="+", metavar="PHOTO", type=Path, help="JPEG, PNG, WebP, GIF, BMP or TIFF")
    classify.add_argument("--url", default=os.environ.get(URL_ENV), help=f"the service's base URL (env {URL_ENV})")
    classify.add_argument(
        "--api-key",
        default=os.environ.get(API_KEY_ENV),
        help=f"sent as X-API-Key (env {API_KEY_ENV}; the variable keeps it out of the process list)",
    )
    classify.add_argument(
        "--item-id", action="append", dest="item_ids", metavar="ID", help="one per photo, in the photos' order"
    )
    classify.add_argument("--top-k", type=int, metavar="N", help="classes in top_k, 1-10 (default: the service's)")
    classify.add_argument("--as-of", metavar="YYYY-MM-DD", help="the date the zone is decided for (default: today)")
    classify.add_argument("--batch", action="store_true", help="send every photo in one POST /classify/batch")
    classify.add_argument("--raw", action="store_true", help="send each photo as the raw body, not a multipart form")
    classify.add_argument("--json", action="store_true", help="one JSON object per photo")
    classify.add_argument(
        "--connect-timeout",
        type=float,
        default=DEFAULT_CONNECT_TIMEOUT_S,
        metavar="S",
        help="connect timeout (default %(default)g s)",
    )
    classify.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_READ_TIMEOUT_S,
        metavar="S",
        help="read timeout (default %(default)g s)",
    )
    classify.add_argument(
        "--max-attempts",
        type=int,
        default=RetryPolicy.max_attempts,
        metavar="N",
        help="tries per request (default %(default)d)",
    )
    classify.add_argument("-v", "--verbose", action="store_true", help="log every retry on stderr")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.url:
        parser.error(f"--url (or {URL_ENV}) is required")
    if args.item_ids is not None and len(args.item_ids) != len(args.photos):
        parser.error(f"{len(args.item_ids)} --item-id for {len(args.photos)} photos: give one per photo, or none")
    if args.batch and args.raw:
        parser.error("--raw sends one photo per request; it cannot be used with --batch")
    try:
        retry = RetryPolicy(max_attempts=args.max_attempts)
    except ValueError as exc:
        parser.error(str(exc))
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    unreadable = [str(path) for path in args.photos if not os.access(path, os.R_OK) or not path.is_file()]
    if unreadable:
        print(f"garment-sorter-client: cannot read {', '.join(unreadable)}", file=sys.stderr)
        return USAGE
    item_ids: list[str | None] = list(args.item_ids) if args.item_ids else [None] * len(args.photos)
    printer = Printer(sys.stdout, as_json=args.json)
    options: dict[str, Any] = {"top_k": args.top_k, "as_of": args.as_of}
    try:
        with Client(
            args.url,
            api_key=args.api_key,
            connect_timeout_s=args.connect_timeout,
            read_timeout_s=args.timeout,
            retry=retry,
        ) as client:
            if args.batch:
                return _batch(client, args.photos, item_ids, options, printer)
            return _one_by_one(client, args.photos, item_ids, {**options, "raw": args.raw}, printer)
    except OSError as exc:  # a photo that went away after the check
        print(f"garment-sorter-client: {exc}", file=sys.stderr)
        return USAGE
    except ValueError as exc:  # an argument the client refuses before sending (a non-ASCII item id with --raw)
        print(f"garment-sorter-client: {exc}", file=sys.stderr)
        return USAGE


def _one_by_one(
    client: Client, photos: list[Path], item_ids: list[str | None], options: dict[str, Any], printer: Printer
) -> int:
    status = CLASSIFIED
    for path, item_id in zip(photos, item_ids, strict=True):
        try:
            printer.result(path, item_id, client.classify(path, item_id=item_id, **options))
        except ApiError as exc:
            printer.error(path, item_id, exc.status, exc.code, exc.detail, exc.request_id)
            if exc.status in STOP_STATUSES:
                return STOPPED
            status = REFUSED
        except SorterError as exc:
            print(f"garment-sorter-client: {exc}", file=sys.stderr)
            return STOPPED
    return status


def _batch(
    client: Client, photos: list[Path], item_ids: list[str | None], options: dict[str, Any], printer: Printer
) -> int:
    ids = item_ids if any(i is not None for i in item_ids) else None
    try:
        answer = client.classify_batch(photos, item_ids=ids, **options)
    except ApiError as exc:
        for path, item_id in zip(photos, item_ids, strict=True):
            printer.error(path, item_id, exc.status, exc.code, exc.detail, exc.request_id)
        return STOPPED if exc.status in STOP_STATUSES else REFUSED
    except SorterError as exc:
        print(f"garment-sorter-client: {exc}", file=sys.stderr)
        return STOPPED
    for entry in answer.results:
        path, item_id = photos[entry.index], item_ids[entry.index]
        if entry.result is not None:
            printer.result(path, item_id, entry.result)
        else:
            error = entry.error or BatchItemError(status=0, code=UNEXPECTED, detail="neither a result nor an error")
            printer.error(path, item_id, error.status, error.code, error.detail, error.request_id)
    return REFUSED if answer.failed else CLASSIFIED


class Printer:
    """One line per photo: text for people, or a JSON object per line."""

    def __init__(self, out: TextIO, *, as_json: bool) -> None:
        self.out = out
        self.as_json = as_json

    def result(self, path: Path, item_id: str | None, answer: ClassifyResponse) -> None:
        if self.as_json:
            self._json(path, item_id, answer.model_dump(mode="json"), None)
            return
        review = f"needs review ({', '.join(answer.review_reasons)})" if answer.needs_review else "sorted"
        self._line(
            path,
            item_id,
            f"{answer.label} {answer.confidence:.3f}, season {answer.season}, bin {answer.bin}, {review}, "
            f"decision {answer.decision_id}",
        )

    def error(
        self, path: Path, item_id: str | None, status: int, code: str, detail: str, request_id: str | None
    ) -> None:
        if self.as_json:
            error = {"status": status, "code": code, "detail": detail, "request_id": request_id}
            self._json(path, item_id, None, error)
            return
        self._line(path, item_id, f"error {status} {code}: {detail} (request id {request_id})")

    def _line(self, path: Path, item_id: str | None, text: str) -> None:
        name = str(path) if item_id is None else f"{path} [{item_id}]"
        print(f"{name}: {text}", file=self.out, flush=True)

    def _json(self, path: Path, item_id: str | None, result: Any, error: Any) -> None:
        line = {"file": str(path), "item_id": item_id, "result": result, "error": error}
        print(json.dumps(line, ensure_ascii=False), file=self.out, flush=True)
