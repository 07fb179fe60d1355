"""Changes, each in one write transaction that also runs the caller's authorization.

The writer lock is taken first (``BEGIN IMMEDIATE``), then the state is read, then
``authorize`` decides on it, then the change is made: no other writer can slip in
between the check and the act. ``authorize`` is the caller's rule (who may do what is
decided above the storage); it raises to refuse, which rolls everything back. The
storage's own invariants (one version per number, owners are users, a crate keeps an
owner) raise ``DataConflict`` errors.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any

from trustpub.registry.db import configs, events, index_files, queries
from trustpub.registry.db.errors import (
    AlreadyOwner,
    CommitFailed,
    InvitationExpired,
    InvitationNotFound,
    LastOwners,
    NameConflict,
    NoOwners,
    NotOwner,
    TooManyTokens,
    UnknownDependency,
    UnknownUser,
    UserExists,
    VersionExists,
    VersionNotFound,
    WebhookExists,
    WebhookNotFound,
)
from trustpub.registry.db.events import record_event
from trustpub.registry.db.queries import Connection
from trustpub.registry.db.rows import (
    ApiToken,
    CrateRow,
    CrateState,
    Invitation,
    NewVersion,
    OwnersChanged,
    OwnersInvited,
    User,
    VersionRow,
)
from trustpub.registry.db.webhook_keys import WebhookKeys
from trustpub.registry.names import canonical_name

Transaction = Callable[[Connection], AbstractContextManager[None]]
Authorize = Callable[[CrateState], None]
AuthorizePublish = Callable[[CrateState | None], None]
"""Called with the crate's state, or None for a crate that does not exist yet."""


def _id(cursor: Any) -> int:
    (new_id,) = cursor.fetchone()
    return int(new_id)


def add_user(
    conn: Connection, tx: Transaction, login: str, now: int, email: str | None = None
) -> User:
    with tx(conn):
        if queries.user_by_login(conn, login) is not None:
            raise UserExists(login)
        cur = conn.execute(
            "INSERT INTO users (login, created_at, email) VALUES (?, ?, ?) RETURNING id",
            (login, now, email),
        )
        return User(_id(cur), login, now, email)


def set_email(conn: Connection, tx: Transaction, login: str, email: str | None) -> User:
    with tx(conn):
        user = queries.user_by_login(conn, login)
        if user is None:
            raise UnknownUser(login)
        conn.execute("UPDATE users SET email = ? WHERE id = ?", (email, user.id))
        return User(user.id, user.login, user.created_at, email)


def add_token(
    conn: Connection,
    tx: Transaction,
    login: str,
    name: str,
    token_hash: bytes,
    scopes: Sequence[str],
    crates: Sequence[str],
    expires_at: int | None,
    now: int,
    actor_login: str | None = None,
    max_active: int | None = None,
) -> ApiToken:
    """Store a token (its hash) for ``login``; ``max_active``, when given, is how many
    active tokens the user may hold (``TooManyTokens`` past it)."""
    with tx(conn):
        user = queries.user_by_login(conn, login)
        if user is None:
            raise UnknownUser(login)
        if max_active is not None and queries.active_token_count(conn, user.id, now) >= max_active:
            raise TooManyTokens(max_active)
        cur = conn.execute(
            "INSERT INTO api_tokens (user_id, name, hash, scopes, crates, created_at,"
            " expires_at) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (
                user.id,
                name,
                token_hash,
                json.dumps(sorted(scopes)),
                json.dumps(list(crates)),
                now,
                expires_at,
            ),
        )
        token_id = _id(cur)
        record_event(
            conn,
            kind=events.TOKEN_CREATED,
            crate=None,
            actor_login=actor_login,
            details={
                "token_id": token_id,
                "user": user.login,
                "name": name,
                "scopes": sorted(scopes),
                "crates": list(crates),
                "expires_at": expires_at,
            },
            now=now,
        )
        return ApiToken(
            token_id,
            user.login,
            name,
            tuple(sorted(scopes)),
            tuple(crates),
            now,
            expires_at,
            None,
            None,
            user.id,
        )


def revoke_token(
    conn: Connection,
    tx: Transaction,
    token_id: int,
    now: int,
    actor_login: str | None = None,
    reason: str | None = None,
    user_id: int | None = None,
) -> bool:
    """Revoke the active token ``token_id`` (only if it is ``user_id``'s, when given)
    and record it in the audit trail; False if there was no such token."""
    with tx(conn):
        if user_id is None:
            cur = conn.execute(
                "UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (now, token_id),
            )
        else:
            cur = conn.execute(
                "UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND user_id = ?"
                " AND revoked_at IS NULL",
                (now, token_id, user_id),
            )
        if cur.rowcount != 1:
            return False
        row = conn.execute(
            "SELECT t.name, u.login FROM api_tokens t JOIN users u ON u.id = t.user_id"
            " WHERE t.id = ?",
            (token_id,),
        ).fetchone()
        details: dict[str, Any] = {"token_id": token_id, "user": row["login"], "name": row["name"]}
        if reason is not None:
            details["reason"] = reason
        record_event(
            conn,
            kind=events.TOKEN_REVOKED,
            crate=None,
            actor_login=actor_login,
            details=details,
            now=now,
        )
        return True


def revoke_token_by_hash(
    conn: Connection, tx: Transaction, token_hash: bytes, now: int
) -> ApiToken | None:
    """Revoke the token with this hash (a leaked one); it is returned as it was before,
    so ``revoked_at`` says whether it was revoked already. None if unknown."""
    with tx(conn):
        token = queries.token_by_hash(conn, token_hash)
        if token is not None and token.revoked_at is None:
            conn.execute("UPDATE api_tokens SET revoked_at = ? WHERE id = ?", (now, token.id))
            record_event(
                conn,
                kind=events.TOKEN_REVOKED,
                crate=None,
                actor_login=None,
                details={
                    "token_id": token.id,
                    "user": token.user_login,
                    "name": token.name,
                    "reason": "leaked",
                },
                now=now,
            )
        return token


def use_token(conn: Connection, token_hash: bytes, now: int) -> ApiToken | None:
    """The active token with this hash, its use recorded; None if unknown, revoked or
    expired."""
    token = queries.token_by_hash(conn, token_hash)
    if token is None or token.revoked_at is not None:
        return None
    if token.expires_at is not None and now >= token.expires_at:
        return None
    conn.execute("UPDATE api_tokens SET last_used_at = ? WHERE id = ?", (now, token.id))
    return token


def publish(
    conn: Connection,
    tx: Transaction,
    new: NewVersion,
    authorize: AuthorizePublish,
    place_file: Callable[[str], None],
    remove_file: Callable[[str], None],
    now: int,
) -> VersionRow:
    """Record a new version and put its .crate in place, all or nothing.

    ``place_file(crate_name)`` moves the staged .crate to its final path; it runs
    inside the transaction, so a failure rolls the metadata back, and a failure before
    the COMMIT calls ``remove_file(crate_name)`` while the writer lock is still held:
    the index never lists a version whose file is missing. A crash between the two
    leaves a file without its version, which the file store's start-up sweep removes.

    A failed COMMIT is different: it may have been recorded (see ``CommitFailed``).
    Then the file is kept and ``CommitFailed`` raised for the caller to read back
    (``RegistryDB.publish``, ``settle_publish``): deleting it would lose the file of a
    version the index lists.

    A number already recorded is ``VersionExists``, whatever the bytes (as on
    crates.io: a published version is never replaced, not even by the same .crate).
    """
    placed = False
    crate_name = new.crate
    try:
        with tx(conn):
            found = queries.crate(conn, new.crate)
            if found is None:
                authorize(None)
                crate_id = _create_crate(conn, new, now)
            else:
                crate_id, crate_name = found.id, found.name
                if found.name != new.crate:
                    raise NameConflict(new.crate, found.name)
                authorize(queries.state_of(conn, found))
                existing = queries.existing_version(conn, crate_id, new.num_no_build)
                if existing is not None:
                    raise VersionExists(found.name, existing)
            _check_dependencies(conn, new.registry_deps)
            version_id = _insert_version(conn, crate_id, new, now)
            index_files.rebuild(conn, crate_id)
            if new.trustpub_data is not None:
                record_event(
                    conn,
                    kind=events.TRUSTPUB_PUBLISH,
                    crate=crate_name,
                    actor_login=None,
                    details={"version": new.num, "provenance": dict(new.trustpub_data)},
                    now=now,
                )
            # Set before the call: a failure inside place_file may come after its
            # rename, and removing a file that never arrived is harmless.
            placed = True
            try:
                place_file(crate_name)
                result = queries.version_by_id(conn, version_id)
            except BaseException:
                # No COMMIT was sent: the version is not recorded. Removed before the
                # ROLLBACK, under the writer lock, so no other publish of this version
                # can have placed its own file here meanwhile.
                remove_file(crate_name)
                raise
    except CommitFailed as exc:
        if not placed:
            raise exc.failure from exc  # nothing outside the database to settle
        raise
    return result


def settle_publish(
    conn: Connection, new: NewVersion, remove_file: Callable[[str], None]
) -> VersionRow | None:
    """After a publish's COMMIT failed (``CommitFailed``): the version as recorded, or
    None if it was not recorded, in which case its placed file is removed. Run it in a
    write transaction (``tx``) on a fresh connection: taking the writer lock waits until
    the failed transaction has ended on the server, committed or rolled back, and keeps
    any other publish of this version from placing its file until the removal is done.
    A version recorded with other bytes (another publish after ours rolled back) is
    returned too: its file is the other publish's and is kept."""
    found = queries.crate(conn, new.crate)
    if found is not None:
        recorded = queries.version(conn, found.id, new.num)
        if recorded is not None:
            return recorded
    remove_file(found.name if found is not None else new.crate)
    return None


def _create_crate(conn: Connection, new: NewVersion, now: int) -> int:
    owner_ids: list[int] = []
    for login in new.owner_logins:
        user = queries.user_by_login(conn, login)
        if user is None:
            raise UnknownUser(login)
        owner_ids.append(user.id)
    if not owner_ids:
        raise NoOwners(new.crate)
    cur = conn.execute(
        "INSERT INTO crates (name, canonical, created_at, updated_at, index_updated_at)"
        " VALUES (?, ?, ?, ?, ?) RETURNING id",
        (new.crate, canonical_name(new.crate), now, now, now),
    )
    crate_id = _id(cur)
    for uid in owner_ids:
        conn.execute(
            "INSERT INTO owners (crate_id, user_id, created_at) VALUES (?, ?, ?)"
            " ON CONFLICT DO NOTHING",
            (crate_id, uid, now),
        )
    # Pending publishers (trustpub.registry.configs): the registrant's become the new
    # crate's configs, anyone else's are dropped (their creation is in the audit trail;
    # the crate's own trustpub.publish event follows in this transaction).
    configs.claim_pending(conn, crate_id, new.crate, owner_ids, now)
    return crate_id


def _check_dependencies(conn: Connection, names: Sequence[str]) -> None:
    for name in names:
        # A dependency on this registry must name a crate it holds, exactly: cargo
        # resolves it through the index, where the name is the file name.
        found = queries.crate(conn, name)
        if found is None:
            raise UnknownDependency(name, None)
        if found.name != name:
            raise UnknownDependency(name, found.name)


def _insert_version(conn: Connection, crate_id: int, new: NewVersion, now: int) -> int:
    trustpub_data = (
        json.dumps(dict(new.trustpub_data), sort_keys=True)
        if new.trustpub_data is not None
        else None
    )
    cur = conn.execute(
        "INSERT INTO versions (crate_id, num, num_no_build, entry, cksum, size, license,"
        " rust_version, description, published_by, trustpub_data, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        (
            crate_id,
            new.num,
            new.num_no_build,
            json.dumps(dict(new.index_entry), separators=(",", ":")),
            new.cksum,
            new.size,
            new.license,
            new.rust_version,
            new.description,
            new.published_by,
            trustpub_data,
            now,
            now,
        ),
    )
    version_id = _id(cur)
    _insert_dependencies(conn, version_id, new.index_entry.get("deps", ()))
    conn.execute(
        "UPDATE crates SET updated_at = ?, index_updated_at = ?,"
        " description = ?, homepage = ?, documentation = ?, repository = ?,"
        " keywords = ?, categories = ? WHERE id = ?",
        (
            now,
            now,
            new.description,
            new.homepage,
            new.documentation,
            new.repository,
            json.dumps(list(new.keywords)),
            json.dumps(list(new.categories)),
            crate_id,
        ),
    )
    _set_keywords(conn, crate_id, new.keywords, now)
    _set_categories(conn, crate_id, new.categories)
    return version_id


def _set_keywords(conn: Connection, crate_id: int, keywords: Sequence[str], now: int) -> None:
    """The crate's keywords become ``keywords`` (already in their stored, lower-case form),
    as its newest version says; a keyword no crate names any more stays (count 0)."""
    conn.execute("DELETE FROM crates_keywords WHERE crate_id = ?", (crate_id,))
    for keyword in dict.fromkeys(keywords):
        conn.execute(
            "INSERT INTO keywords (keyword, created_at) VALUES (?, ?) ON CONFLICT DO NOTHING",
            (keyword, now),
        )
        conn.execute(
            "INSERT INTO crates_keywords (crate_id, keyword_id)"
            " SELECT ?, id FROM keywords WHERE keyword = ?",
            (crate_id, keyword),
        )


def _set_categories(conn: Connection, crate_id: int, slugs: Sequence[str]) -> None:
    conn.execute("DELETE FROM crates_categories WHERE crate_id = ?", (crate_id,))
    for slug in dict.fromkeys(slugs):
        conn.execute(
            "INSERT INTO crates_categories (crate_id, slug) VALUES (?, ?)", (crate_id, slug)
        )


def record_categories(conn: Connection, tx: Transaction, slugs: Sequence[str], now: int) -> int:
    """Note when each of ``slugs`` was first offered (kept for those already known);
    returns how many are new."""
    added = 0
    with tx(conn):
        for slug in slugs:
            cur = conn.execute(
                "INSERT INTO categories (slug, created_at) VALUES (?, ?) ON CONFLICT DO NOTHING",
                (slug, now),
            )
            added += max(cur.rowcount, 0)
    return added


def _insert_dependencies(conn: Connection, version_id: int, deps: Sequence[Any]) -> None:
    """The ``dependencies`` rows of a version, from its index entry's ``deps`` (what
    migration 5 backfills from the entries stored before it, the same way)."""
    for dep in deps:
        crate = dep.get("package") or dep["name"]
        conn.execute(
            "INSERT INTO dependencies (version_id, name, crate, canonical, req, optional,"
            " default_features, features, target, kind, registry)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                version_id,
                dep["name"],
                crate,
                canonical_name(crate),
                dep["req"],
                int(bool(dep.get("optional", False))),
                int(bool(dep.get("default_features", True))),
                json.dumps(list(dep.get("features") or [])),
                dep.get("target"),
                dep.get("kind") or "normal",
                dep.get("registry"),
            ),
        )


def set_yanked(
    conn: Connection,
    tx: Transaction,
    name: str,
    num: str,
    yanked: bool,
    authorize: Authorize,
    now: int,
) -> None:
    with tx(conn):
        state = queries.crate_state(conn, name)
        authorize(state)
        crate = state.crate
        version = queries.version(conn, crate.id, num)
        if version is None:
            raise VersionNotFound(crate.name, num)
        if version.yanked == yanked:
            return
        conn.execute(
            "UPDATE versions SET yanked = ?, updated_at = ? WHERE id = ?",
            (int(yanked), now, version.id),
        )
        conn.execute(
            "UPDATE crates SET updated_at = ?, index_updated_at = ? WHERE id = ?",
            (now, now, crate.id),
        )
        index_files.rebuild(conn, crate.id)


def change_owners(
    conn: Connection,
    tx: Transaction,
    name: str,
    logins: Sequence[str],
    add: bool,
    authorize: Authorize,
    now: int,
    actor_login: str | None = None,
) -> OwnersChanged:
    with tx(conn):
        state = queries.crate_state(conn, name)
        authorize(state)
        crate, owners = state.crate, state.owner_ids
        users: list[User] = []
        for login in logins:
            user = queries.user_by_login(conn, login)
            if user is None:
                raise UnknownUser(login)
            users.append(user)
        if add:
            for user in users:
                if user.id in owners:
                    raise AlreadyOwner(user.login, crate.name)
                conn.execute(
                    "INSERT INTO owners (crate_id, user_id, created_at) VALUES (?, ?, ?)",
                    (crate.id, user.id, now),
                )
        else:
            for user in users:
                if user.id not in owners:
                    raise NotOwner(user.login, crate.name)
            if owners <= {u.id for u in users}:
                raise LastOwners(crate.name)
            for user in users:
                conn.execute(
                    "DELETE FROM owners WHERE crate_id = ? AND user_id = ?", (crate.id, user.id)
                )
        conn.execute("UPDATE crates SET updated_at = ? WHERE id = ?", (now, crate.id))
        record_event(
            conn,
            kind=events.OWNERS_ADDED if add else events.OWNERS_REMOVED,
            crate=crate.name,
            actor_login=actor_login,
            details={"logins": [u.login for u in users]},
            now=now,
        )
        return OwnersChanged(crate.name, tuple(u.login for u in users), add)


def set_trustpub_only(
    conn: Connection,
    tx: Transaction,
    name: str,
    value: bool,
    authorize: Authorize,
    now: int,
    actor_login: str | None = None,
) -> CrateRow:
    with tx(conn):
        state = queries.crate_state(conn, name)
        authorize(state)
        conn.execute(
            "UPDATE crates SET trustpub_only = ?, updated_at = ? WHERE id = ?",
            (int(value), now, state.crate.id),
        )
        if state.crate.trustpub_only != value:
            record_event(
                conn,
                kind=events.TRUSTPUB_ONLY,
                crate=state.crate.name,
                actor_login=actor_login,
                details={"trustpub_only": value},
                now=now,
            )
        return queries.crate_by_id(conn, state.crate.id)


def add_webhook(
    conn: Connection,
    tx: Transaction,
    name: str,
    url: str,
    secret: str,
    authorize: Authorize,
    actor_login: str,
    now: int,
    keys: WebhookKeys,
) -> events.Webhook:
    with tx(conn):
        state = queries.crate_state(conn, name)
        authorize(state)
        if any(w.url == url for w in events.webhooks(conn, state.crate.id)):
            raise WebhookExists(state.crate.name, url)
        webhook_id = events.add_webhook(conn, state.crate.id, url, secret, actor_login, now, keys)
        record_event(
            conn,
            kind=events.WEBHOOK_CREATED,
            crate=state.crate.name,
            actor_login=actor_login,
            details={"webhook_id": webhook_id, "url": url},
            now=now,
        )
        found = events.webhook(conn, webhook_id)
        assert found is not None
        return found


def delete_webhook(
    conn: Connection,
    tx: Transaction,
    name: str,
    webhook_id: int,
    authorize: Authorize,
    actor_login: str,
    now: int,
) -> None:
    with tx(conn):
        state = queries.crate_state(conn, name)
        authorize(state)
        found = events.webhook(conn, webhook_id)
        if found is None or found.crate_id != state.crate.id:
            raise WebhookNotFound(state.crate.name, webhook_id)
        events.delete_webhook(conn, state.crate.id, webhook_id)
        record_event(
            conn,
            kind=events.WEBHOOK_DELETED,
            crate=state.crate.name,
            actor_login=actor_login,
            details={"webhook_id": webhook_id, "url": found.url},
            now=now,
        )


def invite_owners(
    conn: Connection,
    tx: Transaction,
    name: str,
    logins: Sequence[str],
    authorize: Authorize,
    inviter_id: int | None,
    now: int,
    expires_at: int,
) -> OwnersInvited:
    """Invite users to own a crate. Every login must be a user who is not an owner yet
    (else nothing is written); a user with a pending invitation keeps it, an expired one
    is replaced."""
    with tx(conn):
        state = queries.crate_state(conn, name)
        authorize(state)
        crate = state.crate
        users: dict[int, User] = {}
        for login in logins:
            user = queries.user_by_login(conn, login)
            if user is None:
                raise UnknownUser(login)
            if user.id in state.owner_ids:
                raise AlreadyOwner(user.login, crate.name)
            users.setdefault(user.id, user)
        invited: list[Invitation] = []
        pending: list[str] = []
        for user in users.values():
            existing = queries.invitation(conn, crate.id, user.id)
            if existing is not None and existing.expires_at > now:
                pending.append(user.login)
                continue
            if existing is not None:
                conn.execute(
                    "DELETE FROM owner_invitations WHERE crate_id = ? AND invited_user_id = ?",
                    (crate.id, user.id),
                )
            conn.execute(
                "INSERT INTO owner_invitations (crate_id, invited_user_id, invited_by_user_id,"
                " created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
                (crate.id, user.id, inviter_id, now, expires_at),
            )
            found = queries.invitation(conn, crate.id, user.id)
            assert found is not None
            invited.append(found)
            record_event(
                conn,
                kind=events.OWNER_INVITED,
                crate=crate.name,
                actor_login=found.inviter,
                details={"invitee": found.invitee, "expires_at": expires_at},
                now=now,
            )
        return OwnersInvited(crate.name, tuple(invited), tuple(pending))


def respond_to_invitation(
    conn: Connection,
    tx: Transaction,
    user_id: int,
    crate_id: int,
    accept: bool,
    authorize: Callable[[Invitation], None],
    now: int,
) -> Invitation:
    """Accept (the user becomes an owner) or decline the user's invitation to own the
    crate ``crate_id``; either way the invitation is gone. An expired invitation cannot
    be accepted (``InvitationExpired``, nothing changed) but can be declined."""
    with tx(conn):
        found = queries.invitation(conn, crate_id, user_id)
        if found is None:
            raise InvitationNotFound(crate_id)
        authorize(found)
        if accept:
            if found.expires_at <= now:
                raise InvitationExpired(found.crate_name)
            conn.execute(
                "INSERT INTO owners (crate_id, user_id, created_at) VALUES (?, ?, ?)"
                " ON CONFLICT DO NOTHING",
                (crate_id, user_id, now),
            )
            conn.execute("UPDATE crates SET updated_at = ? WHERE id = ?", (now, crate_id))
        conn.execute(
            "DELETE FROM owner_invitations WHERE crate_id = ? AND invited_user_id = ?",
            (crate_id, user_id),
        )
        if accept:
            kind, details = events.OWNERS_ADDED, {"logins": [found.invitee], "invitation": True}
        else:
            kind, details = events.OWNER_INVITATION_DECLINED, {"invitee": found.invitee}
        record_event(
            conn,
            kind=kind,
            crate=found.crate_name,
            actor_login=found.invitee,
            details=details,
            now=now,
        )
        return found
