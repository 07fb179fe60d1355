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
  unique names), or, for single statements, in ``POSTGRESQL_STATEMENTS`` (migration 2
  does: the triggers that keep the audit trail append-only; migration 5 too: its
  backfill reads the stored index entries' JSON, with SQLite's ``json_each`` and
  PostgreSQL's ``jsonb_array_elements``).

A migration that adds a table derived from stored data fills it in the same migration
(migration 5 fills ``dependencies`` from every version's index entry), so a database
that migrates answers as one that had the table from the start.

Migration 7 backfills new tables from existing data: the crates' ``keywords`` and
``categories`` JSON arrays become rows of ``crates_keywords`` and ``crates_categories``
(the columns stay as they were). Its reading of JSON is said once per engine
(``json_each`` on SQLite, ``jsonb_array_elements`` on PostgreSQL, in
``POSTGRESQL_STATEMENTS``), so a database of either engine keeps every keyword and
category it held.

Migration 9 adds ``webhooks.secret_enc``, the webhook signing secret encrypted
(``webhook_keys``); ``secret``, its plain text until then, is '' in every row written
since. SQL cannot encrypt, so the secrets stored before are sealed when a process opens
the database with its key (``RegistryDB.open``, ``events.seal_plain_secrets``): in ONE
write transaction, every row with a plain secret and no ciphertext gets its ciphertext
and its plain column cleared, so a secret is never lost nor left readable, and a crash
leaves them all as they were, for the next start to seal.

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
    Migration(
        5,
        "dependencies, one row per dependency of a version (reverse dependencies)",
        (
            # What each version's index entry lists under `deps`, queryable. `name` is
            # the name the manifest uses (the index `name`), `crate` the crate depended
            # on (the index `package` for a renamed dependency, else `name`), and
            # `canonical` its canonical name (names.canonical_name: ASCII case folded,
            # `-` as `_`). `registry` is NULL for a crate of this registry. `features`
            # is a JSON list; booleans 0/1. Rows are in the entry's order (by id).
            """CREATE TABLE dependencies (
                id INTEGER PRIMARY KEY,
                version_id INTEGER NOT NULL REFERENCES versions (id),
                name TEXT NOT NULL,
                crate TEXT NOT NULL,
                canonical TEXT NOT NULL,
                req TEXT NOT NULL,
                optional INTEGER NOT NULL,
                default_features INTEGER NOT NULL,
                features TEXT NOT NULL,
                target TEXT,
                kind TEXT NOT NULL,
                registry TEXT
            )""",
            "CREATE INDEX dependencies_by_crate ON dependencies (canonical, version_id)",
            "CREATE INDEX dependencies_by_version ON dependencies (version_id, id)",
            # Backfill from the stored index entries, in version and entry order. Dependency
            # names were checked as ASCII at publish, where lower() agrees on both engines.
            """INSERT INTO dependencies (version_id, name, crate, canonical, req, optional,
                default_features, features, target, kind, registry)
            SELECT v.id,
                json_extract(d.value, '$.name'),
                coalesce(json_extract(d.value, '$.package'), json_extract(d.value, '$.name')),
                replace(lower(coalesce(json_extract(d.value, '$.package'),
                    json_extract(d.value, '$.name'))), '-', '_'),
                json_extract(d.value, '$.req'),
                coalesce(json_extract(d.value, '$.optional'), 0),
                coalesce(json_extract(d.value, '$.default_features'), 1),
                coalesce(json(json_extract(d.value, '$.features')), '[]'),
                json_extract(d.value, '$.target'),
                coalesce(json_extract(d.value, '$.kind'), 'normal'),
                json_extract(d.value, '$.registry')
            FROM versions v, json_each(v.entry, '$.deps') d
            ORDER BY v.id, d.key""",
        ),
    ),
    Migration(
        6,
        "download counts per version and day, and totals on versions and crates",
        (
            # `date`: the UTC day, 'YYYY-MM-DD' (TEXT on both engines: sorts and compares
            # as dates do). Counts arrive in batches (trustpub.registry.downloads), each
            # added with ON CONFLICT ... DO UPDATE.
            """CREATE TABLE IF NOT EXISTS version_downloads (
                version_id INTEGER NOT NULL REFERENCES versions (id),
                date TEXT NOT NULL,
                downloads INTEGER NOT NULL,
                PRIMARY KEY (version_id, date)
            ) WITHOUT ROWID""",
            # Totals, kept in the same transaction as the daily rows: crate and version
            # answers read them without adding up every day. Nothing to backfill: no
            # download was counted per version before this migration.
            "ALTER TABLE versions ADD COLUMN downloads INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE crates ADD COLUMN downloads INTEGER NOT NULL DEFAULT 0",
        ),
    ),
    Migration(
        7,
        "crate categories and keywords as tables, filled from the crates' JSON columns",
        (
            # When each category slug was first offered (the API's created_at); the
            # names and descriptions are the configured list's, not stored here.
            """CREATE TABLE IF NOT EXISTS categories (
                slug TEXT PRIMARY KEY,
                created_at INTEGER NOT NULL
            )""",
            # Every slug a crate names, configured or not (the list may change; the
            # reads keep the configured ones). No foreign key to categories for that
            # reason.
            """CREATE TABLE IF NOT EXISTS crates_categories (
                crate_id INTEGER NOT NULL REFERENCES crates (id),
                slug TEXT NOT NULL,
                PRIMARY KEY (crate_id, slug)
            )""",
            "CREATE INDEX IF NOT EXISTS crates_categories_by_slug ON crates_categories (slug)",
            # Keywords in ASCII lower case, once each.
            """CREATE TABLE IF NOT EXISTS keywords (
                id INTEGER PRIMARY KEY,
                keyword TEXT NOT NULL UNIQUE,
                created_at INTEGER NOT NULL
            )""",
            """CREATE TABLE IF NOT EXISTS crates_keywords (
                crate_id INTEGER NOT NULL REFERENCES crates (id),
                keyword_id INTEGER NOT NULL REFERENCES keywords (id),
                PRIMARY KEY (crate_id, keyword_id)
            )""",
            "CREATE INDEX IF NOT EXISTS crates_keywords_by_keyword ON crates_keywords (keyword_id)",
            # The backfill, from the JSON arrays publishes wrote into crates.keywords and
            # crates.categories (which stay as they are): JSON functions differ, so
            # PostgreSQL runs its own statements (POSTGRESQL_STATEMENTS). A keyword is
            # first seen with the oldest crate naming it.
            """INSERT INTO keywords (keyword, created_at)
            SELECT lower(j.value), MIN(c.created_at)
            FROM crates c, json_each(CASE WHEN json_type(c.keywords) = 'array'
                                     THEN c.keywords ELSE '[]' END) j
            WHERE j.type = 'text' AND j.value <> ''
            GROUP BY lower(j.value)""",
            """INSERT INTO crates_keywords (crate_id, keyword_id)
            SELECT DISTINCT c.id, k.id
            FROM crates c, json_each(CASE WHEN json_type(c.keywords) = 'array'
                                     THEN c.keywords ELSE '[]' END) j
            JOIN keywords k ON k.keyword = lower(j.value)
            WHERE j.type = 'text'""",
            """INSERT INTO crates_categories (crate_id, slug)
            SELECT DISTINCT c.id, j.value
            FROM crates c, json_each(CASE WHEN json_type(c.categories) = 'array'
                                     THEN c.categories ELSE '[]' END) j
            WHERE j.type = 'text' AND j.value <> ''""",
        ),
    ),
    Migration(
        8,
        "sparse index files kept ready, and their generation",
        (
            # One built file per crate (trustpub.registry.db.index_files); the existing
            # crates' files are built when a process opens the database (build_missing).
            """CREATE TABLE IF NOT EXISTS index_files (
                crate_id INTEGER NOT NULL PRIMARY KEY REFERENCES crates (id),
                path TEXT NOT NULL UNIQUE,
                body BLOB NOT NULL,
                etag TEXT NOT NULL,
                last_modified INTEGER NOT NULL,
                generation INTEGER NOT NULL,
                format INTEGER NOT NULL
            )""",
            "CREATE INDEX IF NOT EXISTS index_files_generation ON index_files (generation)",
            """CREATE TABLE IF NOT EXISTS index_generation (
                id INTEGER PRIMARY KEY CHECK (id = 1),
                generation INTEGER NOT NULL
            )""",
            "INSERT INTO index_generation (id, generation) VALUES (1, 0) ON CONFLICT DO NOTHING",
        ),
    ),
    Migration(
        9,
        "webhook secrets encrypted at rest",
        (
            # The secrets stored in plain text before are sealed at open time (see the
            # docstring); `secret` keeps NOT NULL and holds '' once sealed.
            "ALTER TABLE webhooks ADD COLUMN secret_enc TEXT",
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

# Single statements PostgreSQL says its own way, in a migration otherwise portable: by
# migration, the index of the SQLite statement and the PostgreSQL statements run instead.
POSTGRESQL_STATEMENTS: dict[int, dict[int, tuple[str, ...]]] = {
    2: {
        # The trail is append-only: a trigger function refuses UPDATE and DELETE, as
        # SQLite's two RAISE triggers do.
        3: (
            """CREATE OR REPLACE FUNCTION audit_events_append_only() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION 'audit_events is append-only'; END
            $$""",
            """CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE
            ON audit_events FOR EACH ROW EXECUTE FUNCTION audit_events_append_only()""",
        ),
        4: (),
    },
    5: {
        # The backfill: PostgreSQL reads the entry's JSON with its own functions.
        3: (
            """INSERT INTO dependencies (version_id, name, crate, canonical, req, optional,
                default_features, features, target, kind, registry)
            SELECT v.id,
                d.value ->> 'name',
                coalesce(d.value ->> 'package', d.value ->> 'name'),
                replace(lower(coalesce(d.value ->> 'package', d.value ->> 'name')), '-', '_'),
                d.value ->> 'req',
                CASE WHEN coalesce((d.value ->> 'optional')::boolean, false) THEN 1 ELSE 0 END,
                CASE WHEN coalesce((d.value ->> 'default_features')::boolean, true)
                    THEN 1 ELSE 0 END,
                coalesce(nullif(d.value -> 'features', 'null'::jsonb), '[]'::jsonb)::text,
                d.value ->> 'target',
                coalesce(d.value ->> 'kind', 'normal'),
                d.value ->> 'registry'
            FROM versions v
            CROSS JOIN LATERAL jsonb_array_elements(
                coalesce(v.entry::jsonb -> 'deps', '[]'::jsonb)
            ) WITH ORDINALITY AS d (value, position)
            ORDER BY v.id, d.position""",
        ),
    },
    7: {
        # Migration 7's backfill: jsonb for SQLite's json_each, and ASCII-only lower
        # case (translate), as SQLite's lower() folds it.
        6: (
            """INSERT INTO keywords (keyword, created_at)
            SELECT translate(e.value #>> '{}', 'ABCDEFGHIJKLMNOPQRSTUVWXYZ',
                             'abcdefghijklmnopqrstuvwxyz') AS keyword, MIN(c.created_at)
            FROM (SELECT created_at, keywords::jsonb AS list FROM crates) c,
                 jsonb_array_elements(CASE WHEN jsonb_typeof(c.list) = 'array'
                                      THEN c.list ELSE '[]'::jsonb END) AS e(value)
            WHERE jsonb_typeof(e.value) = 'string' AND e.value #>> '{}' <> ''
            GROUP BY 1""",
        ),
        7: (
            """INSERT INTO crates_keywords (crate_id, keyword_id)
            SELECT DISTINCT c.id, k.id
            FROM (SELECT id, keywords::jsonb AS list FROM crates) c
            CROSS JOIN LATERAL jsonb_array_elements(
                CASE WHEN jsonb_typeof(c.list) = 'array' THEN c.list ELSE '[]'::jsonb END
            ) AS e(value)
            JOIN keywords k ON k.keyword = translate(e.value #>> '{}',
                'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz')
            WHERE jsonb_typeof(e.value) = 'string'""",
        ),
        8: (
            """INSERT INTO crates_categories (crate_id, slug)
            SELECT DISTINCT c.id, e.value #>> '{}'
            FROM (SELECT id, categories::jsonb AS list FROM crates) c,
                 jsonb_array_elements(CASE WHEN jsonb_typeof(c.list) = 'array'
                                      THEN c.list ELSE '[]'::jsonb END) AS e(value)
            WHERE jsonb_typeof(e.value) = 'string' AND e.value #>> '{}' <> ''""",
        ),
    },
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
    r"\bCOLLATE\s+NOCASE\b|\bPRAGMA\b|\bINSERT\s+OR\b|\bREPLACE\s+INTO\b|\bAUTOINCREMENT\b"
    r"|\bCREATE\s+TRIGGER\b",
    re.I,
)


def postgresql_statements(migration: Migration) -> tuple[str, ...]:
    """What ``migration`` runs on PostgreSQL: its variant, else its portable SQL with
    the type names replaced (see the docstring). ``ValueError`` for SQLite-only SQL."""
    variant = POSTGRESQL_VARIANTS.get(migration.version)
    if variant is not None:
        return variant
    instead = POSTGRESQL_STATEMENTS.get(migration.version, {})
    translated: list[str] = []
    for index, statement in enumerate(migration.statements):
        if index in instead:
            translated.extend(instead[index])
            continue
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
