"""The PostgreSQL engine: the registry's data shared by any number of trustpub replicas.

Through psycopg 3 and its connection pool (``psycopg_pool``): the registry's database
calls are blocking and run in worker threads, so the synchronous API fits; the pool
hands each call its own connection, so reads run in parallel.

The queries and writes are the SQLite engine's, unchanged. To make that possible:

- placeholders: the SQL is written with ``?``; ``translate`` turns each one outside
  string literals and quoted identifiers into ``$1``, ``$2``, ... and the statement is
  sent through psycopg's ``RawCursor`` (server-side parameters), so a ``%`` in the
  SQL is only a ``%``;
- rows read by name and by position, as ``sqlite3.Row`` does (``Row``);
- transactions serialise writers as SQLite's ``BEGIN IMMEDIATE`` does: each write
  transaction first takes one transaction-level advisory lock, so a check inside it
  sees the state it changes, on every replica (the writes were written for that
  rule; publishes are rare and short, and the benchmark in bench/ measures the cost).
  Reads take no lock: each statement sees the latest committed data;
- migrations: the same ordered list, run by ``schema.migrate`` under the same lock
  (several replicas starting at once migrate once); a migration's statements are
  ``schema.postgresql_statements`` (its variant, or its portable SQL translated);
  the version is kept in the table ``trustpub_schema``.

Every psycopg failure becomes ``StorageUnavailable``, naming the server but never
the password (``location``). A lost connection is dropped by the pool, so the next
call starts on a fresh one.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import psycopg
from psycopg.rows import RowMaker
from psycopg_pool import ConnectionPool, PoolTimeout

from trustpub.postgres import safe_location
from trustpub.registry.db.errors import CommitFailed, StorageFull, StorageUnavailable
from trustpub.registry.db.queries import Connection, Cursor
from trustpub.registry.db.schema import (
    SQLITE_MIGRATIONS,
    Migration,
    SchemaTooNew,
    migrate,
    postgresql_statements,
)

log = logging.getLogger("trustpub.registry")

T = TypeVar("T")

DEFAULT_POOL_SIZE = 8
# Any number, the same for every trustpub: the one lock every write transaction takes.
WRITER_LOCK = 0x7472757374707562  # "trustpub"
VERSION_TABLE = "trustpub_schema"

# String literals and quoted identifiers, kept as they are; ``?`` elsewhere.
_TOKENS = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|\?")


@functools.lru_cache(maxsize=512)
def translate(sql: str) -> str:
    """``sql`` with its ``?`` placeholders numbered as PostgreSQL's ``$n``."""
    count = 0

    def number(match: re.Match[str]) -> str:
        nonlocal count
        if match.group(0) != "?":
            return match.group(0)
        count += 1
        return f"${count}"

    return _TOKENS.sub(number, sql)


class Row(tuple[Any, ...]):
    """A row read by position or by column name, as ``sqlite3.Row`` is."""

    _names: dict[str, int]

    def __new__(cls, values: Sequence[Any], names: dict[str, int]) -> Row:
        row = super().__new__(cls, values)
        row._names = names
        return row

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return super().__getitem__(self._names[key])
        return super().__getitem__(key)

    def keys(self) -> list[str]:
        return list(self._names)


def _row_factory(cursor: Any) -> RowMaker[Row]:
    names = {d.name: i for i, d in enumerate(cursor.description or ())}
    return lambda values: Row(values, names)


class _Connection:
    """A pooled connection speaking the queries' dialect (``queries.Connection``)."""

    def __init__(self, conn: psycopg.Connection[Row]) -> None:
        self.raw = conn

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Cursor:
        cursor = psycopg.RawCursor(self.raw, row_factory=_row_factory)
        cursor.execute(translate(sql), tuple(parameters))
        return cursor


class PostgreSQLEngine:
    """Connections (a pool), transactions and failure handling for one PostgreSQL
    database. ``url`` is a libpq URL (``postgresql://USER@HOST:PORT/DB``)."""

    def __init__(
        self,
        url: str,
        *,
        lock_timeout: float = 5.0,
        connect_timeout: float = 5.0,
        pool_size: int = DEFAULT_POOL_SIZE,
        migrations: tuple[Migration, ...] = SQLITE_MIGRATIONS,
    ) -> None:
        self.url = url
        self.location = safe_location(url)
        self._lock_timeout = lock_timeout
        self._connect_timeout = connect_timeout
        self._pool_size = pool_size
        self._migrations = migrations
        self._pool: ConnectionPool[psycopg.Connection[Any]] | None = None
        self._pool_lock = threading.Lock()
        self._loop_reads = _LoopReads(self)

    # -- lifecycle ---------------------------------------------------------------------

    def open(self) -> None:
        """Migrate the database (created by its operator) and check it can be written."""
        self.run(self._migrate)
        self.check_writable()

    def close(self) -> None:
        self._loop_reads.close()
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    def run(self, fn: Callable[[_Connection], T]) -> T:
        """Run ``fn`` with a pooled connection; failures raise ``StorageUnavailable``."""
        try:
            with self._get_pool().connection(timeout=self._connect_timeout) as raw:
                return fn(_Connection(raw))
        except StorageUnavailable:
            raise
        except PoolTimeout as exc:
            raise self._failure(f"no connection within {self._connect_timeout:g} s", exc) from exc
        except psycopg.Error as exc:
            raise self._failure(_describe(exc), exc) from exc

    def read_now(self, sql: str, params: tuple[Any, ...]) -> list[Any] | None:
        """Never: every read is a round trip to the server (``read_async``)."""
        return None

    async def read_async(self, sql: str, params: tuple[Any, ...]) -> list[Any] | None:
        """The rows of a small read, on the event loop through a connection of psycopg's
        async API kept for these reads (``_LoopReads``); failures raise
        ``StorageUnavailable``."""
        return await self._loop_reads.read(sql, params)

    def check_writable(self) -> None:
        """Raise ``StorageUnavailable`` unless the writer lock can be taken and a write
        made now (a read-only standby refuses the lock's transaction)."""

        def check(conn: _Connection) -> None:
            with self.transaction(conn):
                conn.execute("SELECT 1 FROM users LIMIT 1").fetchall()

        self.run(check)

    @contextmanager
    def transaction(self, conn: Connection) -> Iterator[None]:
        """A write transaction holding the writer lock from its start (released by
        COMMIT or ROLLBACK, or by the server when the connection is lost).

        A failed COMMIT raises ``CommitFailed``: the connection may have dropped after
        the server committed and before its answer arrived, so the outcome is unknown
        to us and must be read back (under this lock, which the server releases only
        once the failed transaction has ended one way or the other)."""
        raw = _raw(conn)
        committing = False
        try:
            with raw.transaction():
                # A read-only transaction (a standby) cannot write: refuse up front.
                raw.execute("SET TRANSACTION READ WRITE")
                raw.execute("SELECT pg_advisory_xact_lock(%s)", (WRITER_LOCK,))
                yield
                committing = True  # leaving the block without an error sends COMMIT
        except psycopg.Error as exc:
            if committing:
                raise CommitFailed(self._failure(f"COMMIT failed: {_describe(exc)}", exc)) from exc
            raise

    # -- schema version (VersionKeeper) -------------------------------------------------

    def read_version(self, conn: Connection) -> int:
        raw = _raw(conn)
        # A catalog query, not to_regclass(): its cache may not yet show a table that
        # another replica's migration just committed (the advisory lock we waited on
        # does not refresh it), and the migration would then run twice.
        found = raw.execute(
            "SELECT 1 FROM pg_catalog.pg_tables"
            " WHERE schemaname = current_schema() AND tablename = %s",
            (VERSION_TABLE,),
        ).fetchone()
        if found is None:
            return 0
        row = raw.execute(f"SELECT version FROM {VERSION_TABLE}").fetchone()  # noqa: S608
        return int(row[0]) if row is not None else 0

    def write_version(self, conn: Connection, version: int) -> None:
        raw = _raw(conn)
        raw.execute(
            f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} ("
            " only_row BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (only_row),"
            " version BIGINT NOT NULL)"
        )
        raw.execute(
            f"INSERT INTO {VERSION_TABLE} (version) VALUES (%s)"  # noqa: S608
            " ON CONFLICT (only_row) DO UPDATE SET version = EXCLUDED.version",
            (int(version),),
        )

    # -- internals ----------------------------------------------------------------------

    def _migrate(self, conn: _Connection) -> None:
        found = self.read_version(conn)
        if found > len(self._migrations):
            raise SchemaTooNew(found, len(self._migrations))
        pg = tuple(
            Migration(m.version, m.summary, postgresql_statements(m)) for m in self._migrations
        )
        migrate(conn, pg, self, _execute)

    def _get_pool(self) -> ConnectionPool[psycopg.Connection[Any]]:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ConnectionPool(
                    self.url,
                    min_size=1,
                    max_size=self._pool_size,
                    kwargs={
                        "autocommit": True,
                        "connect_timeout": max(1, round(self._connect_timeout)),
                    },
                    configure=self._configure,
                    check=ConnectionPool.check_connection,
                    timeout=self._connect_timeout,
                    name="trustpub-registry",
                    open=False,
                )
                # Connections are made in the background; a server that is down shows
                # as a timeout in the call that needs one, not here.
                self._pool.open(wait=False)
            return self._pool

    def _configure(self, conn: psycopg.Connection[Any]) -> None:
        # A writer waits this long for the writer lock, as SQLite's busy_timeout does.
        conn.execute(f"SET lock_timeout = {int(self._lock_timeout * 1000)}")
        # An acknowledged publish must survive a crash of the server: never let a
        # server-wide `synchronous_commit = off` apply to our commits.
        conn.execute("SET synchronous_commit = on")

    def _failure(self, reason: str, exc: BaseException | None = None) -> StorageUnavailable:
        detail = f"registry database {self.location}: {reason}"
        log.warning(detail)
        if isinstance(exc, psycopg.errors.DiskFull):
            return StorageFull(detail)
        return StorageUnavailable(detail)


def _raw(conn: Connection) -> psycopg.Connection[Any]:
    if not isinstance(conn, _Connection):
        raise TypeError("a PostgreSQL engine's transaction needs one of its connections")
    return conn.raw


def _execute(conn: _Connection, statement: str) -> None:
    conn.raw.execute(statement)


class _LoopReads:
    """One connection of psycopg's async API for the small reads the event loop makes
    itself (the owner configs' generation, read for every exchange).

    Made in a worker thread, such a read takes the GIL back after each of its calls and
    waits for the event loop's thread to let go of it each time (up to the 5 ms switch
    interval): under load the exchanges waiting for it left the event loop idle an
    eighth of the time (per-thread CPU from /proc under wrk). On the loop, it is one
    round trip and no thread. Reads run one at a time (a lock), in autocommit (each
    sees the latest committed data); a failure or a read past the connect timeout
    drops the connection (the next read opens a new one) and raises
    ``StorageUnavailable``. The connection belongs to the loop that opened it: another
    loop (a test's next one) opens its own.
    """

    def __init__(self, engine: PostgreSQLEngine) -> None:
        self._engine = engine
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock: asyncio.Lock | None = None
        self._conn: psycopg.AsyncConnection[Any] | None = None

    async def read(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        loop = asyncio.get_running_loop()
        if loop is not self._loop or self._lock is None:
            self.close()
            self._loop, self._lock = loop, asyncio.Lock()
        engine = self._engine
        async with self._lock:
            try:
                async with asyncio.timeout(engine._connect_timeout):
                    conn = self._conn
                    if conn is None or conn.closed:
                        conn = self._conn = await psycopg.AsyncConnection.connect(
                            engine.url,
                            autocommit=True,
                            connect_timeout=max(1, round(engine._connect_timeout)),
                        )
                    cursor = psycopg.AsyncRawCursor(conn, row_factory=_row_factory)
                    await cursor.execute(translate(sql), params)
                    return await cursor.fetchall()
            except psycopg.Error as exc:
                self.close()
                raise engine._failure(_describe(exc), exc) from exc
            except TimeoutError as exc:
                self.close()
                reason = f"no answer within {engine._connect_timeout:g} s"
                raise engine._failure(reason, exc) from exc
            except BaseException:
                self.close()  # cancelled mid-read: the connection's state is unknown
                raise

    def close(self) -> None:
        """Drop the connection, from any thread or loop (its socket is closed at once)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.pgconn.finish()


def _describe(exc: psycopg.Error) -> str:
    """The server's message, first line only (a DETAIL may quote row values)."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"
