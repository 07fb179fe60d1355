"""Structured logging: one JSON object a line, for access, audit and service events.

Loggers: ``trustpub.access`` (one line per request), ``trustpub.audit`` (exchanges and
revocations), and module loggers under ``trustpub``. Callers pass fields through
``extra={"fields": {...}}`` (or ``log_fields``); nothing here ever receives a token or
a JWT.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from typing import Any

__all__ = ["JSONFormatter", "access_log", "audit", "audit_log", "configure", "log_fields"]

audit_log = logging.getLogger("trustpub.audit")
access_log = logging.getLogger("trustpub.access")

# The request being served (its id and client address), set by the access log
# middleware, so that audit lines name them without every caller passing them on.
request_context: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "trustpub_request_context", default=None
)

# Built once: json.dumps with any option constructs a new encoder on every call.
# ensure_ascii (the default) writes every character, a lone surrogate included, as
# ASCII: a line can always be written to a stream of any encoding.
_ENCODER = json.JSONEncoder(default=str, separators=(",", ":"))


class JSONFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__()
        # (unix second, "YYYY-MM-DDTHH:MM:SS"): strftime once a second, not once a line.
        # Replaced as a whole tuple, so a formatter shared by threads stays consistent.
        self._second: tuple[int, str] = (-1, "")

    def _timestamp(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        cached = self._second
        if cached[0] != second:
            cached = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
            self._second = cached
        return f"{cached[1]}.{int(record.msecs):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        """One JSON line, whatever the record carries: a message whose arguments do not
        fit it, or fields JSON cannot hold, still give a line (saying so), never an
        error in the logging machinery."""
        try:
            msg = record.getMessage()
        except (TypeError, ValueError):
            msg = f"{record.msg!s} (unformattable arguments: {record.args!r})"
        entry: dict[str, Any] = {
            "ts": self._timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": msg,
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        try:
            return _ENCODER.encode(entry)
        except Exception as exc:
            # Keys that are not strings, a structure that contains itself, ...: the
            # fields are written as text instead.
            entry = {k: entry[k] for k in ("ts", "level", "logger", "msg", "exc") if k in entry}
            entry["fields"] = repr(fields)
            entry["log_error"] = f"fields not JSON: {type(exc).__name__}"
            return _ENCODER.encode(entry)


# uvicorn's own loggers: their lines are JSON too. Its access log is off (ours has the
# fields), and its error log keeps warnings and worse: start and stop lines at info come
# from trustpub.server instead.
_SERVER_LOGGERS = {"uvicorn": "WARNING", "uvicorn.error": "WARNING", "uvicorn.access": "WARNING"}


class _JSONHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler ``configure`` installs (a class of its own, to find it again)."""


def configure(level: str = "info") -> None:
    """Send every log line of the process to stderr as JSON: ``trustpub``'s loggers at
    ``level``, uvicorn's, asyncio's and any library's (through the root logger) too."""
    # A line names no thread or process (the access line carries the worker's pid
    # itself): the record need not look them up, on every line.
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = _JSONHandler(sys.stderr)
    handler.setFormatter(JSONFormatter())
    root = logging.getLogger("trustpub")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
    for name, floor in _SERVER_LOGGERS.items():
        server_logger = logging.getLogger(name)
        server_logger.handlers[:] = []
        server_logger.propagate = True
        server_logger.setLevel(max(logging.getLevelName(floor), root.level))
    # Everything else (uvicorn, asyncio, httpx, redis) reaches the root logger.
    # Ours replaces the previous one of ours; handlers others added (pytest's) stay.
    others = [h for h in logging.root.handlers if not isinstance(h, _JSONHandler)]
    logging.root.handlers[:] = [*others, handler]
    logging.root.setLevel(max(logging.WARNING, root.level))
    logging.captureWarnings(True)


def log_fields(logger: logging.Logger, level: int, msg: str, fields: dict[str, Any]) -> None:
    """``logger.log(level, msg, extra={"fields": fields})``, for lines on every request.

    The record is made directly: ``Logger.log`` would first walk the stack for the
    caller's file and line, which a JSON line never shows.
    """
    if logger.isEnabledFor(level):
        logger.handle(
            logger.makeRecord(
                logger.name, level, "(unknown file)", 0, msg, (), None, None, {"fields": fields}
            )
        )


def audit(event: str, **fields: Any) -> None:
    log_fields(
        audit_log, logging.INFO, event, {"event": event, **(request_context.get() or {}), **fields}
    )
