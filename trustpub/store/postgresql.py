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

Connections. The pool checks a connection (a round trip) before handing it out, except
to a batch when the connection answered a batch less than ``FRESH`` seconds ago. Should
such a connection turn out lost (the server restarted, say), no connection is trusted
unchecked any more until one answers again, and the batch goes once more on a checked
one: a batch of lookups (a read) in any case, a batch of issues only when it was lost
before its COMMIT was sent (the server rolled its transaction back: nothing of it
stands). Lost while committing, it is read back as above, never sent again. A batch's
connection that fails in any way is closed (the pool replaces it), whatever state it
was left in. If the second try fails too, every caller of the batch fails.

The wire. A batch's statements go by libpq's own calls (``psycopg.pq``: ``_query``,
``_begin_query``, ``_commit``), not through psycopg's cursors: parameters built in
PostgreSQL's binary format by hand (arrays too), of declared types, rows read in
binary, a wait on the socket that is one future; no per-call query conversion,
parameter type inference, dumper lookup, cursor, or ``transaction()`` context manager.
An issue batch is two round trips (BEGIN and its statement together, in libpq's
pipeline mode, then the COMMIT; it was three, plus the check), a lookup batch one (it
was two, with the check).

Why this plumbing: a pooled connection per call (a check of it, and for an issue a
transaction and a wait for the disk) was most of the store's cost.
``bench/postgresql_store.py`` (uvloop, PostgreSQL 15 on the same host, this process's
CPU only): at 32 concurrent callers, issue 197 -> 24 us CPU per call (4,700 -> 20,100 a
second), lookup 89 -> 10 us (10,200 -> 69,200 a second); a lone caller pays about the
same as before (issue 255 -> 242 us, lookup 119 -> 128 us: a batch of one sends scalar
parameters, as an array parameter costs about 20 us more). Then the wire by hand and
fresh connections unchecked (``--repeats 5 --baseline`` the revision before, on a
loaded 2-core machine, so larger numbers than above for both): at 32 callers issue
96 -> 33 us, lookup 42 -> 17 us; at 4 callers issue 411 -> 166 us, lookup 190 -> 66 us.

A purge (which deletes expired claims in its own order) and a batch re-claiming two of
those same expired jtis could deadlock; PostgreSQL then fails one of them: the batch's
issues answer ``StoreUnavailable`` (nothing stored), or the purge is skipped.

Rate limits are not kept here: with this store they are counted per process (the
Redis store shares them).
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from typing import Any, Generic, TypeVar
from weakref import WeakKeyDictionary

import psycopg
from psycopg import pq
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
# A pooled connection that answered a batch this recently is not checked (a round trip)
# again before the next batch (see "Connections" in the module's docstring).
FRESH = 5.0

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

# Parameter types (PostgreSQL's type oids).
_BYTEA, _INT8, _BYTEA_ARRAY, _INT8_ARRAY = 17, 20, 1001, 1016

# The live records among a batch's token hashes; the same for a batch of one (a scalar
# parameter is cheaper to build and send). Parameters in binary, of these types.
_LOOKUP = b"SELECT hash, record FROM trustpub_tokens WHERE hash = ANY($1) AND expires_at > $2"
_LOOKUP_ONE = b"SELECT hash, record FROM trustpub_tokens WHERE hash = $1 AND expires_at > $2"

# A batch of issues in one statement: claim each jti that is absent or whose claim
# expired (it no longer protects anything), in key order (replicas claiming the same
# jtis in one batch each lock them in the same order, so they cannot deadlock), then
# store the token of each claimed one; answers the keys claimed. A claim of a jti that
# another transaction holds waits for it, then finds it taken.
_ISSUE_SQL = """
WITH input (jti, jti_expires_at, hash, record, expires_at) AS (
    {input}
), claimed AS (
    INSERT INTO trustpub_jtis (key, expires_at)
    SELECT jti, jti_expires_at FROM input ORDER BY jti
    ON CONFLICT (key) DO UPDATE SET expires_at = EXCLUDED.expires_at
    WHERE trustpub_jtis.expires_at <= $6
    RETURNING key
), stored AS (
    INSERT INTO trustpub_tokens (hash, record, expires_at)
    SELECT input.hash, input.record, input.expires_at
    FROM input JOIN claimed ON claimed.key = input.jti
)
SELECT key FROM claimed
"""
_ISSUE_ONE = _ISSUE_SQL.format(
    input="VALUES ($1::bytea, $2::bigint, $3::bytea, $4::bytea, $5::bigint)"
).encode()
_ISSUE = _ISSUE_SQL.format(
    input="SELECT * FROM unnest($1::bytea[], $2::bigint[], $3::bytea[], $4::bytea[], $5::bigint[])"
).encode()
_LOOKUP_TYPES = (_BYTEA_ARRAY, _INT8)
_LOOKUP_ONE_TYPES = (_BYTEA, _INT8)
_ISSUE_TYPES = (_BYTEA_ARRAY, _INT8_ARRAY, _BYTEA_ARRAY, _BYTEA_ARRAY, _INT8_ARRAY, _INT8)
_ISSUE_ONE_TYPES = (_BYTEA, _INT8, _BYTEA, _BYTEA, _INT8, _INT8)

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
                if not call.future.done():
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
        # When each pooled connection last answered a batch (monotonic seconds).
        self._answered: WeakKeyDictionary[Conn, float] = WeakKeyDictionary()
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
                check=self._check_connection,
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

    async def _check_connection(self, conn: Conn) -> None:
        """The pool's check of a connection it hands out: a round trip, unless a batch
        takes a connection that answered a batch less than ``FRESH`` seconds ago."""
        if _trust_fresh.get():
            answered = self._answered.get(conn)
            if answered is not None and time.monotonic() - answered < FRESH:
                return
        await AsyncConnectionPool.check_connection(conn)

    async def _batch_run(
        self, what: str, operation: Callable[[Conn], Awaitable[T]], *, trust: bool = True
    ) -> T:
        """``operation`` for a batch, on a pooled connection, taken without a check if
        ``trust`` and it answered a batch lately; should that connection turn out lost,
        the error is ``_Stale`` (no other connection is trusted unchecked from then on,
        until one answers again). Any other failure: ``StoreUnavailable``. The
        connection is closed on any failure (the pool replaces it)."""
        try:
            pool = await self._get_pool()
            trusting = _trust_fresh.set(trust)
            try:
                conn = await pool.getconn(timeout=self._timeout)
            finally:
                _trust_fresh.reset(trusting)
        except psycopg.Error as exc:  # PoolTimeout and PoolClosed too
            raise self._unavailable(what, exc) from exc
        answered = self._answered.get(conn)
        unchecked = trust and answered is not None and time.monotonic() - answered < FRESH
        try:
            if not self._schema_ready:
                await self._create_schema(conn)
            result = await operation(conn)
        except BaseException as exc:
            lost = conn.closed
            # Its state is not worth finding out (a transaction, a pipeline, a statement
            # under way): closed (no wait), the server rolls back what it began.
            await conn.close()
            if not isinstance(exc, psycopg.Error):
                raise
            if lost:
                self._answered.clear()  # a server restarted: its other sessions are gone
                if unchecked:
                    raise _Stale(exc) from exc
            raise self._unavailable(what, exc) from exc
        finally:
            await pool.putconn(conn)
        self._answered[conn] = time.monotonic()
        return result

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
            now = _int8(int(self._clock()))
            if len(calls) == 1:
                params = [calls[0].args, now]
                rows = await _query(conn, _LOOKUP_ONE, params, _LOOKUP_ONE_TYPES)
            else:
                params = [_bytea_array(list({call.args for call in calls})), now]
                rows = await _query(conn, _LOOKUP, params, _LOOKUP_TYPES)
            value = rows.get_value
            return {value(i, 0): value(i, 1) for i in range(rows.ntuples)}  # type: ignore[misc]

        try:
            try:
                found = await self._batch_run("lookup", op)
            except _Stale as stale:
                # The connection, trusted unchecked, was lost (a server restarted, say):
                # once more, on a checked one (a read: nothing to undo).
                logger.info("PostgreSQL store: lookup on a lost connection, again: %s", stale)
                found = await self._batch_run("lookup", op, trust=False)
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
            first.clear()
            claimed = None
            for call in calls:
                if not call.future.done():
                    first.setdefault(call.args[0], call)
            contenders = list(first.values())
            if not contenders:
                return
            now = _int8(int(self._clock()))
            if len(contenders) == 1:
                jti, jti_expires_at, token_hash, record, expires_at = contenders[0].args
                sql, types = _ISSUE_ONE, _ISSUE_ONE_TYPES
                params = [jti, _int8(jti_expires_at), token_hash, record, _int8(expires_at), now]
            else:
                jtis, jti_expiries, hashes, records, expiries = zip(
                    *(call.args for call in contenders), strict=True
                )
                sql, types = _ISSUE, _ISSUE_TYPES
                params = [
                    _bytea_array(jtis),
                    _int8_array(jti_expiries),
                    _bytea_array(hashes),
                    _bytea_array(records),
                    _int8_array(expiries),
                    now,
                ]
            rows = await _begin_query(conn, sql, params, types)
            value = rows.get_value
            claimed = {value(i, 0) for i in range(rows.ntuples)}  # type: ignore[misc]
            committing = True
            await _commit(conn)
            committing = False
            if self._clock() - self._last_purge >= PURGE_INTERVAL:
                await self._purge(conn)

        try:
            try:
                await self._batch_run("issue", op)
            except _Stale as stale:
                if committing:
                    # Lost while committing: not to be sent again (it may have
                    # committed); read back below.
                    raise self._unavailable("issue", stale.cause) from stale.cause
                # Lost before its COMMIT was sent: the server rolled the transaction
                # back, nothing of it stands; once more, on a checked connection.
                logger.info("PostgreSQL store: issue on a lost connection, again: %s", stale)
                await self._batch_run("issue", op, trust=False)
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
                if not call.future.done():
                    call.fail(
                        StoreUnavailable(OUTCOME_UNKNOWN)
                        if committing
                        else self._no_answer("issue")
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


class _Stale(Exception):
    """A batch's connection, taken without a check (it answered lately), was lost."""

    def __init__(self, cause: psycopg.Error) -> None:
        super().__init__(str(cause))
        self.cause = cause


_trust_fresh: ContextVar[bool] = ContextVar("trustpub_store_trust_fresh", default=False)


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


# -- the wire, for the batches: libpq's own calls (``psycopg.pq``), parameters and
# results in binary, no per-call query conversion, type inference or cursor --

_BINARY = 1
_int8 = struct.Struct(">q").pack
_array_head = struct.Struct(">iiIii").pack  # dimensions, flags, element type, length, base
_length = struct.Struct(">i").pack
_int8_item = struct.Struct(">iq").pack  # an element: its length (8), its value

_OK = pq.ConnStatus.OK
_COMMAND_OK = pq.ExecStatus.COMMAND_OK
_TUPLES_OK = pq.ExecStatus.TUPLES_OK
_PIPELINE_SYNC = pq.ExecStatus.PIPELINE_SYNC


def _bytea_array(values: Sequence[bytes]) -> bytes:
    """A one-dimensional ``bytea[]`` in PostgreSQL's binary format (no NULLs)."""
    parts = [_array_head(1, 0, _BYTEA, len(values), 1)]
    for value in values:
        parts.append(_length(len(value)))
        parts.append(value)
    return b"".join(parts)


def _int8_array(values: Sequence[int]) -> bytes:
    """A one-dimensional ``bigint[]`` in PostgreSQL's binary format (no NULLs)."""
    return _array_head(1, 0, _INT8, len(values), 1) + b"".join([_int8_item(8, v) for v in values])


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def _ready(pgconn: pq.abc.PGconn, write: bool = False) -> None:
    """Until the connection's socket has something to read (or, with ``write``, room
    to write)."""
    fd = pgconn.socket
    loop = asyncio.get_running_loop()
    future = loop.create_future()
    try:
        loop.add_reader(fd, _wake, future)
        if write:
            loop.add_writer(fd, _wake, future)
        try:
            await future
        finally:
            loop.remove_reader(fd)
            if write:
                loop.remove_writer(fd)
    except OSError as exc:  # as psycopg's own wait: the socket is gone
        raise psycopg.OperationalError("connection socket closed") from exc


async def _flush(pgconn: pq.abc.PGconn) -> None:
    """Send what libpq holds (a large batch may not fit the socket's buffer at once)."""
    while pgconn.flush():
        await _ready(pgconn, write=True)
        pgconn.consume_input()  # the server may be waiting for us to read


async def _next_result(pgconn: pq.abc.PGconn) -> pq.abc.PGresult | None:
    while pgconn.is_busy():
        await _ready(pgconn)
        pgconn.consume_input()  # raises OperationalError when the connection is lost
    return pgconn.get_result()


def _check(result: pq.abc.PGresult, status: pq.ExecStatus) -> pq.abc.PGresult:
    if result.status != status:
        if result.status == pq.ExecStatus.FATAL_ERROR:
            raise psycopg.errors.error_from_result(result)
        raise psycopg.OperationalError(f"unexpected result: {pq.ExecStatus(result.status).name}")
    return result


async def _query(
    conn: Conn, sql: bytes, params: Sequence[bytes], types: Sequence[int]
) -> pq.abc.PGresult:
    """The rows of one statement (its parameters in binary, of the given types)."""
    pgconn = conn.pgconn
    pgconn.send_query_params(sql, params, types, [_BINARY] * len(params), _BINARY)
    await _flush(pgconn)
    results = []
    while (result := await _next_result(pgconn)) is not None:
        results.append(result)
    if len(results) != 1:
        raise psycopg.OperationalError(f"{len(results)} results for one statement")
    return _check(results[0], _TUPLES_OK)


async def _begin_query(
    conn: Conn, sql: bytes, params: Sequence[bytes], types: Sequence[int]
) -> pq.abc.PGresult:
    """BEGIN, then the rows of one statement, in one round trip (libpq's pipeline
    mode): the transaction is left open, for ``_commit``."""
    pgconn = conn.pgconn
    pgconn.enter_pipeline_mode()
    pgconn.send_query_params(b"BEGIN", None)
    pgconn.send_query_params(sql, params, types, [_BINARY] * len(params), _BINARY)
    pgconn.pipeline_sync()
    await _flush(pgconn)
    results = []
    ends = 0  # each statement's results end with None, the whole with the sync
    while True:
        result = await _next_result(pgconn)
        if result is None:
            ends += 1
            if ends > 2 or pgconn.status != _OK:
                raise psycopg.OperationalError("the connection lost its pipeline")
            continue
        if result.status == _PIPELINE_SYNC:
            break
        results.append(result)
    pgconn.exit_pipeline_mode()
    if len(results) != 2:
        raise psycopg.OperationalError(f"{len(results)} results for BEGIN and one statement")
    _check(results[0], _COMMAND_OK)
    return _check(results[1], _TUPLES_OK)


async def _commit(conn: Conn) -> None:
    """COMMIT (a simple query, as psycopg sends it)."""
    pgconn = conn.pgconn
    pgconn.send_query(b"COMMIT")
    await _flush(pgconn)
    results = []
    while (result := await _next_result(pgconn)) is not None:
        results.append(result)
    if len(results) != 1:
        raise psycopg.OperationalError(f"{len(results)} results for COMMIT")
    _check(results[0], _COMMAND_OK)
    if results[0].command_status != b"COMMIT":  # b"ROLLBACK": the transaction had failed
        raise psycopg.OperationalError("COMMIT answered ROLLBACK")
