"""Times on the wire: RFC 3339 in UTC, whole seconds, ``Z`` suffix."""

from __future__ import annotations

import time


def rfc3339(timestamp: int) -> str:
    """``2026-02-01T10:25:59Z`` for a unix timestamp (the form crates.io writes)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))
