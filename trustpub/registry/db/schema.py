"""The registry database's schema, as ordered migrations, and the runner that applies
them with a version check.

A database records the version of the last migration applied. Opening one:

- newer than this code knows: refused (``SchemaTooNew``), never written to;
- older: every pending migration runs, in order, in ONE transaction taken with the
  writer lock, after the version is read again under that lock (another process may
  have just migrated); a failure leaves the database as it was.

Migrations are append-only: a released one is never edited, a change is a new one.
The runner is the same for every engine; an engine supplies its migrations (DDL is
engine-specific), where it keeps the version, and its transaction.
"""

from __future__ import annotations

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
    Migration(
        2,
        "audit trail (append-only), notification outbox, webhooks, user emails",
        (
            "ALTER TABLE users ADD COLUMN email TEXT",
            # No foreign key to crates: the trail outlives what it describes.
            """CREATE TABLE audit_events (
                id INTEGER PRIMARY KEY,
                created_at INTEGER NOT NULL,
                kind TEXT NOT NULL,
                crate_id INTEGER,
                crate TEXT,
                actor_login TEXT,
                client TEXT,
                request_id TEXT,
                details TEXT NOT NULL
            )""",
            "CREATE INDEX audit_events_by_crate ON audit_events (crate_id, id)",
            # Append-only, enforced by the database itself (SQLite's RAISE; PostgreSQL
            # says the same with a trigger function that raises).
            """CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
            BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END""",
            """CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
            BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END""",
            """CREATE TABLE webhooks (
                id INTEGER PRIMARY KEY,
                crate_id INTEGER NOT NULL REFERENCES crates (id),
                url TEXT NOT NULL,
                secret TEXT NOT NULL,
                created_by TEXT NOT NULL,
                created_at INTEGER NOT NULL,
                UNIQUE (crate_id, url)
            )""",
            # webhook_id without a foreign key: a subscription may be deleted while a
            # delivery for it is pending; the delivery then ends as failed.
            """CREATE TABLE outbox (
                id INTEGER PRIMARY KEY,
                event_id INTEGER NOT NULL REFERENCES audit_events (id),
                channel TEXT NOT NULL,
                recipient TEXT NOT NULL,
                address TEXT,
                webhook_id INTEGER,
                state TEXT NOT NULL DEFAULT 'pending',
                attempts INTEGER NOT NULL DEFAULT 0,
                next_attempt_at INTEGER NOT NULL,
                claimed_by TEXT,
                claimed_at INTEGER,
                last_error TEXT,
                delivered_at INTEGER,
                created_at INTEGER NOT NULL
            )""",
            "CREATE INDEX outbox_due ON outbox (state, next_attempt_at)",
            "CREATE INDEX outbox_by_event ON outbox (event_id)",
            "CREATE INDEX outbox_by_webhook ON outbox (webhook_id, id)",
        ),
    ),
    Migration(
        3,
        "owner invitations",
        # A pending invitation per crate and invited user; accepting it makes an owner.
        # ``invited_by_user_id`` is NULL when a Trusted Publishing token invited.
        (
            """CREATE TABLE IF NOT EXISTS owner_invitations (
                crate_id INTEGER NOT NULL REFERENCES crates (id),
                invited_user_id INTEGER NOT NULL REFERENCES users (id),
                invited_by_user_id INTEGER REFERENCES users (id),
                created_at INTEGER NOT NULL,
                expires_at INTEGER NOT NULL,
                PRIMARY KEY (crate_id, invited_user_id)
            )""",
        ),
    ),
    Migration(
        4,
        "owner-managed Trusted Publishing configs, pending publishers, their generation",
        (
            # One table for both providers. GitHub: repository_owner / repository_name /
            # workflow filename, owner_id the account id resolved at creation. GitLab:
            # namespace / project / CI config path, owner_id the namespace id, NULL until
            # the first successful exchange pins it. crate_id is NULL while the config is
            # a pending publisher (the crate does not exist yet; expires_at bounds it).
            # AUTOINCREMENT: a deleted config's id is never given to another one.
            """CREATE TABLE IF NOT EXISTS trustpub_configs (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                provider TEXT NOT NULL,
                crate_id INTEGER REFERENCES crates (id),
                crate_name TEXT NOT NULL,
                canonical TEXT NOT NULL,
                issuer TEXT NOT NULL,
                repository_owner TEXT NOT NULL,
                owner_id TEXT,
                repository_name TEXT NOT NULL,
                workflow TEXT NOT NULL,
                environment TEXT,
                extensions TEXT NOT NULL DEFAULT '{}',
                created_by INTEGER NOT NULL REFERENCES users (id),
                created_at INTEGER NOT NULL,
                expires_at INTEGER
            )""",
            "CREATE INDEX IF NOT EXISTS trustpub_configs_canonical ON trustpub_configs (canonical)",
            # Bumped by every change to trustpub_configs: a worker compares it with the
            # one its live policy set was built from (one indexed read per exchange).
            """CREATE TABLE IF NOT EXISTS trustpub_config_generation (
                id INTEGER PRIMARY KEY CHECK (id = 1),
                generation INTEGER NOT NULL
            )""",
            "INSERT INTO trustpub_config_generation (id, generation) VALUES (1, 0)"
            " ON CONFLICT DO NOTHING",
            # Which configs each generation changed: a worker catches up by reading only
            # those (its rebuild costs the changes, not the number of configs).
            """CREATE TABLE IF NOT EXISTS trustpub_config_changes (
                generation INTEGER NOT NULL,
                config_id INTEGER NOT NULL,
                PRIMARY KEY (generation, config_id)
            )""",
        ),
    ),
)

SCHEMA_VERSION = len(SQLITE_MIGRATIONS)
