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

from trustpub.registry.db import configs, queries
from trustpub.registry.db.errors import (
    AlreadyOwner,
    LastOwners,
    NameConflict,
    NoOwners,
    NotOwner,
    UnknownDependency,
    UnknownUser,
    UserExists,
    VersionExists,
    VersionNotFound,
)
from trustpub.registry.db.queries import Connection
from trustpub.registry.db.rows import (
    ApiToken,
    CrateRow,
    CrateState,
    NewVersion,
    OwnersChanged,
    User,
    VersionRow,
)
from trustpub.registry.names import canonical_name

Transaction = Callable[[Connection], AbstractContextManager[None]]
Authorize = Callable[[CrateState], None]
AuthorizePublish = Callable[[CrateState | None], None]
"""Called with the crate's state, or None for a crate that does not exist yet."""


def _id(cursor: Any) -> int:
    (new_id,) = cursor.fetchone()
    return int(new_id)


def add_user(conn: Connection, tx: Transaction, login: str, now: int) -> User:
    with tx(conn):
        if queries.user_by_login(conn, login) is not None:
            raise UserExists(login)
        cur = conn.execute(
            "INSERT INTO users (login, created_at) VALUES (?, ?) RETURNING id", (login, now)
        )
        return User(_id(cur), login, now)


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
) -> ApiToken:
    with tx(conn):
        user = queries.user_by_login(conn, login)
        if user is None:
            raise UnknownUser(login)
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
        return ApiToken(
            _id(cur),
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


def revoke_token(conn: Connection, tx: Transaction, token_id: int, now: int) -> bool:
    with tx(conn):
        cur = conn.execute(
            "UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
            (now, token_id),
        )
        return cur.rowcount == 1


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
    inside the transaction, so a failure rolls the metadata back, and a failed commit
    calls ``remove_file(crate_name)``: the index never lists a version whose file is
    missing. A crash between the two leaves a file without its version, which the
    file store's start-up sweep removes.
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
            # Set before the call: a failure inside place_file may come after its
            # rename, and removing a file that never arrived is harmless.
            placed = True
            place_file(crate_name)
            result = queries.version_by_id(conn, version_id)
    except BaseException:
        if placed:
            remove_file(crate_name)
        raise
    return result


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
    # crate's configs, anyone else's are dropped. AUDIT CALL SITE: the returned rows are
    # the "pending publisher consumed" events.
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
    return version_id


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


def change_owners(
    conn: Connection,
    tx: Transaction,
    name: str,
    logins: Sequence[str],
    add: bool,
    authorize: Authorize,
    now: int,
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
        return OwnersChanged(crate.name, tuple(u.login for u in users), add)


def set_trustpub_only(
    conn: Connection,
    tx: Transaction,
    name: str,
    value: bool,
    authorize: Authorize,
    now: int,
) -> CrateRow:
    with tx(conn):
        state = queries.crate_state(conn, name)
        authorize(state)
        conn.execute(
            "UPDATE crates SET trustpub_only = ?, updated_at = ? WHERE id = ?",
            (int(value), now, state.crate.id),
        )
        return queries.crate_by_id(conn, state.crate.id)
