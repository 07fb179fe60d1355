"""The SQLite engine: one file, WAL mode, shared by the processes of one host.

The token store's guards (``trustpub.store.sqlite``), for the registry's data:

- the file is created (0600, in a 0700 directory) only by the first ``open()``; once
  open, a file that vanished is NOT recreated: an empty database would forget every
  crate, user and token, and acknowledge publishes that a restart would lose. Calls
  raise ``StorageUnavailable`` until the file is back (moved away and back: used
  again). Another file put in its place is refused until a restart: the -wal and
  -shm files beside it are the old file's, and SQLite would apply them to it.
- every SQLite failure becomes ``StorageUnavailable`` (``StorageFull`` when the disk
  is full) and drops the connection, so the next call starts from a fresh one;
- ``check_writable()`` takes the writer lock, so a read-only or vanished file shows
  before a write fails.

Writes run in ``BEGIN IMMEDIATE`` (the writer lock taken up front, so a check inside
the transaction sees the state it changes); ``busy_timeout`` makes a writer wait for
the lock. The blocking calls run in a worker thread, serialised per engine by a lock.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from trustpub.registry.db.errors import CommitFailed, StorageFull, StorageUnavailable
from trustpub.registry.db.queries import Connection
from trustpub.registry.db.schema import SQLITE_MIGRATIONS, Migration, SchemaTooNew, migrate
from trustpub.sqlite_reads import LoopReader, file_identity

log = logging.getLogger("trustpub.registry")

T = TypeVar("T")

_SQLITE_FULL = 13


class SQLiteEngine:
    """Connections, transactions and failure handling for one SQLite file."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        busy_timeout: float = 5.0,
        migrations: tuple[Migration, ...] = SQLITE_MIGRATIONS,
    ) -> None:
        self.path = Path(path).absolute()
        self._busy_timeout = busy_timeout
        self._migrations = migrations
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._identity: tuple[int, int] | None = None
        self._expected: tuple[int, int] | None = None  # the file first opened
        self._opened_once = False
        self._reads = LoopReader(self.path)

    # -- lifecycle ---------------------------------------------------------------------

    def open(self) -> None:
        """Create the file if this is its first use, migrate it, and check it can be
        written. Raises ``StorageUnavailable`` (``SchemaTooNew``: a newer trustpub's)."""
        with self._lock:
            if not self._opened_once:
                self._create()
            self._run_locked(self._check_writable)

    def close(self) -> None:
        self._reads.close()
        with self._lock:
            self._close()

    def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` with the connection, serialised with the other calls of this engine."""
        with self._lock:
            return self._run_locked(fn)

    def read_now(self, sql: str, params: tuple[Any, ...]) -> list[Any] | None:
        """The rows of ``sql``, read on this thread from the file this engine has open,
        never waiting (``trustpub.sqlite_reads``); None at the first hitch."""
        return self._reads.read(sql, params, trusted=self._identity)

    async def read_async(self, sql: str, params: tuple[Any, ...]) -> list[Any] | None:
        """None: a read is made on the loop at once (``read_now``) or in a worker thread."""
        return None

    def check_writable(self) -> None:
        """Raise ``StorageUnavailable`` unless the file is there and the writer lock can
        be taken."""
        self.run(self._check_writable)

    @contextmanager
    def transaction(self, conn: Connection) -> Iterator[None]:
        """A write transaction: the writer lock is taken at once. (Should the ROLLBACK
        or the COMMIT fail, the error drops the connection, which rolls back.) A failed
        COMMIT raises ``CommitFailed``: an I/O error may come after the commit record
        reached the file, so whether it was recorded is read back, not assumed."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise CommitFailed(self._failure(f"COMMIT failed: {exc}", exc)) from exc

    # -- schema version (VersionKeeper) -------------------------------------------------

    def read_version(self, conn: Connection) -> int:
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        return int(version)

    def write_version(self, conn: Connection, version: int) -> None:
        conn.execute(f"PRAGMA user_version = {int(version)}")

    # -- internals (called with self._lock held) ----------------------------------------

    def _create(self) -> None:
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            # SQLite creates its -wal and -shm files beside the database: the directory
            # must be writable, and saying so here is clearer than SQLite's "unable to
            # open database file".
            probe = self.path.with_name(f".{self.path.name}.probe-{secrets.token_hex(8)}")
            try:
                os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            except OSError as exc:
                reason = f"cannot create files in {self.path.parent}: {exc.strerror}"
                raise self._failure(reason, exc) from exc
            probe.unlink()
            # Created here, owner-only: SQLite gives its -wal and -shm files the mode
            # of the database file.
            os.close(os.open(self.path, os.O_RDONLY | os.O_CREAT, 0o600))
        except OSError as exc:
            raise self._failure(f"cannot create the database: {exc}", exc) from exc

    def _check_writable(self, conn: Connection) -> None:
        with self.transaction(conn):
            conn.execute("SELECT 1 FROM users LIMIT 1").fetchall()

    def _run_locked(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        try:
            conn = self._connection()
            return fn(conn)
        except StorageUnavailable:
            self._close()
            raise
        except sqlite3.Error as exc:
            self._close()
            raise self._failure(f"{exc}", exc) from exc

    def _failure(self, reason: str, exc: BaseException | None = None) -> StorageUnavailable:
        detail = f"registry database {self.path}: {reason}"
        log.warning(detail)
        if _is_full(exc):
            return StorageFull(detail)
        return StorageUnavailable(detail)

    def _file_identity(self) -> tuple[int, int] | None:
        return file_identity(self.path)

    def _close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except sqlite3.Error:
                log.debug("closing the registry database failed", exc_info=True)
        self._conn = None
        self._identity = None

    def _connection(self) -> sqlite3.Connection:
        identity = self._file_identity()
        if self._conn is not None and identity == self._identity:
            return self._conn
        # Not open yet, or the file was removed or replaced under us (an open
        # connection would keep writing to the deleted file): start afresh.
        self._close()
        if identity is None:
            raise self._failure("the database file is missing")
        if self._expected is not None and identity != self._expected:
            # Another file at our path: its -wal and -shm would still be the old
            # file's, and SQLite would read them as this one's. Only a restart
            # (all processes) may take a restored file into use.
            raise self._failure(
                "the database file was replaced while in use; restart trustpub to use it"
            )
        # mode=rw: never create the file here, see the module docstring.
        conn = sqlite3.connect(
            f"{self.path.as_uri()}?mode=rw",
            uri=True,
            timeout=self._busy_timeout,
            isolation_level=None,  # we issue BEGIN/COMMIT ourselves
            check_same_thread=False,  # used from worker threads, serialised by _lock
        )
        try:
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
            # Before anything writes (even the journal mode is written to the file).
            found = self.read_version(conn)
            if found > len(self._migrations):
                raise SchemaTooNew(found, len(self._migrations))
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()
            if mode is None or str(mode[0]).lower() != "wal":
                log.warning("registry database %s: WAL mode unavailable", self.path)
            conn.execute("PRAGMA foreign_keys = ON")
            # FULL: a crate whose file was renamed into place must not lose its row on
            # a power cut after the publish was acknowledged.
            conn.execute("PRAGMA synchronous = FULL")
            migrate(conn, self._migrations, self, _execute)
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        self._identity = identity
        self._expected = identity
        self._opened_once = True
        return conn


def _execute(conn: Connection, statement: str) -> None:
    conn.execute(statement)


def _is_full(exc: BaseException | None) -> bool:
    if isinstance(exc, sqlite3.Error):
        return (getattr(exc, "sqlite_errorcode", 0) & 0xFF) == _SQLITE_FULL
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
    return False
