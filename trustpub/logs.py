"""Structured logging: one JSON object a line, for access, audit and service events.

Loggers: ``trustpub.access`` (one line per request), ``trustpub.audit`` (exchanges and
revocations), and module loggers under ``trustpub``. Callers pass fields through
``extra={"fields": {...}}``; nothing here ever receives a token or a JWT.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

audit_log = logging.getLogger("trustpub.audit")
access_log = logging.getLogger("trustpub.access")


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, separators=(",", ":"))


def configure(level: str = "info") -> None:
    """Send every ``trustpub`` logger to stderr as JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter())
    root = logging.getLogger("trustpub")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


def audit(event: str, **fields: Any) -> None:
    audit_log.info(event, extra={"fields": {"event": event, **fields}})
