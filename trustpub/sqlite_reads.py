"""One-row reads of a SQLite file on the event loop's own thread.

The SQLite files (the token store, the registry database) are used through a worker
thread, so that a wait for a lock or the disk never stalls the event loop. For the
hottest reads, a row by its key (introspection's token record, the exchange's
owner-configs generation), the hop costs more than the read: ``bench/run`` measured a
context switch and a third of introspection's CPU for it. A read of a WAL database does
not wait for writers (it sees the last committed state, so a change committed before it
began is seen), so such a read may run where it is asked.

``LoopReader.read`` does that on a read-only connection of its own, with no busy wait,
and gives up at the first hitch: the file is not the one its caller has open (missing
or replaced), a lock a reader must wait for, an I/O error. It then answers None and the
caller takes its usual path through the worker thread, where the waits and the errors
are dealt with as for every other call. A connection belongs to the thread that opened
it; a read from another thread opens its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, TypeVar

T = TypeVar("T")


def file_identity(path: Path) -> tuple[int, int] | None:
    """The file's device and inode, None when there is no file."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino)


class ThisTurn(Generic[T]):
    """A value read on an event loop's thread, kept for the rest of that turn of the loop.

    Used where a read must not predate the request it answers (a token's file, the
    owner configs' generation): the value is forgotten by a callback scheduled when it
    was read, and callbacks run in the order they were scheduled (asyncio and uvloop
    alike), so every caller given the kept value was scheduled, and its request had
    arrived, before the read. None is never kept; off an event loop nothing is kept.
    """

    def __init__(self) -> None:
        self._kept: tuple[asyncio.AbstractEventLoop, T] | None = None

    def get(self, read: Callable[[], T | None]) -> T | None:
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        kept = self._kept
        if kept is not None and kept[0] is loop:
            return kept[1]
        value = read()
        if value is not None and loop is not None:
            self._kept = (loop, value)
            loop.call_soon(self._forget)
        return value

    def _forget(self) -> None:
        self._kept = None


class LoopReader:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._conn: sqlite3.Connection | None = None
        self._identity: tuple[int, int] | None = None
        self._thread: int | None = None
        # The file's identity, looked at once per turn of the event loop (a ``stat`` a
        # read was 4.5 % of an introspection's CPU on SQLite; py-spy).
        self._identity_now: ThisTurn[tuple[int, int]] = ThisTurn()

    def read(
        self, sql: str, params: tuple[Any, ...], *, trusted: tuple[int, int] | None
    ) -> list[Any] | None:
        """The rows ``sql`` reads, or None when it cannot be read here at once.

        ``trusted``: the identity of the file the caller has open (None: none open,
        nothing is read here). The file at the path must still be that one.
        """
        if trusted is None:
            return None
        identity = self._identity_now.get(lambda: file_identity(self._path))
        if identity != trusted:
            return None
        thread = threading.get_ident()
        conn = self._conn
        if conn is None or identity != self._identity or thread != self._thread:
            self.close()
            try:
                conn = sqlite3.connect(
                    f"{self._path.as_uri()}?mode=ro", uri=True, timeout=0, isolation_level=None
                )
            except sqlite3.Error:
                return None
            self._conn, self._identity, self._thread = conn, identity, thread
        try:
            # fetchall: the statement runs to its end, so no read snapshot stays open.
            return conn.execute(sql, params).fetchall()
        except sqlite3.Error:
            self.close()
            return None

    def close(self) -> None:
        """Close this thread's connection (one another thread opened is dropped, for the
        collector: a connection may only be closed by its own thread)."""
        conn, self._conn, self._identity = self._conn, None, None
        if conn is not None and self._thread == threading.get_ident():
            with contextlib.suppress(sqlite3.Error):
                conn.close()
