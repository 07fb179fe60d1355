"""The audit trail, and the outbox that carries its notifications.

Every change worth a trail calls ``record_event`` INSIDE its own write transaction:
the event is written, and (for the kinds in ``NOTIFIED``) one outbox row per owner
with an email address and per webhook subscription of the crate, in the same
transaction, so a change and its trail and notifications commit or roll back
together. Nothing here sends anything: ``trustpub.notify`` delivers the outbox.

The trail is append-only: no function here updates or deletes an event, and the
schema's triggers refuse an UPDATE or DELETE on ``audit_events`` from anywhere.

An outbox row is delivered by one worker at a time: ``claim`` moves it from
``pending`` (and due) to ``sending`` with one conditional UPDATE, which only one of
several workers or processes can win; ``finish`` and ``retry`` only touch a row the
caller still holds. A worker that died holding a row loses it after ``lease``
seconds (its delivery may then be repeated: at least once, never twice at a time).

Portable SQL: ``?`` placeholders, no engine-specific functions.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from trustpub.logs import request_context
from trustpub.registry.db import queries
from trustpub.registry.db.queries import Connection
from trustpub.registry.db.rows import Row
from trustpub.registry.db.webhook_keys import SecretUnreadable, WebhookKeys

# -- event kinds -----------------------------------------------------------------------

TRUSTPUB_PUBLISH: Final = "trustpub.publish"
"""A version published through Trusted Publishing; details carry its provenance."""
CONFIG_CREATED: Final = "trustpub.config_created"
"""An owner-managed Trusted Publishing config created; details carry the config."""
CONFIG_DELETED: Final = "trustpub.config_deleted"
"""An owner-managed Trusted Publishing config deleted; details carry the config."""
TRUSTPUB_ONLY: Final = "crate.trustpub_only"
"""``trustpub_only`` set or cleared; details: ``{"trustpub_only": bool}``."""
OWNERS_ADDED: Final = "crate.owners_added"
OWNERS_REMOVED: Final = "crate.owners_removed"
"""Owner changes; details: ``{"logins": [...]}`` (and ``"invitation": true`` when an
invited user accepted)."""
OWNER_INVITED: Final = "crate.owner_invited"
OWNER_INVITATION_DECLINED: Final = "crate.owner_invitation_declined"
"""Owner invitations; details: ``{"invitee", "expires_at"}``."""
WEBHOOK_CREATED: Final = "webhook.created"
WEBHOOK_DELETED: Final = "webhook.deleted"
TOKEN_CREATED: Final = "token.created"  # noqa: S105 - an event kind
TOKEN_REVOKED: Final = "token.revoked"  # noqa: S105 - an event kind
"""Registry API tokens; details name the token (id, name, user, scopes), never its value."""

KINDS: Final = (
    TRUSTPUB_PUBLISH,
    CONFIG_CREATED,
    CONFIG_DELETED,
    TRUSTPUB_ONLY,
    OWNERS_ADDED,
    OWNERS_REMOVED,
    OWNER_INVITED,
    OWNER_INVITATION_DECLINED,
    WEBHOOK_CREATED,
    WEBHOOK_DELETED,
    TOKEN_CREATED,
    TOKEN_REVOKED,
)

NOTIFIED: Final = frozenset({TRUSTPUB_PUBLISH, CONFIG_CREATED, CONFIG_DELETED})
"""The kinds owners are emailed about and webhooks receive."""

EMAIL: Final = "email"
WEBHOOK: Final = "webhook"

PENDING: Final = "pending"
SENDING: Final = "sending"
DELIVERED: Final = "delivered"
FAILED: Final = "failed"

_FROM_CONTEXT: Any = object()


@dataclass(frozen=True, slots=True)
class AuditEvent:
    id: int
    created_at: int
    kind: str
    crate: str | None
    actor_login: str | None
    client: str | None
    request_id: str | None
    details: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Delivery:
    """One notification of one event: its channel, to whom, and how it went."""

    id: int
    event_id: int
    channel: str
    recipient: str
    """The owner's login (email) or ``webhook:{id}``."""
    address: str | None
    """The email address; None for a webhook (its URL is read at delivery)."""
    webhook_id: int | None
    state: str
    attempts: int
    next_attempt_at: int
    last_error: str | None
    delivered_at: int | None


@dataclass(frozen=True, slots=True)
class Webhook:
    id: int
    crate_id: int
    crate: str
    url: str
    sealed_secret: str = field(repr=False)
    """The signing secret, encrypted (``webhook_keys``); ``WebhookKeys.open`` reads it."""
    created_by: str
    created_at: int


def record_event(
    conn: Connection,
    *,
    kind: str,
    crate: str | None,
    actor_login: str | None,
    details: Mapping[str, Any],
    now: int,
    client: str | None = _FROM_CONTEXT,
    request_id: str | None = _FROM_CONTEXT,
) -> int:
    """Append an event to the trail and queue its notifications; returns its id.

    Call it inside the transaction of the change it records. ``crate`` is the crate's
    name (looked up; the stored name is kept even if the crate goes away). ``client``
    and ``request_id`` default to the current request's (``trustpub.logs``'
    ``request_context``, set by the access log; None outside a request, e.g. the CLI).
    ``details`` must be JSON: never put a token or a secret in it.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown audit event kind {kind!r}")
    context = request_context.get() or {}
    if client is _FROM_CONTEXT:
        client = context.get("client")
    if request_id is _FROM_CONTEXT:
        request_id = context.get("request_id")
    found = queries.crate(conn, crate) if crate is not None else None
    crate_id = found.id if found is not None else None
    crate_name = found.name if found is not None else crate
    cur = conn.execute(
        "INSERT INTO audit_events (created_at, kind, crate_id, crate, actor_login, client,"
        " request_id, details) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        (
            now,
            kind,
            crate_id,
            crate_name,
            actor_login,
            client,
            request_id,
            json.dumps(dict(details), sort_keys=True, separators=(",", ":")),
        ),
    )
    (event_id,) = cur.fetchone()
    event_id = int(event_id)
    if kind in NOTIFIED and crate_id is not None:
        _queue(conn, event_id, crate_id, now)
    if kind == OWNER_INVITED:
        _queue_invitee(conn, event_id, str(details.get("invitee", "")), now)
    return event_id


def _queue_invitee(conn: Connection, event_id: int, login: str, now: int) -> None:
    """The invited user is mailed the invitation (when they have an address): as on
    crates.io, an invitation waits for them, and they learn of it by mail."""
    invitee = queries.user_by_login(conn, login)
    if invitee is not None and invitee.email:
        conn.execute(
            "INSERT INTO outbox (event_id, channel, recipient, address, webhook_id,"
            " next_attempt_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (event_id, EMAIL, invitee.login, invitee.email, None, now, now),
        )


def _queue(conn: Connection, event_id: int, crate_id: int, now: int) -> None:
    insert = (
        "INSERT INTO outbox (event_id, channel, recipient, address, webhook_id,"
        " next_attempt_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
    )
    for owner in queries.owner_users(conn, crate_id):
        if owner.email:
            conn.execute(insert, (event_id, EMAIL, owner.login, owner.email, None, now, now))
    for (webhook_id,) in conn.execute(
        "SELECT id FROM webhooks WHERE crate_id = ? ORDER BY id", (crate_id,)
    ).fetchall():
        conn.execute(
            insert, (event_id, WEBHOOK, f"webhook:{webhook_id}", None, webhook_id, now, now)
        )


# -- reading the trail -------------------------------------------------------------------


def _event(row: Row) -> AuditEvent:
    return AuditEvent(
        id=row["id"],
        created_at=row["created_at"],
        kind=row["kind"],
        crate=row["crate"],
        actor_login=row["actor_login"],
        client=row["client"],
        request_id=row["request_id"],
        details=json.loads(row["details"]),
    )


def _delivery(row: Row) -> Delivery:
    return Delivery(
        id=row["id"],
        event_id=row["event_id"],
        channel=row["channel"],
        recipient=row["recipient"],
        address=row["address"],
        webhook_id=row["webhook_id"],
        state=row["state"],
        attempts=row["attempts"],
        next_attempt_at=row["next_attempt_at"],
        last_error=row["last_error"],
        delivered_at=row["delivered_at"],
    )


def events(
    conn: Connection, crate_id: int | None, limit: int, offset: int
) -> tuple[list[AuditEvent], int]:
    """Events newest first (of one crate, or all), and how many there are."""
    where, params = ("WHERE crate_id = ?", (crate_id,)) if crate_id is not None else ("", ())
    (total,) = conn.execute(f"SELECT COUNT(*) FROM audit_events {where}", params).fetchone()  # noqa: S608
    found = conn.execute(
        f"SELECT * FROM audit_events {where} ORDER BY id DESC LIMIT ? OFFSET ?",  # noqa: S608
        (*params, limit, offset),
    ).fetchall()
    return [_event(r) for r in found], int(total)


def deliveries(conn: Connection, event_ids: Sequence[int]) -> dict[int, list[Delivery]]:
    """The deliveries of these events, by event id."""
    result: dict[int, list[Delivery]] = {i: [] for i in event_ids}
    if not event_ids:
        return result
    marks = ", ".join("?" for _ in event_ids)
    for row in conn.execute(
        f"SELECT * FROM outbox WHERE event_id IN ({marks}) ORDER BY id",  # noqa: S608
        tuple(event_ids),
    ).fetchall():
        result[row["event_id"]].append(_delivery(row))
    return result


def event_by_id(conn: Connection, event_id: int) -> AuditEvent:
    return _event(conn.execute("SELECT * FROM audit_events WHERE id = ?", (event_id,)).fetchone())


# -- webhooks ----------------------------------------------------------------------------


def _webhook(row: Row) -> Webhook:
    return Webhook(
        id=row["id"],
        crate_id=row["crate_id"],
        crate=row["crate_name"],
        url=row["url"],
        sealed_secret=row["secret_enc"] or "",
        created_by=row["created_by"],
        created_at=row["created_at"],
    )


_WEBHOOK_SELECT = (
    "SELECT w.*, c.name AS crate_name FROM webhooks w JOIN crates c ON c.id = w.crate_id"
)


def webhooks(conn: Connection, crate_id: int) -> list[Webhook]:
    found = conn.execute(f"{_WEBHOOK_SELECT} WHERE w.crate_id = ? ORDER BY w.id", (crate_id,))
    return [_webhook(r) for r in found.fetchall()]


def webhook(conn: Connection, webhook_id: int) -> Webhook | None:
    row = conn.execute(f"{_WEBHOOK_SELECT} WHERE w.id = ?", (webhook_id,)).fetchone()
    return _webhook(row) if row is not None else None


def latest_deliveries(conn: Connection, webhook_ids: Sequence[int]) -> dict[int, Delivery]:
    """Each webhook's most recent delivery, if any."""
    result: dict[int, Delivery] = {}
    for webhook_id in webhook_ids:
        row = conn.execute(
            "SELECT * FROM outbox WHERE webhook_id = ? ORDER BY id DESC LIMIT 1", (webhook_id,)
        ).fetchone()
        if row is not None:
            result[webhook_id] = _delivery(row)
    return result


def add_webhook(
    conn: Connection,
    crate_id: int,
    url: str,
    secret: str,
    created_by: str,
    now: int,
    keys: WebhookKeys,
) -> int:
    """Subscribe; the secret is stored encrypted only (bound to the new row's id, so
    it is sealed once the id is known, in the same transaction)."""
    cur = conn.execute(
        "INSERT INTO webhooks (crate_id, url, secret, created_by, created_at)"
        " VALUES (?, ?, '', ?, ?) RETURNING id",
        (crate_id, url, created_by, now),
    )
    (webhook_id,) = cur.fetchone()
    webhook_id = int(webhook_id)
    conn.execute(
        "UPDATE webhooks SET secret_enc = ? WHERE id = ?",
        (keys.seal(secret, webhook_id, crate_id), webhook_id),
    )
    return webhook_id


def plain_secrets(conn: Connection) -> int:
    """How many webhooks still hold their secret in plain text (stored before
    migration 9)."""
    (count,) = conn.execute(
        "SELECT COUNT(*) FROM webhooks WHERE secret_enc IS NULL AND secret <> ''"
    ).fetchone()
    return int(count)


def sealed_secrets(conn: Connection) -> int:
    """How many webhooks hold an encrypted secret."""
    (count,) = conn.execute("SELECT COUNT(*) FROM webhooks WHERE secret_enc IS NOT NULL").fetchone()
    return int(count)


def seal_plain_secrets(conn: Connection, keys: WebhookKeys) -> int:
    """Encrypt every secret stored in plain text and clear its plain column (call it
    in one write transaction); returns how many were sealed."""
    found = conn.execute(
        "SELECT id, crate_id, secret FROM webhooks WHERE secret_enc IS NULL AND secret <> ''"
        " ORDER BY id"
    ).fetchall()
    for webhook_id, crate_id, secret in found:
        conn.execute(
            "UPDATE webhooks SET secret_enc = ?, secret = '' WHERE id = ? AND secret_enc IS NULL",
            (keys.seal(secret, int(webhook_id), int(crate_id)), webhook_id),
        )
    return len(found)


def reseal_secrets(conn: Connection, keys: WebhookKeys) -> tuple[int, list[int]]:
    """Encrypt every readable secret again with the current key (call it in one write
    transaction); returns how many were, and the ids of those no key opens (left as
    they are)."""
    done = 0
    unreadable: list[int] = []
    for webhook_id, crate_id, sealed in conn.execute(
        "SELECT id, crate_id, secret_enc FROM webhooks WHERE secret_enc IS NOT NULL ORDER BY id"
    ).fetchall():
        try:
            secret = keys.open(sealed, int(webhook_id), int(crate_id))
        except SecretUnreadable:
            unreadable.append(int(webhook_id))
            continue
        conn.execute(
            "UPDATE webhooks SET secret_enc = ? WHERE id = ?",
            (keys.seal(secret, int(webhook_id), int(crate_id)), webhook_id),
        )
        done += 1
    return done, unreadable


def foreign_secrets(conn: Connection, keys: WebhookKeys) -> list[int]:
    """Ids of the webhooks whose secret names a key that is not configured (read
    without decrypting anything: a start-up diagnostic)."""
    known = set(keys.ids)
    return [
        int(webhook_id)
        for webhook_id, sealed in conn.execute(
            "SELECT id, secret_enc FROM webhooks WHERE secret_enc IS NOT NULL ORDER BY id"
        ).fetchall()
        if keys.key_of(sealed) not in known
    ]


def delete_webhook(conn: Connection, crate_id: int, webhook_id: int) -> bool:
    cur = conn.execute("DELETE FROM webhooks WHERE id = ? AND crate_id = ?", (webhook_id, crate_id))
    return cur.rowcount == 1


# -- the outbox ----------------------------------------------------------------------------


def due(conn: Connection, now: int, lease: int, limit: int) -> list[int]:
    """Ids of rows a worker may try to claim: pending and due, or held past the lease."""
    found = conn.execute(
        "SELECT id FROM outbox WHERE (state = ? AND next_attempt_at <= ?)"
        " OR (state = ? AND claimed_at <= ?) ORDER BY next_attempt_at, id LIMIT ?",
        (PENDING, now, SENDING, now - lease, limit),
    ).fetchall()
    return [int(r[0]) for r in found]


def claim(conn: Connection, row_id: int, worker: str, now: int, lease: int) -> Delivery | None:
    """Take the row for ``worker`` with one conditional UPDATE (only one claimer wins);
    None if another worker has it, it is done, or it is not due."""
    cur = conn.execute(
        "UPDATE outbox SET state = ?, claimed_by = ?, claimed_at = ?, attempts = attempts + 1"
        " WHERE id = ? AND ((state = ? AND next_attempt_at <= ?)"
        " OR (state = ? AND claimed_at <= ?))",
        (SENDING, worker, now, row_id, PENDING, now, SENDING, now - lease),
    )
    if cur.rowcount != 1:
        return None
    return _delivery(conn.execute("SELECT * FROM outbox WHERE id = ?", (row_id,)).fetchone())


def finish(conn: Connection, row_id: int, worker: str, now: int) -> bool:
    cur = conn.execute(
        "UPDATE outbox SET state = ?, delivered_at = ?, last_error = NULL, claimed_by = NULL"
        " WHERE id = ? AND state = ? AND claimed_by = ?",
        (DELIVERED, now, row_id, SENDING, worker),
    )
    return cur.rowcount == 1


def retry(
    conn: Connection, row_id: int, worker: str, error: str, next_attempt_at: int | None
) -> bool:
    """Record a failed attempt: pending again at ``next_attempt_at``, or failed for
    good when it is None."""
    state = PENDING if next_attempt_at is not None else FAILED
    cur = conn.execute(
        "UPDATE outbox SET state = ?, last_error = ?, next_attempt_at = COALESCE(?,"
        " next_attempt_at), claimed_by = NULL WHERE id = ? AND state = ? AND claimed_by = ?",
        (state, error[:500], next_attempt_at, row_id, SENDING, worker),
    )
    return cur.rowcount == 1
