"""Stores: where issued tokens, claimed JWT ids and GitLab namespace pins live.

``open_store(url)`` picks the backend from the configured URL:

    redis://[user:password@]host:port/db?prefix=trustpub:   RedisStore (also rediss://)
    postgresql://user@host:port/db   PostgreSQLStore (also postgres://; libpq's URL)
    sqlite:///relative/path.db    SQLiteStore, path relative to the working directory
    sqlite:////absolute/path.db   SQLiteStore, absolute path (four slashes)
    /plain/path.db or path.db     SQLiteStore
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from trustpub.errors import ConfigurationError, StoreUnavailable
from trustpub.postgres import is_postgresql_url
from trustpub.store.base import NamespacePins, Store, StoreNotDurable
from trustpub.store.postgresql import PostgreSQLStore
from trustpub.store.redis import DEFAULT_PREFIX, RedisStore
from trustpub.store.sqlite import SQLiteStore

__all__ = [
    "NamespacePins",
    "PostgreSQLStore",
    "RedisStore",
    "SQLiteStore",
    "Store",
    "StoreNotDurable",
    "check_store",
    "open_store",
]

_SQLITE_SCHEME = "sqlite:///"


def open_store(url: str) -> Store:
    """The store ``url`` names. No I/O happens here: call ``await store.ping()`` to check it.

    Raises ``ConfigurationError`` for a URL no backend understands. Messages never
    repeat the URL itself, which may carry a Redis password.
    """
    if not url or not url.strip():
        raise ConfigurationError("store: empty store URL (expected redis://… or a SQLite path)")
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme in ("redis", "rediss"):
        return _open_redis(url)
    if is_postgresql_url(url):
        return PostgreSQLStore(url)
    if scheme == "sqlite":
        if not url.startswith(_SQLITE_SCHEME) or len(url) == len(_SQLITE_SCHEME):
            raise ConfigurationError(
                "store: invalid SQLite URL: expected sqlite:///relative/path.db or "
                "sqlite:////absolute/path.db"
            )
        path = url[len(_SQLITE_SCHEME) :]
        if "?" in path or "#" in path:
            raise ConfigurationError("store: SQLite URLs take no query or fragment")
        return _open_sqlite(path)
    if scheme:
        raise ConfigurationError(
            f"store: unsupported store URL scheme {scheme!r} "
            "(expected redis://, rediss://, postgresql://, sqlite:/// or a file path)"
        )
    return _open_sqlite(url)


async def check_store(url: str) -> None:
    """Start-up check of the store ``url`` names, before any worker starts.

    Raises ``ConfigurationError`` for a URL no backend understands, and
    ``StoreNotDurable`` for a Redis that would forget used JWTs on restart (one line
    naming the fix). A store that cannot be reached now is not an error: the service
    starts, answers 503 until it returns, and checks it again then.
    """
    store = open_store(url)
    try:
        await store.ping()
    except StoreUnavailable:
        pass
    finally:
        await store.aclose()


def _open_sqlite(path: str) -> SQLiteStore:
    if path == ":memory:" or path.startswith("file:"):
        raise ConfigurationError(
            "store: the SQLite store needs a file path shared by every worker process"
        )
    return SQLiteStore(path)


def _open_redis(url: str) -> RedisStore:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    prefixes = [value for key, value in query if key == "prefix"]
    if len(prefixes) > 1:
        raise ConfigurationError("store: the redis URL names `prefix` more than once")
    prefix = prefixes[0] if prefixes else DEFAULT_PREFIX
    if not prefix:
        raise ConfigurationError("store: the redis key prefix must not be empty")
    # redis-py would reject `prefix` as an unknown connection option: strip it.
    rest = urlencode([(key, value) for key, value in query if key != "prefix"])
    return RedisStore.from_url(urlunsplit(parts._replace(query=rest)), prefix=prefix)
