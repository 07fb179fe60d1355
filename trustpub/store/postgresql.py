"""PostgreSQL store: for any number of service processes on any number of hosts, on
the database that may also hold the registry's data (a deployment on PostgreSQL alone).

Tables (created on first use, under an advisory lock so replicas starting together
create them once):

    trustpub_tokens (hash, record, expires_at)      issued tokens, by SHA-256
    trustpub_jtis (key, expires_at)                 claimed JWT ids
    trustpub_namespace_pins (key, namespace_id)     GitLab namespace pins

Through psycopg 3's async API and its pool (``psycopg_pool.AsyncConnectionPool``).

- ``issue`` claims the jti and stores the token in ONE transaction: the claim is an
  ``INSERT ... ON CONFLICT DO UPDATE ... WHERE`` that takes an absent or expired jti
  and nothing else (a concurrent claim of the same jti waits on the primary key, then
  finds it taken), so one JWT yields at most one token on any number of replicas.
  Should the connection fail while the COMMIT is under way, the outcome is read back
  on a fresh connection (our token's row tells); if it still cannot be told, the
  client is told the outcome is unknown, as the Redis store does.
- Expired rows are purged at most once a ``PURGE_INTERVAL`` per process, after an
  issue; reads ignore them meanwhile.
- Commits wait for the server's disk (``synchronous_commit = on`` for our sessions,
  whatever the server's default): a claimed jti survives a crash of the server.

Rate limits are not kept here: with this store they are counted per process (the
Redis store shares them).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from trustpub.errors import StoreUnavailable
from trustpub.postgres import safe_location
from trustpub.store.base import check_expiry
from trustpub.store.redis import OUTCOME_UNKNOWN

logger = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_TIMEOUT = 2.0
DEFAULT_POOL_SIZE = 16
PURGE_INTERVAL = 60.0
SCHEMA_LOCK = 0x74707374_6F7265  # any number; "tpstore"

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS trustpub_tokens (
        hash BYTEA PRIMARY KEY,
        record BYTEA NOT NULL,
        expires_at BIGINT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS trustpub_tokens_expires_at ON trustpub_tokens (expires_at)",
    """CREATE TABLE IF NOT EXISTS trustpub_jtis (
        key BYTEA PRIMARY KEY,
        expires_at BIGINT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS trustpub_jtis_expires_at ON trustpub_jtis (expires_at)",
    """CREATE TABLE IF NOT EXISTS trustpub_namespace_pins (
        key TEXT PRIMARY KEY,
        namespace_id TEXT NOT NULL
    )""",
)

Conn = psycopg.AsyncConnection[Any]


class PostgreSQLStore:
    """A ``Store`` in a PostgreSQL database (``postgresql://USER@HOST:PORT/DB``)."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        pool_size: int = DEFAULT_POOL_SIZE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._url = url
        self._location = safe_location(url)
        self._timeout = timeout
        self._pool_size = pool_size
        self._clock = clock
        self._pool: AsyncConnectionPool[Conn] | None = None
        self._schema_ready = False
        self._last_purge = float("-inf")

    @property
    def location(self) -> str:
        """Host, port and database: safe to show to operators (no credentials)."""
        return self._location

    def _unavailable(self, what: str, exc: BaseException) -> StoreUnavailable:
        first = str(exc).strip().splitlines()
        reason = f"{type(exc).__name__}: {first[0]}" if first else type(exc).__name__
        detail = f"Token store unavailable: {self._location}: {what} failed ({reason})"
        logger.warning(detail)
        return StoreUnavailable(detail)

    async def _get_pool(self) -> AsyncConnectionPool[Conn]:
        if self._pool is None:
            pool: AsyncConnectionPool[Conn] = AsyncConnectionPool(
                self._url,
                min_size=1,
                max_size=self._pool_size,
                kwargs={"autocommit": True, "connect_timeout": max(1, round(self._timeout))},
                configure=_configure,
                check=AsyncConnectionPool.check_connection,
                timeout=self._timeout,
                name="trustpub-store",
                open=False,
            )
            await pool.open(wait=False)
            self._pool = pool
        return self._pool

    async def _run(self, what: str, operation: Callable[[Conn], Awaitable[T]]) -> T:
        try:
            pool = await self._get_pool()
            async with pool.connection(timeout=self._timeout) as conn:
                if not self._schema_ready:
                    await self._create_schema(conn)
                return await operation(conn)
        except StoreUnavailable:
            raise
        except PoolTimeout as exc:
            raise self._unavailable(what, exc) from exc
        except psycopg.Error as exc:
            raise self._unavailable(what, exc) from exc

    async def _create_schema(self, conn: Conn) -> None:
        # DDL only when a table is missing, checked again under the lock: even
        # CREATE INDEX IF NOT EXISTS locks its table against the writes of issues in
        # flight on other replicas, and two of those would deadlock.
        if not await _tables_missing(conn):
            self._schema_ready = True
            return
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
            if await _tables_missing(conn):
                for statement in _SCHEMA:
                    await conn.execute(statement)
        self._schema_ready = True

    async def _purge(self, conn: Conn) -> None:
        """Delete expired tokens and jti claims. Opportunistic: a failure is only logged."""
        now = int(self._clock())
        try:
            await conn.execute("DELETE FROM trustpub_tokens WHERE expires_at <= %s", (now,))
            await conn.execute("DELETE FROM trustpub_jtis WHERE expires_at <= %s", (now,))
        except psycopg.Error as exc:
            logger.info("PostgreSQL store: purge of expired rows skipped: %s", exc)
            return
        self._last_purge = now

    # -- Store --

    async def issue(
        self,
        jti_key: bytes,
        jti_expires_at: int,
        token_hash: bytes,
        record: bytes,
        token_expires_at: int,
    ) -> bool:
        check_expiry(jti_expires_at, token_expires_at)
        committing = False

        async def op(conn: Conn) -> bool:
            nonlocal committing
            now = int(self._clock())
            try:
                async with conn.transaction():
                    # Takes the jti when absent, or when its claim expired (it no longer
                    # protects anything); answers no row when it is claimed.
                    claimed = await (
                        await conn.execute(
                            "INSERT INTO trustpub_jtis (key, expires_at) VALUES (%s, %s)"
                            " ON CONFLICT (key) DO UPDATE SET expires_at = EXCLUDED.expires_at"
                            " WHERE trustpub_jtis.expires_at <= %s RETURNING key",
                            (jti_key, jti_expires_at, now),
                        )
                    ).fetchone()
                    if claimed is None:
                        raise _Replay
                    await conn.execute(
                        "INSERT INTO trustpub_tokens (hash, record, expires_at)"
                        " VALUES (%s, %s, %s)",
                        (token_hash, record, token_expires_at),
                    )
                    committing = True  # the block's end is the COMMIT
            except _Replay:
                return False
            committing = False
            if self._clock() - self._last_purge >= PURGE_INTERVAL:
                await self._purge(conn)
            return True

        try:
            return await self._run("issue", op)
        except StoreUnavailable as exc:
            if not committing:
                raise
            return await self._reconcile(token_hash, record, exc)

    async def _reconcile(self, token_hash: bytes, record: bytes, exc: BaseException) -> bool:
        """The COMMIT of an issue failed: did it happen? Our fresh token's row tells."""

        async def op(conn: Conn) -> bytes | None:
            row = await (
                await conn.execute(
                    "SELECT record FROM trustpub_tokens WHERE hash = %s", (token_hash,)
                )
            ).fetchone()
            return bytes(row[0]) if row is not None else None

        try:
            if await self._run("issue (check)", op) == record:
                return True
        except StoreUnavailable:
            pass
        # Not there (yet?): a COMMIT the server is still running could land later.
        logger.warning(
            "Token store: %s: issue failed while committing: outcome unknown", self._location
        )
        raise StoreUnavailable(OUTCOME_UNKNOWN) from exc

    async def lookup(self, token_hash: bytes) -> bytes | None:
        async def op(conn: Conn) -> bytes | None:
            row = await (
                await conn.execute(
                    "SELECT record FROM trustpub_tokens WHERE hash = %s AND expires_at > %s",
                    (token_hash, int(self._clock())),
                )
            ).fetchone()
            return bytes(row[0]) if row is not None else None

        return await self._run("lookup", op)

    async def revoke(self, token_hash: bytes) -> bool:
        async def op(conn: Conn) -> bool:
            row = await (
                await conn.execute(
                    "DELETE FROM trustpub_tokens WHERE hash = %s RETURNING expires_at",
                    (token_hash,),
                )
            ).fetchone()
            return row is not None and int(row[0]) > int(self._clock())

        return await self._run("revoke", op)

    async def get_namespace_pin(self, key: str) -> str | None:
        async def op(conn: Conn) -> str | None:
            row = await (
                await conn.execute(
                    "SELECT namespace_id FROM trustpub_namespace_pins WHERE key = %s", (key,)
                )
            ).fetchone()
            return str(row[0]) if row is not None else None

        return await self._run("namespace pin lookup", op)

    async def pin_namespace(self, key: str, namespace_id: str) -> str:
        async def op(conn: Conn) -> str:
            # Set-if-absent answering the value pinned, in one statement: the no-op
            # update makes RETURNING answer the row that was there first.
            row = await (
                await conn.execute(
                    "INSERT INTO trustpub_namespace_pins (key, namespace_id) VALUES (%s, %s)"
                    " ON CONFLICT (key) DO UPDATE"
                    " SET namespace_id = trustpub_namespace_pins.namespace_id"
                    " RETURNING namespace_id",
                    (key, namespace_id),
                )
            ).fetchone()
            assert row is not None  # INSERT or UPDATE ... RETURNING answers one row
            return str(row[0])

        return await self._run("namespace pin", op)

    async def ping(self) -> None:
        """The server answers and accepts writes (a standby refuses READ WRITE)."""

        async def op(conn: Conn) -> None:
            async with conn.transaction():
                await conn.execute("SET TRANSACTION READ WRITE")
                await conn.execute("SELECT 1 FROM trustpub_tokens LIMIT 1")

        await self._run("ping", op)

    async def aclose(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()


class _Replay(Exception):
    """The jti is claimed: the transaction is rolled back and issue answers False."""


_TABLES = ("trustpub_tokens", "trustpub_jtis", "trustpub_namespace_pins")


async def _tables_missing(conn: Conn) -> bool:
    row = await (
        await conn.execute(
            "SELECT count(*) FROM pg_catalog.pg_tables"
            " WHERE schemaname = current_schema() AND tablename = ANY(%s)",
            (list(_TABLES),),
        )
    ).fetchone()
    return row is None or int(row[0]) < len(_TABLES)


async def _configure(conn: Conn) -> None:
    # An acknowledged token (and its jti claim) must survive a crash of the server.
    await conn.execute("SET synchronous_commit = on")
