"""Log lines: text for a developer's terminal, or one JSON object per line for machines
(`SORTER_LOG_FORMAT`); every line written while a request is served carries its request id.

The request id is the caller's `X-Request-ID` when it is a safe token (letters, digits and
`._:-`, at most 128 characters), else one generated here; the answer echoes it in its own
`X-Request-ID` header, so a scanner's log and ours meet on it.

With traces on (app.tracing), a line written inside a traced request also carries its
`trace_id`, so a log line and its trace are one search apart.

TensorFlow's C++ runtime writes a few lines of its own straight to stderr at start-up (the
`I0000 ...` lines); they bypass Python's logging and stay text.
"""

from __future__ import annotations

import contextvars
import logging
import re
import sys
import uuid
from collections.abc import Callable
from typing import Any, TextIO

from pythonjsonlogger.json import JsonFormatter

REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
# What the routes learn while serving a request (caller, decision id, model version) for its access
# line: one dict per request, filled in place, so it is seen from threads the request's context
# was copied into.
REQUEST_NOTES: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("request_notes", default=None)
ACCESS_LOGGER = "garment_sorter.access"
ACCESS_FIELDS = ("caller", "decision_id", "model_version", "items")
SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Multipart parsing warns once per malformed body; the client already gets a 400 with the reason
# and the rejection is counted, so those lines would only let any client flood the log.
QUIET_LOGGERS = ("python_multipart", "python_multipart.multipart")


# Set by app.tracing while traces are exported; None (the default) costs a log line one check.
_trace_id: Callable[[], str | None] | None = None


def trace_ids(current: Callable[[], str | None] | None) -> None:
    """Have every log record carry ``trace_id`` from ``current`` (None: stop)."""
    global _trace_id
    _trace_id = current


def request_id_from(header: str | None) -> str:
    """The caller's id when it is safe to log and echo, else a new one."""
    if header is not None and SAFE_REQUEST_ID.fullmatch(header):
        return header
    return uuid.uuid4().hex


def note(**fields: Any) -> None:
    """Adds fields to the access line of the request being served (nothing outside a request)."""
    notes = REQUEST_NOTES.get()
    if notes is not None:
        notes.update(fields)


def log_access(method: str, route: str, status: int, duration_s: float, notes: dict[str, Any]) -> None:
    """One line per answered request. Text shows the fields in the message; JSON also has each as a key."""
    logger = logging.getLogger(ACCESS_LOGGER)
    if not logger.isEnabledFor(logging.INFO):
        return
    fields = {name: notes[name] for name in ACCESS_FIELDS if notes.get(name) is not None}
    shown = "".join(f" {name}={value}" for name, value in fields.items())
    duration_ms = round(duration_s * 1000, 2)
    logger.info(
        f"{method} {route} {status} {duration_ms} ms{shown}",
        extra={"method": method, "route": route, "status": status, "duration_ms": duration_ms, **fields},
    )


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` (None outside a request) to every record, and ``trace_id`` while traces are on."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        if _trace_id is not None:
            record.trace_id = _trace_id()
        record.__dict__.pop("color_message", None)  # uvicorn's copy of the message with terminal colours
        return True


def configure_logging(level: str, log_format: str = "text", stream: TextIO | None = None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(RequestIdFilter())
    if log_format == "json":
        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
                timestamp=False,
            )
        )
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.ERROR, root.level))
