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
- Expired rows are purged at most once a ``PURGE_INTERVAL`` per process, after an
  issue; reads ignore them meanwhile.
- Commits wait for the server's disk (``synchronous_commit = on`` for our sessions,
  whatever the server's default): a claimed jti survives a crash of the server.

Batches and group commit. ``lookup`` and ``issue`` calls are batched, each kind on its
own: the calls made while a batch of their kind is in flight (or in the same event-loop
tick as the first) wait, then go together as the next batch (at most ``MAX_BATCH``),
on one pooled connection.

- A batch of lookups is ONE query (``hash = ANY(...)``); each caller gets the record of
  its own hash (a hash asked twice is answered twice). If the query fails, every
  lookup of the batch fails with ``StoreUnavailable``.
- The issues of a batch share ONE transaction, one COMMIT, one wait for the disk. Its
  one statement claims the batch's jtis (the first caller of a jti in the batch
  competes for it, its later callers answer False) in key order, so replicas claiming
  overlapping jtis lock them in the same order and cannot deadlock, then stores the
  token of each claimed jti. Answers are given only after the COMMIT succeeded. Any
  failure before the COMMIT fails every issue of the batch (the transaction rolls
  back: none stands). Should the connection fail while the COMMIT is under way, each
  claimed issue's outcome is read back on a fresh connection (its token's row tells,
  one query for the batch); an issue whose token is not found answers that the outcome
  is unknown (``OUTCOME_UNKNOWN``, as the Redis store does), a later caller of its jti
  in the batch a plain ``StoreUnavailable``; a claim the server refused answers False
  whatever became of the COMMIT (the jti was claimed by a transaction that committed).
- A caller cancelled before its batch is sent is left out of it; one cancelled while
  its batch is in flight leaves the batch to run for the others (a cancelled issue may
  then have stored its token: its JWT counts as used, as when a client goes away).
- Revocations, namespace pins and ``ping`` run as before, a pooled connection each.

Why this plumbing: a pooled connection per call (a check of it, and for an issue a
transaction and a wait for the disk) was most of the store's cost.
``bench/postgresql_store.py`` (uvloop, PostgreSQL 15 on the same host, this process's
CPU only): at 32 concurrent callers, issue 197 -> 24 us CPU per call (4,700 -> 20,100 a
second), lookup 89 -> 10 us (10,200 -> 69,200 a second); a lone caller pays about the
same as before (issue 255 -> 242 us, lookup 119 -> 128 us: a batch of one sends scalar
parameters, as an array parameter costs about 20 us more).

A purge (which deletes expired claims in its own order) and a batch re-claiming two of
those same expired jtis could deadlock; PostgreSQL then fails one of them: the batch's
issues answer ``StoreUnavailable`` (nothing stored), or the purge is skipped.

Rate limits are not kept here: with this store they are counted per process (the
Redis store shares them).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from trustpub.errors import StoreUnavailable
from trustpub.postgres import safe_location
from trustpub.store.base import check_expiry
from trustpub.store.redis import OUTCOME_UNKNOWN

logger = logging.getLogger(__name__)

T = TypeVar("T")
A = TypeVar("A")

DEFAULT_TIMEOUT = 2.0
DEFAULT_POOL_SIZE = 16
PURGE_INTERVAL = 60.0
SCHEMA_LOCK = 0x74707374_6F7265  # any number; "tpstore"
MAX_BATCH = 256  # calls per batch; more wait for the next one

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

# The live records among a batch's token hashes; the same for a batch of one (an array
# parameter costs about 20 us more to send than a scalar one).
_LOOKUP = "SELECT hash, record FROM trustpub_tokens WHERE hash = ANY(%s) AND expires_at > %s"
_LOOKUP_ONE = "SELECT hash, record FROM trustpub_tokens WHERE hash = %s AND expires_at > %s"

# A batch of issues in one statement: claim each jti that is absent or whose claim
# expired (it no longer protects anything), in key order (replicas claiming the same
# jtis in one batch each lock them in the same order, so they cannot deadlock), then
# store the token of each claimed one; answers the keys claimed. A claim of a jti that
# another transaction holds waits for it, then finds it taken.
_ISSUE = """
WITH input (jti, jti_expires_at, hash, record, expires_at) AS (
    {input}
), claimed AS (
    INSERT INTO trustpub_jtis (key, expires_at)
    SELECT jti, jti_expires_at FROM input ORDER BY jti
    ON CONFLICT (key) DO UPDATE SET expires_at = EXCLUDED.expires_at
    WHERE trustpub_jtis.expires_at <= %s
    RETURNING key
), stored AS (
    INSERT INTO trustpub_tokens (hash, record, expires_at)
    SELECT input.hash, input.record, input.expires_at
    FROM input JOIN claimed ON claimed.key = input.jti
)
SELECT key FROM claimed
"""
_ISSUE_ONE = _ISSUE.format(input="VALUES (%s::bytea, %s::bigint, %s::bytea, %s::bytea, %s::bigint)")
_ISSUE = _ISSUE.format(
    input="SELECT * FROM unnest(%s::bytea[], %s::bigint[], %s::bytea[], %s::bytea[], %s::bigint[])"
)

Conn = psycopg.AsyncConnection[Any]
# jti_key, jti_expires_at, token_hash, record, token_expires_at
_IssueArgs = tuple[bytes, int, bytes, bytes, int]


class _Call(Generic[A]):
    """One caller's request, waiting for its batch; its future gets the answer."""

    __slots__ = ("args", "future")

    def __init__(self, args: A, future: asyncio.Future[Any]) -> None:
        self.args = args
        self.future = future

    def answer(self, value: object) -> None:
        if not self.future.done():  # else its caller was cancelled, or it has its answer
            self.future.set_result(value)

    def fail(self, error: StoreUnavailable, cause: BaseException | None = None) -> None:
        if not self.future.done():
            # An exception of its own: several callers raise them at once.
            own = StoreUnavailable(error.detail)
            own.__cause__ = cause if cause is not None else (error.__cause__ or error)
            self.future.set_exception(own)


class _Batcher(Generic[A]):
    """Batches of one kind of call: the calls made while a batch is in flight (or in
    the same event-loop tick as the first) wait, then go together as the next batch,
    run by ``run`` (which answers each call). One batch in flight at a time."""

    def __init__(
        self,
        run: Callable[[list[_Call[A]]], Awaitable[None]],
        no_answer: Callable[[], StoreUnavailable],
    ) -> None:
        self._run = run
        self._no_answer = no_answer
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: list[_Call[A]] = []
        self.runner: asyncio.Task[None] | None = None

    async def submit(self, args: A) -> Any:
        loop = asyncio.get_running_loop()
        call = _Call(args, loop.create_future())
        if loop is self._loop or self._bind(loop):
            self._pending.append(call)
            if self.runner is None:
                self.runner = loop.create_task(self._drain())
        else:
            # Another event loop, still open, has the batches (not how trustpub uses a
            # store): this call goes alone, from its own task.
            try:
                await self._send([call])
            except BaseException:
                call.future.cancel()  # its caller is cancelled: nobody reads its answer
                raise
        return await call.future

    def _bind(self, loop: asyncio.AbstractEventLoop) -> bool:
        if self._loop is not None and not self._loop.is_closed():
            return False
        self._loop, self._pending, self.runner = loop, [], None
        return True

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
                # A caller cancelled before its batch is sent is left out of it.
                batch = [call for call in batch if not call.future.done()]
                if batch:
                    await self._send(batch)
        finally:
            self.runner = None
            # Not sent: only when cancelled (the loop or the store closing).
            pending, self._pending = self._pending, []
            for call in pending:
                call.fail(self._no_answer())

    async def _send(self, batch: list[_Call[A]]) -> None:
        try:
            await self._run(batch)
        except Exception:
            logger.exception("PostgreSQL store: a batch failed unexpectedly")
        finally:
            for call in batch:  # answered by now, unless cancelled or a bug
                call.fail(self._no_answer())


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
        self._lookups = _Batcher(self._lookup_batch, lambda: self._no_answer("lookup"))
        self._issues = _Batcher(self._issue_batch, lambda: self._no_answer("issue"))

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

    def _no_answer(self, what: str) -> StoreUnavailable:
        return StoreUnavailable(f"Token store unavailable: {self._location}: {what} got no answer")

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

    # -- batches --

    async def _lookup_batch(self, calls: list[_Call[bytes]]) -> None:
        """One query answers every lookup of the batch (a hash asked twice, twice)."""

        async def op(conn: Conn) -> dict[bytes, bytes]:
            now = int(self._clock())
            if len(calls) == 1:
                query = await conn.execute(_LOOKUP_ONE, (calls[0].args, now))
            else:
                query = await conn.execute(_LOOKUP, (list({call.args for call in calls}), now))
            rows = await query.fetchall()
            return {bytes(row[0]): bytes(row[1]) for row in rows}

        try:
            found = await self._run("lookup", op)
        except StoreUnavailable as exc:
            for call in calls:
                call.fail(exc)
            return
        for call in calls:
            call.answer(found.get(call.args))

    async def _issue_batch(self, calls: list[_Call[_IssueArgs]]) -> None:
        """The issues of a batch in ONE transaction (one COMMIT, one wait for the disk)."""
        first: dict[bytes, _Call[_IssueArgs]] = {}
        claimed: set[bytes] | None = None
        committing = False

        async def op(conn: Conn) -> None:
            nonlocal claimed, committing
            # The first caller of a jti in the batch competes for it; the later ones
            # lose (one statement may not claim a key twice anyway). Callers cancelled
            # while the batch waited for its connection are left out.
            for call in calls:
                if not call.future.done():
                    first.setdefault(call.args[0], call)
            contenders = list(first.values())
            if not contenders:
                return
            if len(contenders) == 1:
                sql, params = _ISSUE_ONE, list(contenders[0].args)
            else:
                sql = _ISSUE
                params = [list(c) for c in zip(*(call.args for call in contenders), strict=True)]
            async with conn.transaction():
                rows = await (await conn.execute(sql, (*params, int(self._clock())))).fetchall()
                claimed = {bytes(row[0]) for row in rows}
                committing = True  # the block's end is the COMMIT
            committing = False
            if self._clock() - self._last_purge >= PURGE_INTERVAL:
                await self._purge(conn)

        try:
            await self._run("issue", op)
        except StoreUnavailable as exc:
            if committing and claimed is not None:
                await self._settle(calls, first, claimed, exc)
            else:
                for call in calls:
                    call.fail(exc)  # rolled back: no issue of the batch stands
        else:
            won = claimed or set()
            for call in calls:
                jti = call.args[0]
                call.answer(jti in won and call is first.get(jti))
        finally:
            # Every call is answered by now, unless cancelled (the store closing).
            for call in calls:
                call.fail(
                    StoreUnavailable(OUTCOME_UNKNOWN) if committing else self._no_answer("issue")
                )

    async def _settle(
        self,
        calls: list[_Call[_IssueArgs]],
        first: dict[bytes, _Call[_IssueArgs]],
        claimed: set[bytes],
        exc: StoreUnavailable,
    ) -> None:
        """The COMMIT of a batch failed: answer what can be told, each on its own."""
        stored = await self._reconcile([first[jti] for jti in claimed], exc)
        for call in calls:
            jti = call.args[0]
            if call.future.done():
                continue  # cancelled
            if jti not in claimed:
                # Refused: the jti's claim was committed by another transaction (an
                # earlier batch's, or another process's); that stands whatever became
                # of this one.
                call.answer(False)
            elif call is first[jti]:
                if jti in stored:
                    call.answer(True)
                else:
                    call.fail(StoreUnavailable(OUTCOME_UNKNOWN), exc)
            elif jti in stored:
                call.answer(False)  # the first caller of its jti has the token
            else:
                call.fail(exc)  # nothing stored for it, but its jti's fate is unknown

    async def _reconcile(self, claimed: list[_Call[_IssueArgs]], exc: BaseException) -> set[bytes]:
        """The COMMIT of a batch failed: did it happen? Each fresh token's row tells.
        The jti keys of the issues whose token is there."""
        if not claimed:
            return set()

        async def op(conn: Conn) -> dict[bytes, bytes]:
            rows = await (
                await conn.execute(
                    "SELECT hash, record FROM trustpub_tokens WHERE hash = ANY(%s)",
                    ([call.args[2] for call in claimed],),
                )
            ).fetchall()
            return {bytes(row[0]): bytes(row[1]) for row in rows}

        try:
            found = await self._run("issue (check)", op)
        except StoreUnavailable:
            found = {}
        stored = {call.args[0] for call in claimed if found.get(call.args[2]) == call.args[3]}
        if len(stored) < len(claimed):
            # Not there (yet?): a COMMIT the server is still running could land later.
            logger.warning(
                "Token store: %s: %d issue(s) failed while committing: outcome unknown",
                self._location,
                len(claimed) - len(stored),
            )
        return stored

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
        answer: bool = await self._issues.submit(
            (jti_key, jti_expires_at, token_hash, record, token_expires_at)
        )
        return answer

    async def lookup(self, token_hash: bytes) -> bytes | None:
        answer: bytes | None = await self._lookups.submit(token_hash)
        return answer

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
        # Batches in flight end first (a COMMIT under way is not cut).
        runners = [b.runner for b in (self._lookups, self._issues) if b.runner is not None]
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(r for r in runners if r.get_loop() is loop), return_exceptions=True)
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
