"""Structured logging: one JSON object a line, for access, audit and service events.

Loggers: ``trustpub.access`` (one line per request), ``trustpub.audit`` (exchanges and
revocations), and module loggers under ``trustpub``. Callers pass fields through
``extra={"fields": {...}}`` (or ``log_fields``); nothing here ever receives a token or
a JWT.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import sys
import time
from typing import Any

from trustpub.jsoncodec import log_line

__all__ = ["JSONFormatter", "access_log", "audit", "audit_log", "configure", "log_fields"]

audit_log = logging.getLogger("trustpub.audit")
access_log = logging.getLogger("trustpub.access")

# The request being served (its id and client address), set by the access log
# middleware, so that audit lines name them without every caller passing them on.
request_context: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "trustpub_request_context", default=None
)

# A line is ASCII (trustpub.jsoncodec.log_line): every character, a lone surrogate
# included, is escaped, so a line can always be written to a stream of any encoding.


class JSONFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__()
        # (unix second, "YYYY-MM-DDTHH:MM:SS"): strftime once a second, not once a line.
        # Replaced as a whole tuple, so a formatter shared by threads stays consistent.
        self._second: tuple[int, str] = (-1, "")

    def _timestamp(self, created: float) -> str:
        second = int(created)
        cached = self._second
        if cached[0] != second:
            cached = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
            self._second = cached
        # Milliseconds as logging.LogRecord computes its msecs.
        return f"{cached[1]}.{int((created - second) * 1000):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        """One JSON line, whatever the record carries: a message whose arguments do not
        fit it, or fields JSON cannot hold, still give a line (saying so), never an
        error in the logging machinery."""
        try:
            msg = record.getMessage()
        except (TypeError, ValueError):
            msg = f"{record.msg!s} (unformattable arguments: {record.args!r})"
        exc = self.formatException(record.exc_info) if record.exc_info else None
        fields = getattr(record, "fields", None)
        return self.line(record.created, record.levelname, record.name, msg, fields, exc)

    def line(
        self,
        created: float,
        levelname: str,
        name: str,
        msg: str,
        fields: object,
        exc: str | None = None,
    ) -> str:
        """The line ``format`` writes for a record with these attributes."""
        entry: dict[str, Any] = {
            "ts": self._timestamp(created),
            "level": levelname.lower(),
            "logger": name,
            "msg": msg,
        }
        if isinstance(fields, dict):
            entry.update(fields)
        if exc:
            entry["exc"] = exc
        try:
            return log_line(entry)
        except Exception as error:
            # Keys that are not strings, a structure that contains itself, ...: the
            # fields are written as text instead.
            entry = {k: entry[k] for k in ("ts", "level", "logger", "msg", "exc") if k in entry}
            entry["fields"] = repr(fields)
            entry["log_error"] = f"fields not JSON: {type(error).__name__}"
            return log_line(entry)


# uvicorn's own loggers: their lines are JSON too. Its access log is off (ours has the
# fields), and its error log keeps warnings and worse: start and stop lines at info come
# from trustpub.server instead.
_SERVER_LOGGERS = {"uvicorn": "WARNING", "uvicorn.error": "WARNING", "uvicorn.access": "WARNING"}


class _JSONHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler ``configure`` installs (a class of its own, to find it again).

    On an event loop's thread, the lines of one turn of the loop are written together
    at its end: one write for the access and audit lines of every request answered in
    that turn, where each line was a write of its own (``bench/run``: 7 % of an
    exchange's CPU). A line logged before a response is written before that response
    leaves (the connection's writes wait for the end of the turn too, after this
    one's). Lines from other threads, or with no loop running, are written at once,
    after any that wait. ``flush`` (as at exit) writes what waits.
    """

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._waiting: list[str] = []
        self._waiting_loop: asyncio.AbstractEventLoop | None = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._put(self.format(record) + self.terminator)
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)

    def write_fields(self, name: str, level: int, msg: str, fields: dict[str, Any]) -> None:
        """Write the line ``emit`` would write for ``log_fields``'s record, without the
        record: the same formatter, stream, lock and error handling."""
        formatter = self.formatter
        if not isinstance(formatter, JSONFormatter):
            self.handle(_record(name, level, msg, fields))
            return
        try:
            line = formatter.line(time.time(), logging.getLevelName(level), name, msg, fields)
            self._put(line + self.terminator)
        except RecursionError:
            raise
        except Exception:
            self.handleError(_record(name, level, msg, fields))

    def _put(self, line: str) -> None:
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        with self.lock or contextlib.nullcontext():
            if loop is not None and loop is self._waiting_loop:
                self._waiting.append(line)
                return
            self._write_waiting()
            if loop is None:
                self.stream.write(line)
                self.stream.flush()
                return
            self._waiting.append(line)
            self._waiting_loop = loop
        loop.call_soon(self._flush_soon)

    def _flush_soon(self) -> None:
        try:
            self.flush()
        except Exception:
            # Reported as logging reports a failed emit (on sys.stderr, not through a
            # logger: that would come back here); the lines that waited are lost.
            self.handleError(logging.makeLogRecord({"msg": "log lines not written"}))

    def _write_waiting(self) -> None:
        """With the lock held: write the lines that wait, if any."""
        if self._waiting:
            lines, self._waiting, self._waiting_loop = self._waiting, [], None
            self.stream.write("".join(lines))
            self.stream.flush()

    def flush(self) -> None:
        with self.lock or contextlib.nullcontext():
            try:
                self._write_waiting()
            except Exception:
                self._waiting, self._waiting_loop = [], None
                raise
            if self.stream and hasattr(self.stream, "flush"):
                self.stream.flush()


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
    caller's file and line, which a JSON line never shows. When the one handler the
    record would reach is ours, unfiltered, no record is made at all: the line is
    formatted and written as that handler would (about a third of a line's cost, and a
    line is written for every request: bench/RESULTS.md).
    """
    if not logger.isEnabledFor(level):
        return
    handler = _sole_json_handler(logger, level)
    if handler is not None:
        handler.write_fields(logger.name, level, msg, fields)
    elif not logger.disabled:
        logger.handle(_record(logger.name, level, msg, fields, logger))


def _record(
    name: str,
    level: int,
    msg: str,
    fields: dict[str, Any],
    logger: logging.Logger | None = None,
) -> logging.LogRecord:
    maker = logger or logging.getLogger(name)
    return maker.makeRecord(
        name, level, "(unknown file)", 0, msg, (), None, None, {"fields": fields}
    )


def _sole_json_handler(logger: logging.Logger, level: int) -> _JSONHandler | None:
    """Our handler, when a record of ``logger`` at ``level`` would reach it and no other
    handler, and no filter could stop or change it on the way."""
    found: _JSONHandler | None = None
    current: logging.Logger | None = logger
    while current is not None:
        if current.filters or current.disabled:
            return None
        for handler in current.handlers:
            if found is not None or type(handler) is not _JSONHandler or handler.filters:
                return None
            if level < handler.level:
                return None
            found = handler
        if not current.propagate:
            break
        current = current.parent
    return found


def audit(event: str, **fields: Any) -> None:
    log_fields(
        audit_log, logging.INFO, event, {"event": event, **(request_context.get() or {}), **fields}
    )
