"""The sparse index files, built when a crate changes and stored ready to serve.

Each crate has one row in ``index_files``: its index path (``de/mo/demo``), the file's
bytes (one JSON line per version, in publication order), its ETag (the SHA-256 of the
bytes, 40 hex digits, quoted), its Last-Modified (the crate's ``index_updated_at``) and
the *generation* it was built at. ``rebuild`` runs inside the write transaction of
every change that alters a crate's index lines (publish, yank, unyank), after the
change: the file and the change commit together, so a reader never sees one without
the other, and a row is always one whole file (never torn).

``index_generation`` holds one number, bumped by every rebuild; a file carries the
generation it was built at. A reader that knows generation ``g`` catches up by reading
the rows with a greater one (``changed_since``): one indexed read when nothing changed.
Writers are serialised by the writer lock (SQLite's ``BEGIN IMMEDIATE``, PostgreSQL's
advisory lock), so generations commit in order.

``FORMAT`` numbers the way a file is built from the versions. Files built by an older
format, crates without a file (a database migrated from before the table existed), and
files older than their crate's ``index_updated_at`` (a change made by a trustpub from
before, still running during an upgrade) are built when a process opens the database
(``build_missing``): the backfill is that rebuild-on-open, in Python, because an index
line is assembled by ``VersionRow.index_line`` and no SQL both engines share can do it.
Change the line's content, bump ``FORMAT``.

Plain SQL that runs on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

from trustpub.registry.db import queries
from trustpub.registry.db.queries import Connection
from trustpub.registry.names import index_path

Transaction = Callable[[Connection], AbstractContextManager[None]]

FORMAT = 1
"""How files are built now; a stored file of another format is rebuilt on open."""


@dataclass(frozen=True, slots=True)
class IndexFile:
    """One index file as stored. ``body`` is None where only the headers were read."""

    crate_id: int
    path: str
    etag: str
    last_modified: int
    generation: int
    body: bytes | None = field(default=None, repr=False)


def build(conn: Connection, crate_id: int) -> tuple[str, bytes, int]:
    """The crate's index file as its rows say now: (path, bytes, last modified)."""
    row = conn.execute(
        "SELECT name, index_updated_at FROM crates WHERE id = ?", (crate_id,)
    ).fetchone()
    body = "".join(
        json.dumps(v.index_line(), separators=(",", ":")) + "\n"
        for v in queries.versions(conn, crate_id)
    ).encode("utf-8")
    return index_path(str(row["name"])), body, int(row["index_updated_at"])


def etag_of(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:40] + '"'


def generation(conn: Connection) -> int:
    row = conn.execute("SELECT generation FROM index_generation WHERE id = 1").fetchone()
    return int(row[0]) if row is not None else 0


def rebuild(conn: Connection, crate_id: int) -> None:
    """Build the crate's index file and store it under a new generation. Call it inside
    the write transaction that changed the crate's versions, after the change."""
    path, body, last_modified = build(conn, crate_id)
    # An upsert: a missing row (a restored or emptied table) starts the count again.
    conn.execute(
        "INSERT INTO index_generation (id, generation) VALUES (1, 1) ON CONFLICT (id)"
        " DO UPDATE SET generation = index_generation.generation + 1"
    )
    current = generation(conn)
    conn.execute(
        "INSERT INTO index_files (crate_id, path, body, etag, last_modified, generation, format)"
        " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (crate_id) DO UPDATE SET"
        " path = excluded.path, body = excluded.body, etag = excluded.etag,"
        " last_modified = excluded.last_modified, generation = excluded.generation,"
        " format = excluded.format",
        (crate_id, path, body, etag_of(body), last_modified, current, FORMAT),
    )


def _unbuilt(conn: Connection) -> list[int]:
    found = conn.execute(
        "SELECT c.id FROM crates c LEFT JOIN index_files f ON f.crate_id = c.id"
        " WHERE f.crate_id IS NULL OR f.format <> ? OR f.last_modified <> c.index_updated_at"
        " ORDER BY c.id",
        (FORMAT,),
    ).fetchall()
    return [int(r[0]) for r in found]


def build_missing(conn: Connection, tx: Transaction) -> int:
    """Build the file of every crate that has none, or one of an older ``FORMAT``; how
    many were built. Reads first, and takes the writer lock only when there is work."""
    if not _unbuilt(conn):
        return 0
    with tx(conn):
        missing = _unbuilt(conn)  # again, under the lock: another process may have built
        for crate_id in missing:
            rebuild(conn, crate_id)
        return len(missing)


_HEAD = "SELECT crate_id, path, etag, last_modified, generation FROM index_files"


def _file(row: Any, with_body: bool) -> IndexFile:
    return IndexFile(
        crate_id=int(row["crate_id"]),
        path=str(row["path"]),
        etag=str(row["etag"]),
        last_modified=int(row["last_modified"]),
        generation=int(row["generation"]),
        body=bytes(row["body"]) if with_body else None,
    )


def heads(conn: Connection) -> tuple[int, list[IndexFile]]:
    """The generation and every file's headers (no bytes), read together."""
    # The generation first: a file committed between the two reads is then read with a
    # generation above the one returned, and read again by the next catch-up (harmless).
    current = generation(conn)
    return current, [_file(r, False) for r in conn.execute(_HEAD).fetchall()]


def changed_since(conn: Connection, since: int) -> tuple[int, list[IndexFile]]:
    """The generation now, and the headers of every file built after ``since``."""
    current = generation(conn)
    if current == since:
        return current, []
    found = conn.execute(f"{_HEAD} WHERE generation > ?", (since,)).fetchall()
    return current, [_file(r, False) for r in found]


def by_path(conn: Connection, path: str) -> IndexFile | None:
    """The file at ``path``, bytes included."""
    row = conn.execute(
        "SELECT crate_id, path, etag, last_modified, generation, body FROM index_files"
        " WHERE path = ?",
        (path,),
    ).fetchone()
    return _file(row, True) if row is not None else None


def files_after(conn: Connection, crate_id: int, limit: int) -> list[IndexFile]:
    """Up to ``limit`` files with their bytes, of the crates after ``crate_id``."""
    found = conn.execute(
        "SELECT crate_id, path, etag, last_modified, generation, body FROM index_files"
        " WHERE crate_id > ? ORDER BY crate_id LIMIT ?",
        (crate_id, limit),
    ).fetchall()
    return [_file(r, True) for r in found]


def by_ids(conn: Connection, crate_ids: list[int]) -> list[IndexFile]:
    """The files of these crates, bytes included."""
    files: list[IndexFile] = []
    for crate_id in crate_ids:
        row = conn.execute(
            "SELECT crate_id, path, etag, last_modified, generation, body FROM index_files"
            " WHERE crate_id = ?",
            (crate_id,),
        ).fetchone()
        if row is not None:
            files.append(_file(row, True))
    return files
