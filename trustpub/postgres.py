"""What the PostgreSQL registry engine and the PostgreSQL token store share: which
URLs name PostgreSQL, and how a server is named in messages (never with its password)."""

from __future__ import annotations

import psycopg
import psycopg.conninfo

SCHEMES = ("postgresql", "postgres")


def is_postgresql_url(location: str) -> bool:
    """True for ``postgresql://…`` and ``postgres://…`` (libpq's URL schemes)."""
    scheme, sep, _ = location.partition("://")
    return bool(sep) and scheme.lower() in SCHEMES


def safe_location(url: str) -> str:
    """``postgresql HOST:PORT/DB`` for ``url``, for messages and logs."""
    try:
        params = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "postgresql (unparsable URL)"
    host = params.get("host") or "localhost"
    port = params.get("port") or "5432"
    return f"postgresql {host}:{port}/{params.get('dbname') or '?'}"
