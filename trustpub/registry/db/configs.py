"""Owner-managed Trusted Publishing configs: their stored form, reads and writes.

A config belongs to a crate (``crate_id``) or, while the crate does not exist yet, is a
*pending publisher*: ``crate_id`` NULL, ``expires_at`` set, ``created_by`` the user who
will own the crate the first matching exchange creates. ``claim_pending`` runs inside
the publish transaction that creates a crate and turns the pending configs of its
registrant into the crate's own (and drops anyone else's).

Every write bumps ``trustpub_config_generation`` in its own transaction, so a worker
sees a change by comparing one number (``generation``). Writes return the rows they
created, deleted or consumed: the event data an audit trail records.

Plain SQL that runs on SQLite and PostgreSQL alike (``?`` placeholders, ``RETURNING``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from trustpub.registry.db import events
from trustpub.registry.db.queries import Connection
from trustpub.registry.db.rows import Row
from trustpub.registry.names import canonical_name

Transaction = Callable[[Connection], AbstractContextManager[None]]

_COLUMNS = (
    "c.id, c.provider, c.crate_id, c.crate_name, c.canonical, c.issuer, c.repository_owner,"
    " c.owner_id, c.repository_name, c.workflow, c.environment, c.extensions, c.created_by,"
    " c.created_at, c.expires_at, u.login AS created_by_login"
)
_FROM = "FROM trustpub_configs c JOIN users u ON u.id = c.created_by"


@dataclass(frozen=True, slots=True)
class NewConfig:
    """A config as validated by ``trustpub.registry.configs``, before it is stored."""

    provider: str
    crate_name: str
    issuer: str
    repository_owner: str
    """GitHub: the owner login as GitHub spells it. GitLab: the namespace path."""
    owner_id: str | None
    """GitHub: the owner's account id. GitLab: the namespace id (None until pinned)."""
    repository_name: str
    """GitHub: the repository name. GitLab: the project name."""
    workflow: str
    environment: str | None
    extensions: dict[str, Any]
    """The fields beyond crates.io's (``refs``, ``job_workflow``, ``operations``,
    ``token_ttl``), as written in the request; validated like policy files."""


@dataclass(frozen=True, slots=True)
class ConfigRow:
    id: int
    provider: str
    crate_id: int | None
    crate_name: str
    issuer: str
    repository_owner: str
    owner_id: str | None
    repository_name: str
    workflow: str
    environment: str | None
    extensions: dict[str, Any]
    created_by: int
    created_by_login: str
    created_at: int
    expires_at: int | None

    @property
    def pending(self) -> bool:
        return self.crate_id is None


def _row(row: Row) -> ConfigRow:
    return ConfigRow(
        id=row["id"],
        provider=row["provider"],
        crate_id=row["crate_id"],
        crate_name=row["crate_name"],
        issuer=row["issuer"],
        repository_owner=row["repository_owner"],
        owner_id=row["owner_id"],
        repository_name=row["repository_name"],
        workflow=row["workflow"],
        environment=row["environment"],
        extensions=json.loads(row["extensions"]),
        created_by=row["created_by"],
        created_by_login=row["created_by_login"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
    )


# -- reads -------------------------------------------------------------------------------


GENERATION = "SELECT generation FROM trustpub_config_generation WHERE id = 1"


def generation(conn: Connection) -> int:
    row = conn.execute(GENERATION).fetchone()
    return int(row[0]) if row is not None else 0


def live(conn: Connection, now: int) -> list[ConfigRow]:
    """Every config in force: the crates' own, and pending ones not yet expired."""
    found = conn.execute(
        f"SELECT {_COLUMNS} {_FROM} WHERE c.crate_id IS NOT NULL OR c.expires_at > ? ORDER BY c.id",
        (now,),
    ).fetchall()
    return [_row(r) for r in found]


def for_crate(
    conn: Connection, provider: str | None, name: str, now: int, *, pending: bool
) -> list[ConfigRow]:
    """The configs of the crate ``name`` denotes (``pending``: the unexpired pending
    configs for that name instead), oldest first; ``provider`` None means both."""
    where = "c.canonical = ?"
    params: list[Any] = [canonical_name(name)]
    if pending:
        where += " AND c.crate_id IS NULL AND c.expires_at > ?"
        params.append(now)
    else:
        where += " AND c.crate_id IS NOT NULL"
    if provider is not None:
        where += " AND c.provider = ?"
        params.append(provider)
    found = conn.execute(f"SELECT {_COLUMNS} {_FROM} WHERE {where} ORDER BY c.id", params)
    return [_row(r) for r in found.fetchall()]


def by_id(conn: Connection, config_id: int) -> ConfigRow | None:
    row = conn.execute(f"SELECT {_COLUMNS} {_FROM} WHERE c.id = ?", (config_id,)).fetchone()
    return _row(row) if row is not None else None


# -- writes (each in one transaction) ----------------------------------------------------


CHANGES_KEPT = 100_000
"""Generations of the change log kept; a reader further behind reads everything."""


def _bump(conn: Connection, config_ids: Sequence[int]) -> None:
    conn.execute("UPDATE trustpub_config_generation SET generation = generation + 1 WHERE id = 1")
    current = generation(conn)
    for config_id in set(config_ids):
        conn.execute(
            "INSERT INTO trustpub_config_changes (generation, config_id) VALUES (?, ?)",
            (current, config_id),
        )
    conn.execute(
        "DELETE FROM trustpub_config_changes WHERE generation <= ?", (current - CHANGES_KEPT,)
    )


def changes_since(
    conn: Connection, since: int, now: int
) -> tuple[int, dict[int, ConfigRow | None] | None]:
    """The generation now, and each config changed after generation ``since``: its row
    in force, or None (deleted, expired). None instead of the changes when the log no
    longer reaches back to ``since`` (read everything with ``live`` then)."""
    current = generation(conn)
    if current == since:
        return current, {}
    (oldest,) = conn.execute("SELECT MIN(generation) FROM trustpub_config_changes").fetchone()
    if since > current or oldest is None or oldest > since + 1:
        return current, None
    ids = [
        int(r[0])
        for r in conn.execute(
            "SELECT DISTINCT config_id FROM trustpub_config_changes"
            " WHERE generation > ? AND generation <= ?",
            (since, current),
        ).fetchall()
    ]
    changed: dict[int, ConfigRow | None] = dict.fromkeys(ids)
    for config_id in ids:
        row = by_id(conn, config_id)
        if row is not None and (row.crate_id is not None or (row.expires_at or 0) > now):
            changed[config_id] = row
    return current, changed


def _same(a: ConfigRow, b: NewConfig) -> bool:
    return (
        a.provider == b.provider
        and a.issuer == b.issuer
        and a.repository_owner.lower() == b.repository_owner.lower()
        and a.repository_name.lower() == b.repository_name.lower()
        and a.workflow == b.workflow
        and (a.environment or "").lower() == (b.environment or "").lower()
    )


class DuplicateConfig(Exception):
    """An equal config (same provider, issuer, repository, workflow, environment) exists."""

    def __init__(self, existing: ConfigRow) -> None:
        super().__init__(f"config {existing.id} is the same")
        self.existing = existing


class PendingTaken(Exception):
    """Another user holds an unexpired pending config for this crate name."""


def create(
    conn: Connection,
    tx: Transaction,
    new: NewConfig,
    user_id: int,
    now: int,
    *,
    check: Callable[[Connection], int | None],
    pending_ttl: int,
    actor_login: str | None = None,
) -> ConfigRow:
    """Store ``new`` for the crate ``check`` returns the id of (None: a pending
    publisher, expiring ``pending_ttl`` seconds from now). ``check`` runs inside the
    transaction (the caller's authorization, against the state the insert sees) and
    raises to refuse. Returns the created row: the audit trail's "config created"."""
    with tx(conn):
        crate_id = check(conn)
        pending = crate_id is None
        existing = for_crate(conn, new.provider, new.crate_name, now, pending=pending)
        for row in existing:
            if pending and row.created_by != user_id:
                # One registrant per pending name: two could never both own the crate.
                raise PendingTaken(new.crate_name)
            if _same(row, new):
                raise DuplicateConfig(row)
        cur = conn.execute(
            "INSERT INTO trustpub_configs (provider, crate_id, crate_name, canonical, issuer,"
            " repository_owner, owner_id, repository_name, workflow, environment, extensions,"
            " created_by, created_at, expires_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (
                new.provider,
                crate_id,
                new.crate_name,
                canonical_name(new.crate_name),
                new.issuer,
                new.repository_owner,
                new.owner_id,
                new.repository_name,
                new.workflow,
                new.environment,
                json.dumps(new.extensions, sort_keys=True),
                user_id,
                now,
                now + pending_ttl if pending else None,
            ),
        )
        config_id = int(cur.fetchone()[0])
        _bump(conn, [config_id])
        created = by_id(conn, config_id)
        assert created is not None
        # In the same transaction: the trail, and the owners' notifications.
        events.record_event(
            conn,
            kind=events.CONFIG_CREATED,
            crate=created.crate_name,
            actor_login=actor_login,
            details=event_details(created),
            now=now,
        )
    return created


def delete(
    conn: Connection,
    tx: Transaction,
    config_id: int,
    check: Callable[[Connection, ConfigRow | None], None],
    now: int,
    actor_login: str | None = None,
) -> ConfigRow:
    """Delete config ``config_id`` after ``check(conn, row)`` (which raises to refuse,
    also when the row is None). Returns the deleted row: the audit trail's "config
    deleted"."""
    with tx(conn):
        row = by_id(conn, config_id)
        check(conn, row)
        assert row is not None
        conn.execute("DELETE FROM trustpub_configs WHERE id = ?", (config_id,))
        _bump(conn, [config_id])
        events.record_event(
            conn,
            kind=events.CONFIG_DELETED,
            crate=row.crate_name,
            actor_login=actor_login,
            details=event_details(row),
            now=now,
        )
    return row


def event_details(row: ConfigRow) -> dict[str, Any]:
    """A config as the audit trail and notifications show it."""
    return {
        "id": row.id,
        "provider": row.provider,
        "issuer": row.issuer,
        "repository_owner": row.repository_owner,
        "owner_id": row.owner_id,
        "repository_name": row.repository_name,
        "workflow": row.workflow,
        "environment": row.environment,
        "pending": row.pending,
        **row.extensions,
    }


def pin_namespace(
    conn: Connection, tx: Transaction, config_ids: Sequence[int], namespace_id: str
) -> list[ConfigRow]:
    """Record the GitLab namespace id seen on a successful exchange, on each config
    that has none yet; returns the configs pinned now."""
    pinned: list[ConfigRow] = []
    with tx(conn):
        for config_id in config_ids:
            cur = conn.execute(
                "UPDATE trustpub_configs SET owner_id = ? WHERE id = ? AND provider = 'gitlab'"
                " AND owner_id IS NULL",
                (namespace_id, config_id),
            )
            if cur.rowcount:
                row = by_id(conn, config_id)
                if row is not None:
                    pinned.append(row)
        if pinned:
            _bump(conn, [row.id for row in pinned])
    return pinned


def claim_pending(
    conn: Connection, crate_id: int, name: str, owner_ids: Sequence[int], now: int
) -> list[ConfigRow]:
    """Inside the transaction creating crate ``name``: its registrant's unexpired pending
    configs become the crate's; every other pending config for the name is dropped (a
    pending publisher never reaches a crate someone else created). Returns the configs
    consumed: the audit trail's "pending publisher used"."""
    canonical = canonical_name(name)
    pending = conn.execute(
        f"SELECT {_COLUMNS} {_FROM} WHERE c.canonical = ? AND c.crate_id IS NULL",
        (canonical,),
    ).fetchall()
    if not pending:
        return []
    claimed: list[ConfigRow] = []
    touched: list[int] = []
    for found in pending:
        row = _row(found)
        touched.append(row.id)
        expired = row.expires_at is None or row.expires_at <= now
        if row.created_by in owner_ids and not expired:
            conn.execute(
                "UPDATE trustpub_configs SET crate_id = ?, crate_name = ?, expires_at = NULL"
                " WHERE id = ?",
                (crate_id, name, row.id),
            )
            claimed.append(row)
        else:
            conn.execute("DELETE FROM trustpub_configs WHERE id = ?", (row.id,))
    _bump(conn, touched)
    return claimed


def purge_expired(conn: Connection, tx: Transaction, now: int) -> int:
    """Delete expired pending configs; how many."""
    with tx(conn):
        expired = [
            int(r[0])
            for r in conn.execute(
                "SELECT id FROM trustpub_configs WHERE crate_id IS NULL AND expires_at <= ?",
                (now,),
            ).fetchall()
        ]
        conn.execute(
            "DELETE FROM trustpub_configs WHERE crate_id IS NULL AND expires_at <= ?", (now,)
        )
        if expired:
            _bump(conn, expired)
    return len(expired)
