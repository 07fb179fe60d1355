"""SQLite store: the embedded default, one file, no server.

Safe for several service processes on one host: the file is in WAL mode, every write
runs in ``BEGIN IMMEDIATE`` (the writer lock is taken up front, so two processes
cannot both read "jti unclaimed" and then both insert), and ``busy_timeout`` makes a
writer wait for the lock instead of failing at once. The blocking ``sqlite3`` calls run
in a worker thread so the event loop keeps serving.

Not for several hosts sharing a network file system: use the Redis store there.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import anyio.to_thread

from trustpub.errors import StoreUnavailable
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
        try:
            st = os.stat(self._path)
        except FileNotFoundError:
            return None
        return (st.st_dev, st.st_ino)

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

    def _run_sync(self, what: str, operation: Callable[[sqlite3.Connection], T]) -> T:
        with self._lock:
            try:
                conn = self._connection()
                return operation(conn)
            except StoreUnavailable:
                self._close()
                raise
            except (sqlite3.Error, OSError) as exc:
                # Drop the connection: whatever broke (locked, read-only, I/O error,
                # file replaced), the next call starts from a fresh one.
                self._close()
                raise self._unavailable(f"{what} failed: {exc}") from exc

    async def _run(self, what: str, operation: Callable[[sqlite3.Connection], T]) -> T:
        return await anyio.to_thread.run_sync(self._run_sync, what, operation)

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

        def op(conn: sqlite3.Connection) -> bool:
            now = int(self._clock())
            conn.execute("BEGIN IMMEDIATE")
            try:
                # An expired claim no longer protects anything; let it be claimed anew.
                conn.execute("DELETE FROM jtis WHERE key = ? AND expires_at <= ?", (jti_key, now))
                try:
                    conn.execute(
                        "INSERT INTO jtis (key, expires_at) VALUES (?, ?)",
                        (jti_key, jti_expires_at),
                    )
                except sqlite3.IntegrityError:
                    conn.execute("ROLLBACK")
                    return False
                conn.execute(
                    "INSERT INTO tokens (hash, record, expires_at) VALUES (?, ?, ?)",
                    (token_hash, record, token_expires_at),
                )
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            if self._clock() - self._last_purge >= PURGE_INTERVAL:
                self._purge(conn)
            return True

        return await self._run("issue", op)

    async def lookup(self, token_hash: bytes) -> bytes | None:
        def op(conn: sqlite3.Connection) -> bytes | None:
            row = conn.execute(
                "SELECT record FROM tokens WHERE hash = ? AND expires_at > ?",
                (token_hash, int(self._clock())),
            ).fetchone()
            return bytes(row[0]) if row is not None else None

        return await self._run("lookup", op)

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

        return await self._run("revoke", op)

    async def get_namespace_pin(self, key: str) -> str | None:
        def op(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(
                "SELECT namespace_id FROM namespace_pins WHERE key = ?", (key,)
            ).fetchone()
            return str(row[0]) if row is not None else None

        return await self._run("namespace pin lookup", op)

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

        return await self._run("namespace pin", op)

    async def ping(self) -> None:
        def op(conn: sqlite3.Connection) -> None:
            conn.execute("SELECT 1 FROM tokens LIMIT 1").fetchall()

        await self._run("ping", op)

    async def aclose(self) -> None:
        def close() -> None:
            with self._lock:
                self._close()

        await anyio.to_thread.run_sync(close)
