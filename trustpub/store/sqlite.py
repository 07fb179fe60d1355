"""SQLite store: the embedded default, one file, no server.

Safe for several service processes on one host: the file is in WAL mode, every write
runs in ``BEGIN IMMEDIATE`` (the writer lock is taken up front, so two processes
cannot both read "jti unclaimed" and then both insert), and ``busy_timeout`` makes a
writer wait for the lock instead of failing at once. The blocking ``sqlite3`` calls run
in a worker thread so the event loop keeps serving.

Batches and group commit. The calls made while the worker thread is busy (or in the
same event-loop tick as the first) wait, and then run together in ONE thread hop, in
arrival order, under the store's lock; each caller gets its own result or its own
exception, and a caller cancelled before its batch starts is left out of it. The
``issue`` calls of a batch share ONE ``BEGIN IMMEDIATE ... COMMIT`` (one fsync), at the
place of the first of them: each claim stays atomic with its token (a jti claimed
before, in this batch too, answers False and stores nothing), answers are given only
after the COMMIT succeeded, and if anything in that transaction fails (the COMMIT's
fsync included) every issue of the batch fails with ``StoreUnavailable``: never a
success that is not durable. Reads run as before, one statement each, outside any
transaction (they see committed data only); ``revoke`` and ``pin_namespace`` run in
their own transaction each. A failing call fails no other call of its batch, except
within the issues' shared transaction. The calls of one batch all wait at once, so any
order among them is a valid serial order.

Reads without the hop: ``lookup`` (introspection's read, the hottest call) first reads
on the event loop's own thread (``trustpub.sqlite_reads``: never waiting, and at the
first hitch the call takes the hop as every other does).

Why this plumbing: each call's own thread hop and each issue's own commit were most of
the store's cost. ``bench/sqlite_store.py`` (32 concurrent callers, uvloop, ext4):
issue 196 -> 26 us CPU per call (3,800 -> 29,600 a second), lookup 89 -> 9 us (13,400
-> 105,800 a second); a lone caller pays about 7 us more (the batch's task).

Not for several hosts sharing a network file system: use the Redis store there.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar

import anyio.to_thread

from trustpub.errors import StoreUnavailable
from trustpub.hop import Hop
from trustpub.sqlite_reads import LoopReader, file_identity
from trustpub.store.base import check_expiry

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
DEFAULT_BUSY_TIMEOUT = 5.0
PURGE_INTERVAL = 60.0

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tokens (
    hash BLOB PRIMARY KEY,
    record BLOB NOT NULL,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tokens_expires_at ON tokens (expires_at);
CREATE TABLE IF NOT EXISTS jtis (
    key BLOB PRIMARY KEY,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS jtis_expires_at ON jtis (expires_at);
CREATE TABLE IF NOT EXISTS namespace_pins (
    key TEXT PRIMARY KEY,
    namespace_id TEXT NOT NULL
) WITHOUT ROWID;
"""

# Claims the jti if it is unclaimed or its claim has expired (an expired claim no
# longer protects anything); changes no row when it is claimed.
# Rows per statement of a batch: 3 parameters a row stays under SQLite's oldest limit
# of 999 parameters a statement.
_ROWS = 200

IssueArgs = tuple[bytes, int, bytes, bytes, int]  # jti key and expiry, token hash, record, expiry


def _issue_batch(conn: sqlite3.Connection, batch: list[IssueArgs], now: int) -> list[bool]:
    """Claim the jtis of ``batch`` and store the tokens of the claimed ones, inside the
    caller's write transaction (``BEGIN IMMEDIATE``: no other writer, in this process or
    another, can change the jtis between the read and the writes below). Each issue's
    outcome, in order: True if its jti was free (absent, or its claim expired) and this
    issue is the first of the batch to name it; False otherwise, and nothing stored.

    A statement per step for the whole batch, not two per issue: SQLite is called
    without the GIL, and the worker thread takes the GIL back after every call, waiting
    for the event loop's thread to let go of it (up to the 5 ms switch interval). Two
    calls an issue kept a batch's commit waiting that long for every call, and the
    event loop's thread idle a sixth of the time for want of answered requests (a
    sixth of the SQLite exchange's throughput: /proc's per-thread CPU under wrk).
    """
    # Only "?" placeholders are joined into the statements below (noqa: S608), never a
    # value.
    keys = list(dict.fromkeys(args[0] for args in batch))  # unique, in order
    taken: set[bytes] = set()
    for chunk in _chunks(keys):
        marks = ",".join("?" * len(chunk))
        select = f"SELECT key FROM jtis WHERE expires_at > ? AND key IN ({marks})"  # noqa: S608
        rows = conn.execute(select, (now, *chunk)).fetchall()
        taken.update(bytes(row[0]) for row in rows)
    claims: dict[bytes, int] = {}
    tokens: list[tuple[bytes, bytes, int]] = []
    outcomes: list[bool] = []
    for jti_key, jti_expires_at, token_hash, record, token_expires_at in batch:
        free = jti_key not in taken and jti_key not in claims
        if free:
            claims[jti_key] = jti_expires_at
            tokens.append((token_hash, record, token_expires_at))
        outcomes.append(free)
    for claim_rows in _chunks(list(claims.items())):
        values = ",".join("(?, ?)" for _ in claim_rows)
        params: list[object] = [value for row in claim_rows for value in row]
        claim = (
            f"INSERT INTO jtis (key, expires_at) VALUES {values} ON CONFLICT (key) "  # noqa: S608
            "DO UPDATE SET expires_at = excluded.expires_at WHERE jtis.expires_at <= ?"
        )
        claimed = conn.execute(claim, (*params, now)).rowcount
        if claimed != len(claim_rows):  # cannot happen under the write lock: deny all
            raise sqlite3.DatabaseError("a jti read as free could not be claimed")
    for token_rows in _chunks(tokens):
        values = ",".join("(?, ?, ?)" for _ in token_rows)
        params = [value for row in token_rows for value in row]
        insert = f"INSERT INTO tokens (hash, record, expires_at) VALUES {values}"  # noqa: S608
        conn.execute(insert, params)
    return outcomes


def _chunks(rows: list[T]) -> list[list[T]]:
    return [rows[i : i + _ROWS] for i in range(0, len(rows), _ROWS)]


Kind = Literal["read", "write", "issue"]


class _Call:
    """One caller's operation, waiting for its batch, and then its outcome.

    ``run`` takes the connection (for an issue also the batch's time) and is called in
    the worker thread; ``value`` and ``error`` are set there, read on the loop after
    the hop.
    """

    __slots__ = ("args", "error", "finished", "future", "kind", "run", "value", "what")

    def __init__(
        self,
        what: str,
        kind: Kind,
        run: Callable[..., Any] | None,
        future: asyncio.Future[Any],
        args: IssueArgs | None = None,
    ) -> None:
        self.what = what
        self.kind = kind
        self.run = run
        self.args = args
        self.future = future
        self.value: Any = None
        self.error: BaseException | None = None
        self.finished = False

    def deliver(self) -> None:
        if self.future.done():  # its caller was cancelled
            return
        if not self.finished:
            self.future.cancel()
        elif self.error is not None:
            self.future.set_exception(self.error)
        else:
            self.future.set_result(self.value)


class SQLiteStore:
    """A ``Store`` in one SQLite file.

    The file (and its parent directory) is created on first use. Once this store has
    opened it, a vanished file is NOT recreated: an empty database would forget every
    claimed jti and let a JWT be exchanged again. Calls fail with ``StoreUnavailable``
    until the file is back.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._path = Path(path).absolute()
        self._busy_timeout = busy_timeout
        self._clock = clock
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._identity: tuple[int, int] | None = None
        self._opened_once = False
        self._last_purge = float("-inf")
        # Batching, on the first event loop the store is used from (until it closes).
        self._bind_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: list[_Call] = []
        self._batching = False  # a batch is scheduled, or in the thread
        # The batches' thread (trustpub.hop: a quarter of a pooled hop's CPU).
        self._hop = Hop("trustpub-sqlite-store")
        # Lookups read on the event loop's thread first (trustpub.sqlite_reads).
        self._reads = LoopReader(self._path)

    @property
    def path(self) -> Path:
        return self._path

    # -- connection management (called with self._lock held, in a worker thread) --

    def _unavailable(self, reason: str) -> StoreUnavailable:
        detail = f"Token store unavailable: SQLite database {self._path}: {reason}"
        logger.warning(detail)
        return StoreUnavailable(detail)

    def _close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except sqlite3.Error:
                logger.debug("closing the SQLite store failed", exc_info=True)
        self._conn = None
        self._identity = None

    def _file_identity(self) -> tuple[int, int] | None:
        return file_identity(self._path)

    def _connection(self) -> sqlite3.Connection:
        identity = self._file_identity()
        if self._conn is not None and identity == self._identity:
            return self._conn
        # Not open yet, or the file was removed or replaced under us (an open
        # connection would keep writing to the deleted file): start afresh.
        self._close()
        if identity is None and self._opened_once:
            raise self._unavailable("the database file is missing")
        if not self._opened_once:
            self._path.parent.mkdir(parents=True, exist_ok=True)
        mode = "rw" if self._opened_once else "rwc"
        uri = f"{self._path.as_uri()}?mode={mode}"
        conn = sqlite3.connect(
            uri,
            uri=True,
            timeout=self._busy_timeout,
            isolation_level=None,  # we issue BEGIN/COMMIT ourselves
            check_same_thread=False,  # used from worker threads, serialised by _lock
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
            mode_row = conn.execute("PRAGMA journal_mode = WAL").fetchone()
            if mode_row is None or str(mode_row[0]).lower() != "wal":
                logger.warning("SQLite store %s: WAL mode unavailable", self._path)
            # FULL: a claimed jti survives a power cut; NORMAL could lose the last
            # commits and let a JWT be exchanged twice. Writes are rare here.
            conn.execute("PRAGMA synchronous = FULL")
            self._migrate(conn)
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        self._identity = self._file_identity()
        self._opened_once = True
        self._purge(conn)
        return conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        if version == SCHEMA_VERSION:
            return
        if version > SCHEMA_VERSION:
            raise self._unavailable(
                f"schema version {version} is newer than this trustpub supports "
                f"({SCHEMA_VERSION}); upgrade trustpub"
            )
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Re-read under the writer lock: another process may have just migrated.
            (version,) = conn.execute("PRAGMA user_version").fetchone()
            if version < SCHEMA_VERSION:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        finally:
            if conn.in_transaction:
                conn.execute("ROLLBACK")

    def _purge(self, conn: sqlite3.Connection) -> None:
        """Delete expired tokens and jti claims. Opportunistic: a failure is only logged."""
        now = self._clock()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute("DELETE FROM tokens WHERE expires_at <= ?", (int(now),))
                conn.execute("DELETE FROM jtis WHERE expires_at <= ?", (int(now),))
                conn.execute("COMMIT")
            finally:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
        except sqlite3.Error as exc:
            logger.info("SQLite store %s: purge of expired rows skipped: %s", self._path, exc)
            return
        self._last_purge = now

    def _run_batch(self, calls: list[_Call]) -> None:
        """Run ``calls`` in arrival order, the issues together at the place of the first;
        set each one's outcome. In the worker thread."""
        with self._lock:
            checked = False

            def connection() -> sqlite3.Connection:
                # The file's identity is checked once a batch (a batch is one moment),
                # and again after a failure dropped the connection.
                nonlocal checked
                if checked and self._conn is not None:
                    return self._conn
                checked = True
                return self._connection()

            issues = [call for call in calls if call.kind == "issue"]
            for call in calls:
                if call.kind != "issue":
                    self._run_one(call, connection)
                elif call is issues[0]:
                    self._run_issues(issues, connection)

    def _failure(self, what: str, exc: Exception) -> StoreUnavailable:
        # Drop the connection: whatever broke (locked, read-only, I/O error, file
        # replaced), the next call starts from a fresh one.
        self._close()
        if isinstance(exc, StoreUnavailable):
            return exc
        return self._unavailable(f"{what} failed: {exc}")

    def _run_one(self, call: _Call, connection: Callable[[], sqlite3.Connection]) -> None:
        try:
            assert call.run is not None  # every call but an issue has its run
            call.value = call.run(connection())
        except (StoreUnavailable, sqlite3.Error, OSError) as exc:
            call.error = self._failure(call.what, exc)
        except Exception as exc:  # the caller's own, raised to it alone
            call.error = exc
        call.finished = True

    def _run_issues(
        self, issues: list[_Call], connection: Callable[[], sqlite3.Connection]
    ) -> None:
        """The issues of a batch in one transaction: one fsync for all of them."""
        try:
            conn = connection()
            now = int(self._clock())
            conn.execute("BEGIN IMMEDIATE")
            try:
                batch = [call.args for call in issues if call.args is not None]
                for call, issued in zip(issues, _issue_batch(conn, batch, now), strict=True):
                    call.value = issued
                conn.execute("COMMIT")
            finally:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
        except Exception as exc:  # anything: no issue of the batch stands
            first = self._failure("issue", exc)
            for n, call in enumerate(issues):
                error = first if n == 0 else StoreUnavailable(first.detail)
                if error is not exc:
                    error.__cause__ = exc
                call.value, call.error, call.finished = None, error, True
            return
        for call in issues:
            call.finished = True
        if self._clock() - self._last_purge >= PURGE_INTERVAL:
            self._purge(conn)

    async def _run(
        self, what: str, kind: Kind, run: Callable[..., T] | None, args: IssueArgs | None = None
    ) -> T:
        loop = asyncio.get_running_loop()
        call = _Call(what, kind, run, loop.create_future(), args)
        if loop is not self._loop and not self._bind(loop):
            # Another event loop, still open, has the batches (not how trustpub uses a
            # store): run alone. The lock serialises this call with that loop's batches.
            await anyio.to_thread.run_sync(self._run_batch, [call])
            call.deliver()
            result: T = await call.future
            return result
        self._pending.append(call)
        if not self._batching:
            # The first batch takes every call made in this turn of the loop.
            self._batching = True
            loop.call_soon(self._next_batch)
        result = await call.future
        return result

    def _bind(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Batch on ``loop`` from now on, unless the loop batching so far is still open.

        The batching state is used from its loop's thread only; this switch, made when
        that loop is closed (its tasks are over), is the one change from elsewhere.
        """
        with self._bind_lock:
            if self._loop is not None and not self._loop.is_closed():
                return False
            self._loop, self._pending, self._batching = loop, [], False
            return True

    def _next_batch(self) -> None:
        """On the loop: send the waiting calls to the thread as one batch (a caller
        cancelled before it is sent is left out); ``_batch_done`` is called back as soon
        as it has run, and sends the next. Called back, not awaited: a task would be
        woken a turn of the loop later, for the callers and for the next batch (under
        load that turn is milliseconds, and the batch's callers and the calls waiting
        for the next were kept waiting that long)."""
        batch, self._pending = [call for call in self._pending if not call.future.done()], []
        if not batch:
            self._batching = False
            return
        self._hop.submit(
            functools.partial(self._run_batch, batch), functools.partial(self._batch_done, batch)
        )

    def _batch_done(self, batch: list[_Call], error: BaseException | None) -> None:
        # ``_run_batch`` sets every call's outcome; should it fail itself (a bug), the
        # calls it did not settle are cancelled by ``deliver``.
        if error is not None:
            logger.error("SQLite store: a batch failed", exc_info=error)
        for call in batch:
            call.deliver()
        self._next_batch()

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
        # Claimed and stored with the other issues of its batch (``_issue_batch``): a
        # refused claim stores nothing.
        args = (jti_key, jti_expires_at, token_hash, record, token_expires_at)
        issued: bool = await self._run("issue", "issue", None, args)
        return issued

    async def lookup(self, token_hash: bytes) -> bytes | None:
        sql = "SELECT record FROM tokens WHERE hash = ? AND expires_at > ?"
        rows = self._reads.read(sql, (token_hash, int(self._clock())), trusted=self._identity)
        if rows is not None:
            return bytes(rows[0][0]) if rows else None

        def op(conn: sqlite3.Connection) -> bytes | None:
            row = conn.execute(sql, (token_hash, int(self._clock()))).fetchone()
            return bytes(row[0]) if row is not None else None

        return await self._run("lookup", "read", op)

    async def revoke(self, token_hash: bytes) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            now = int(self._clock())
            conn.execute("BEGIN IMMEDIATE")
            try:
                active = conn.execute(
                    "DELETE FROM tokens WHERE hash = ? AND expires_at > ?", (token_hash, now)
                ).rowcount
                conn.execute("DELETE FROM tokens WHERE hash = ?", (token_hash,))
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return active > 0

        return await self._run("revoke", "write", op)

    async def get_namespace_pin(self, key: str) -> str | None:
        def op(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(
                "SELECT namespace_id FROM namespace_pins WHERE key = ?", (key,)
            ).fetchone()
            return str(row[0]) if row is not None else None

        return await self._run("namespace pin lookup", "read", op)

    async def pin_namespace(self, key: str, namespace_id: str) -> str:
        def op(conn: sqlite3.Connection) -> str:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(
                    "INSERT OR IGNORE INTO namespace_pins (key, namespace_id) VALUES (?, ?)",
                    (key, namespace_id),
                )
                (pinned,) = conn.execute(
                    "SELECT namespace_id FROM namespace_pins WHERE key = ?", (key,)
                ).fetchone()
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return str(pinned)

        return await self._run("namespace pin", "write", op)

    async def ping(self) -> None:
        def op(conn: sqlite3.Connection) -> None:
            conn.execute("SELECT 1 FROM tokens LIMIT 1").fetchall()

        await self._run("ping", "read", op)

    async def aclose(self) -> None:
        self._reads.close()

        def close() -> None:
            with self._lock:
                self._close()

        await self._hop.run(close)
        self._hop.close()  # its thread is idle now: this returns at once
