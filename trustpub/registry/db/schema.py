"""The registry database's schema, as ordered migrations, and the runner that applies
them with a version check.

A database records the version of the last migration applied. Opening one:

- newer than this code knows: refused (``SchemaTooNew``), never written to;
- older: every pending migration runs, in order, in ONE transaction taken with the
  writer lock, after the version is read again under that lock (another process may
  have just migrated); a failure leaves the database as it was.

Migrations are append-only: a released one is never edited, a change is a new one.
The runner is the same for every engine; an engine supplies where it keeps the version
and its transaction.

One list, ``SQLITE_MIGRATIONS``, numbers the migrations of BOTH engines (SQLite and
PostgreSQL): write a migration once, in SQL both run. The rules:

- types: ``INTEGER`` (PostgreSQL: ``BIGINT``), ``INTEGER PRIMARY KEY`` for an id the
  database assigns (PostgreSQL: an identity column), ``TEXT``, ``BLOB`` (``BYTEA``),
  ``REAL`` (``DOUBLE PRECISION``); booleans as ``INTEGER`` 0/1; times as unix seconds;
  ``WITHOUT ROWID`` is dropped. ``postgresql_statements`` makes exactly these
  replacements, word by word, and nothing else;
- statements both dialects share: ``CREATE TABLE``/``CREATE INDEX`` (``IF NOT EXISTS``),
  ``ALTER TABLE ... ADD COLUMN``, ``INSERT``/``UPDATE``/``DELETE`` with ``ON CONFLICT``;
  no ``PRAGMA``, ``INSERT OR ...``, ``COLLATE NOCASE`` (fold case in the query:
  ``lower(col) = lower(?)``, ASCII values only), no SQLite or PostgreSQL functions
  the other lacks;
- a migration that cannot follow them gives its PostgreSQL statements in
  ``POSTGRESQL_VARIANTS`` under its version (migration 1 does: case-insensitive
  unique names).

``postgresql_statements`` refuses a statement it recognises as SQLite-only, and the
registry tests run every migration on both engines and compare the resulting columns
(tests/registry/test_db.py), so a migration that breaks the rule fails there.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol, TypeVar

from trustpub.registry.db.errors import StorageUnavailable

C = TypeVar("C")
C_contra = TypeVar("C_contra", contravariant=True)


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    summary: str
    statements: tuple[str, ...]


class SchemaTooNew(StorageUnavailable):
    """The database was migrated by a newer trustpub; this one must not touch it."""

    def __init__(self, found: int, supported: int) -> None:
        super().__init__(
            f"schema version {found} is newer than this trustpub supports ({supported}); "
            "upgrade trustpub"
        )
        self.found = found
        self.supported = supported


class VersionKeeper(Protocol[C_contra]):
    """Where an engine keeps the schema version, and how it runs a write transaction."""

    def read_version(self, conn: C_contra) -> int: ...

    def write_version(self, conn: C_contra, version: int) -> None: ...

    def transaction(self, conn: C_contra) -> AbstractContextManager[None]: ...


def check_ordered(migrations: Sequence[Migration]) -> None:
    """Migrations are numbered 1, 2, 3, ... in the order they run."""
    numbers = [m.version for m in migrations]
    if numbers != list(range(1, len(numbers) + 1)):
        raise ValueError(f"migrations must be numbered 1..N in order, got {numbers}")


def migrate(
    conn: C,
    migrations: Sequence[Migration],
    keeper: VersionKeeper[C],
    execute: Callable[[C, str], object],
) -> int:
    """Bring the database to the latest version; returns the version it was at."""
    check_ordered(migrations)
    latest = len(migrations)
    found = keeper.read_version(conn)
    if found > latest:
        raise SchemaTooNew(found, latest)
    if found == latest:
        return found
    with keeper.transaction(conn):
        found = keeper.read_version(conn)
        if found > latest:
            raise SchemaTooNew(found, latest)
        for migration in migrations[found:]:
            for statement in migration.statements:
                execute(conn, statement)
        if found < latest:
            keeper.write_version(conn, latest)
    return found


SQLITE_MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "users, API tokens, crates, versions, owners",
        # IF NOT EXISTS: databases created before the version check could hold the
        # tables without the version stamp (the stamp was a separate statement).
        (
            """CREATE TABLE IF NOT EXISTS users (
                id INTEGER PRIMARY KEY,
                login TEXT NOT NULL UNIQUE COLLATE NOCASE,
                created_at INTEGER NOT NULL
            )""",
            """CREATE TABLE IF NOT EXISTS api_tokens (
                id INTEGER PRIMARY KEY,
                user_id INTEGER NOT NULL REFERENCES users (id),
                name TEXT NOT NULL,
                hash BLOB NOT NULL UNIQUE,
                scopes TEXT NOT NULL,
                crates TEXT NOT NULL,
                created_at INTEGER NOT NULL,
                expires_at INTEGER,
                revoked_at INTEGER,
                last_used_at INTEGER
            )""",
            """CREATE TABLE IF NOT EXISTS crates (
                id INTEGER PRIMARY KEY,
                name TEXT NOT NULL UNIQUE COLLATE NOCASE,
                canonical TEXT NOT NULL UNIQUE,
                description TEXT,
                homepage TEXT,
                documentation TEXT,
                repository TEXT,
                keywords TEXT NOT NULL DEFAULT '[]',
                categories TEXT NOT NULL DEFAULT '[]',
                trustpub_only INTEGER NOT NULL DEFAULT 0,
                created_at INTEGER NOT NULL,
                updated_at INTEGER NOT NULL,
                index_updated_at INTEGER NOT NULL
            )""",
            """CREATE TABLE IF NOT EXISTS versions (
                id INTEGER PRIMARY KEY,
                crate_id INTEGER NOT NULL REFERENCES crates (id),
                num TEXT NOT NULL,
                num_no_build TEXT NOT NULL,
                entry TEXT NOT NULL,
                cksum TEXT NOT NULL,
                size INTEGER NOT NULL,
                yanked INTEGER NOT NULL DEFAULT 0,
                license TEXT,
                rust_version TEXT,
                description TEXT,
                published_by INTEGER REFERENCES users (id),
                trustpub_data TEXT,
                created_at INTEGER NOT NULL,
                updated_at INTEGER NOT NULL,
                UNIQUE (crate_id, num_no_build)
            )""",
            """CREATE TABLE IF NOT EXISTS owners (
                crate_id INTEGER NOT NULL REFERENCES crates (id),
                user_id INTEGER NOT NULL REFERENCES users (id),
                created_at INTEGER NOT NULL,
                PRIMARY KEY (crate_id, user_id)
            ) WITHOUT ROWID""",
        ),
    ),
)

SCHEMA_VERSION = len(SQLITE_MIGRATIONS)


# PostgreSQL statements of the migrations whose SQL is not portable (see the docstring).
POSTGRESQL_VARIANTS: dict[int, tuple[str, ...]] = {
    1: (
        """CREATE TABLE users (
            id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            login TEXT NOT NULL,
            created_at BIGINT NOT NULL
        )""",
        # SQLite's UNIQUE COLLATE NOCASE (ASCII case folding; logins are ASCII).
        "CREATE UNIQUE INDEX users_login_nocase ON users (lower(login))",
        """CREATE TABLE api_tokens (
            id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            user_id BIGINT NOT NULL REFERENCES users (id),
            name TEXT NOT NULL,
            hash BYTEA NOT NULL UNIQUE,
            scopes TEXT NOT NULL,
            crates TEXT NOT NULL,
            created_at BIGINT NOT NULL,
            expires_at BIGINT,
            revoked_at BIGINT,
            last_used_at BIGINT
        )""",
        """CREATE TABLE crates (
            id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            name TEXT NOT NULL,
            canonical TEXT NOT NULL UNIQUE,
            description TEXT,
            homepage TEXT,
            documentation TEXT,
            repository TEXT,
            keywords TEXT NOT NULL DEFAULT '[]',
            categories TEXT NOT NULL DEFAULT '[]',
            trustpub_only BIGINT NOT NULL DEFAULT 0,
            created_at BIGINT NOT NULL,
            updated_at BIGINT NOT NULL,
            index_updated_at BIGINT NOT NULL
        )""",
        "CREATE UNIQUE INDEX crates_name_nocase ON crates (lower(name))",
        """CREATE TABLE versions (
            id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            crate_id BIGINT NOT NULL REFERENCES crates (id),
            num TEXT NOT NULL,
            num_no_build TEXT NOT NULL,
            entry TEXT NOT NULL,
            cksum TEXT NOT NULL,
            size BIGINT NOT NULL,
            yanked BIGINT NOT NULL DEFAULT 0,
            license TEXT,
            rust_version TEXT,
            description TEXT,
            published_by BIGINT REFERENCES users (id),
            trustpub_data TEXT,
            created_at BIGINT NOT NULL,
            updated_at BIGINT NOT NULL,
            UNIQUE (crate_id, num_no_build)
        )""",
        """CREATE TABLE owners (
            crate_id BIGINT NOT NULL REFERENCES crates (id),
            user_id BIGINT NOT NULL REFERENCES users (id),
            created_at BIGINT NOT NULL,
            PRIMARY KEY (crate_id, user_id)
        )""",
    ),
}

_WORDS = (
    (
        re.compile(r"\bINTEGER\s+PRIMARY\s+KEY(\s+AUTOINCREMENT)?\b", re.I),
        "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
    ),
    (re.compile(r"\bINTEGER\b", re.I), "BIGINT"),
    (re.compile(r"\bBLOB\b", re.I), "BYTEA"),
    (re.compile(r"\bREAL\b", re.I), "DOUBLE PRECISION"),
    (re.compile(r"\)\s*WITHOUT\s+ROWID\b", re.I), ")"),
)
_SQLITE_ONLY = re.compile(
    r"\bCOLLATE\s+NOCASE\b|\bPRAGMA\b|\bINSERT\s+OR\b|\bREPLACE\s+INTO\b|\bAUTOINCREMENT\b",
    re.I,
)


def postgresql_statements(migration: Migration) -> tuple[str, ...]:
    """What ``migration`` runs on PostgreSQL: its variant, else its portable SQL with
    the type names replaced (see the docstring). ``ValueError`` for SQLite-only SQL."""
    variant = POSTGRESQL_VARIANTS.get(migration.version)
    if variant is not None:
        return variant
    translated = []
    for statement in migration.statements:
        for pattern, replacement in _WORDS:
            statement = pattern.sub(replacement, statement)
        found = _SQLITE_ONLY.search(statement)
        if found is not None:
            raise ValueError(
                f"migration {migration.version} ({migration.summary}): {found.group(0)!r} "
                "is SQLite-only; write portable SQL or give its PostgreSQL statements in "
                "POSTGRESQL_VARIANTS (see trustpub/registry/db/schema.py)"
            )
        translated.append(statement)
    return tuple(translated)
