"""The registry's metadata in SQLite: users and their API tokens, crates, versions,
owners. The sparse index is rendered from it, so the index is exactly what the
database holds.

Every change runs in one ``BEGIN IMMEDIATE`` transaction that also re-checks the
caller's rights against the state it changes (no check-then-act gap). The blocking
``sqlite3`` calls run in a worker thread; one connection per ``RegistryDB``, guarded
by a lock, and WAL mode so several processes can share the file.
"""

from __future__ import annotations

import json
import sqlite3
import string
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from trustpub.grants import Operation
from trustpub.registry.actors import (
    Actor,
    ExistingCrate,
    TrustpubActor,
    UserActor,
    check_publish,
    require,
)
from trustpub.registry.errors import RegistryRefused, bad_request, conflict, forbidden, not_found
from trustpub.registry.names import canonical_name
from trustpub.registry.publish import PublishRequest
from trustpub.registry.versions import parse_version

T = TypeVar("T")

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    id INTEGER PRIMARY KEY,
    login TEXT NOT NULL UNIQUE COLLATE NOCASE,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS api_tokens (
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
);
CREATE TABLE IF NOT EXISTS crates (
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
);
CREATE TABLE IF NOT EXISTS versions (
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
);
CREATE TABLE IF NOT EXISTS owners (
    crate_id INTEGER NOT NULL REFERENCES crates (id),
    user_id INTEGER NOT NULL REFERENCES users (id),
    created_at INTEGER NOT NULL,
    PRIMARY KEY (crate_id, user_id)
) WITHOUT ROWID;
"""


@dataclass(frozen=True, slots=True)
class User:
    id: int
    login: str
    created_at: int


@dataclass(frozen=True, slots=True)
class ApiToken:
    """A registry API token's stored form (never the token itself)."""

    id: int
    user_login: str
    name: str
    scopes: tuple[str, ...]
    crates: tuple[str, ...]
    created_at: int
    expires_at: int | None
    revoked_at: int | None
    last_used_at: int | None


@dataclass(frozen=True, slots=True)
class CrateRow:
    id: int
    name: str
    description: str | None
    homepage: str | None
    documentation: str | None
    repository: str | None
    keywords: tuple[str, ...]
    categories: tuple[str, ...]
    trustpub_only: bool
    created_at: int
    updated_at: int
    index_updated_at: int


@dataclass(frozen=True, slots=True)
class VersionRow:
    id: int
    crate_name: str
    num: str
    entry: dict[str, Any]
    cksum: str
    size: int
    yanked: bool
    license: str | None
    rust_version: str | None
    description: str | None
    published_by: str | None
    trustpub_data: dict[str, Any] | None
    created_at: int
    updated_at: int

    def index_line(self) -> dict[str, Any]:
        line = dict(self.entry)
        line["yanked"] = self.yanked
        return line


class RegistryDB:
    """The metadata database. ``open()`` before use, ``close()`` after."""

    def __init__(
        self,
        path: str | Path,
        *,
        busy_timeout: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path).absolute()
        self._busy_timeout = busy_timeout
        self._clock = clock
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    # -- lifecycle -----------------------------------------------------------------------

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            self.path,
            timeout=self._busy_timeout,
            isolation_level=None,
            check_same_thread=False,
        )
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA foreign_keys=ON")
        # FULL: a crate whose file was renamed into place must not lose its row on a
        # power cut after the publish was acknowledged.
        conn.execute("PRAGMA synchronous=FULL")
        conn.executescript(_SCHEMA)
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        self._conn = conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def now(self) -> int:
        return int(self._clock())

    def call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` with the connection, serialised with other calls of this process."""
        with self._lock:
            if self._conn is None:
                raise RuntimeError("the registry database is not open")
            return fn(self._conn)

    # -- users and API tokens ------------------------------------------------------------

    def add_user(self, login: str) -> User:
        def tx(conn: sqlite3.Connection) -> User:
            with _transaction(conn):
                if _user_by_login(conn, login) is not None:
                    raise conflict(f"user `{login}` already exists")
                now = self.now()
                cur = conn.execute(
                    "INSERT INTO users (login, created_at) VALUES (?, ?)", (login, now)
                )
                return User(_rowid(cur), login, now)

        return self.call(tx)

    def users(self) -> list[User]:
        rows = self.call(
            lambda c: c.execute("SELECT id, login, created_at FROM users ORDER BY login").fetchall()
        )
        return [User(r["id"], r["login"], r["created_at"]) for r in rows]

    def add_token(
        self,
        login: str,
        name: str,
        token_hash: bytes,
        scopes: Sequence[str],
        crates: Sequence[str],
        expires_at: int | None,
    ) -> ApiToken:
        def tx(conn: sqlite3.Connection) -> ApiToken:
            with _transaction(conn):
                user = _user_by_login(conn, login)
                if user is None:
                    raise not_found(f"no registry user `{login}`")
                now = self.now()
                cur = conn.execute(
                    "INSERT INTO api_tokens (user_id, name, hash, scopes, crates, created_at,"
                    " expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
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
                    _rowid(cur),
                    user.login,
                    name,
                    tuple(sorted(scopes)),
                    tuple(crates),
                    now,
                    expires_at,
                    None,
                    None,
                )

        return self.call(tx)

    def tokens(self, login: str | None = None) -> list[ApiToken]:
        query = (
            "SELECT t.*, u.login FROM api_tokens t JOIN users u ON u.id = t.user_id"
            " WHERE ?1 IS NULL OR u.login = ?1 ORDER BY t.id"
        )
        rows = self.call(lambda c: c.execute(query, (login,)).fetchall())
        return [_api_token(r) for r in rows]

    def revoke_token(self, token_id: int) -> bool:
        def tx(conn: sqlite3.Connection) -> bool:
            with _transaction(conn):
                cur = conn.execute(
                    "UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                    (self.now(), token_id),
                )
                return cur.rowcount == 1

        return self.call(tx)

    def user_actor(self, token_hash: bytes) -> UserActor | None:
        """The user behind an API token hash, or None if unknown, revoked or expired."""

        def tx(conn: sqlite3.Connection) -> UserActor | None:
            row = conn.execute(
                "SELECT t.*, u.login FROM api_tokens t JOIN users u ON u.id = t.user_id"
                " WHERE t.hash = ?",
                (token_hash,),
            ).fetchone()
            now = self.now()
            if row is None or row["revoked_at"] is not None:
                return None
            if row["expires_at"] is not None and now >= row["expires_at"]:
                return None
            conn.execute("UPDATE api_tokens SET last_used_at = ? WHERE id = ?", (now, row["id"]))
            return UserActor(
                user_id=row["user_id"],
                login=row["login"],
                token_id=row["id"],
                scopes=frozenset(json.loads(row["scopes"])),
                crate_patterns=tuple(json.loads(row["crates"])),
            )

        return self.call(tx)

    # -- reading crates ------------------------------------------------------------------

    def crate(self, name: str) -> CrateRow | None:
        """The crate ``name`` denotes, up to case and ``-``/``_``."""
        row = self.call(
            lambda c: c.execute(
                "SELECT * FROM crates WHERE canonical = ?", (canonical_name(name),)
            ).fetchone()
        )
        return _crate(row) if row is not None else None

    def index_crate(self, lower_name: str) -> tuple[CrateRow, list[VersionRow]] | None:
        """The crate whose index file is ``lower_name`` (exact up to case), with its
        versions in publication order."""

        def read(conn: sqlite3.Connection) -> tuple[CrateRow, list[VersionRow]] | None:
            row = conn.execute("SELECT * FROM crates WHERE name = ?", (lower_name,)).fetchone()
            if row is None:
                return None
            return _crate(row), _versions(conn, row["id"])

        return self.call(read)

    def crate_with_versions(self, name: str) -> tuple[CrateRow, list[VersionRow]] | None:
        def read(conn: sqlite3.Connection) -> tuple[CrateRow, list[VersionRow]] | None:
            row = conn.execute(
                "SELECT * FROM crates WHERE canonical = ?", (canonical_name(name),)
            ).fetchone()
            if row is None:
                return None
            return _crate(row), _versions(conn, row["id"])

        return self.call(read)

    def version(self, name: str, num: str) -> VersionRow | None:
        def read(conn: sqlite3.Connection) -> VersionRow | None:
            row = conn.execute(
                "SELECT id FROM crates WHERE canonical = ?", (canonical_name(name),)
            ).fetchone()
            if row is None:
                return None
            return _find_version(conn, row["id"], num)

        return self.call(read)

    def owners(self, name: str) -> list[User] | None:
        def read(conn: sqlite3.Connection) -> list[User] | None:
            crate = conn.execute(
                "SELECT id FROM crates WHERE canonical = ?", (canonical_name(name),)
            ).fetchone()
            if crate is None:
                return None
            return _owner_users(conn, crate["id"])

        return self.call(read)

    def search(self, query: str, limit: int, offset: int) -> tuple[list[CrateRow], int]:
        pattern = "%" + query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"

        def read(conn: sqlite3.Connection) -> tuple[list[CrateRow], int]:
            where = "WHERE name LIKE ?1 ESCAPE '\\' OR description LIKE ?1 ESCAPE '\\'"
            total = conn.execute(f"SELECT COUNT(*) FROM crates {where}", (pattern,)).fetchone()[0]  # noqa: S608
            rows = conn.execute(
                f"SELECT * FROM crates {where} ORDER BY name = ?2 DESC, name LIMIT ?3 OFFSET ?4",  # noqa: S608
                (pattern, query, limit, offset),
            ).fetchall()
            return [_crate(r) for r in rows], int(total)

        return self.call(read)

    def versions_of(self, crate_ids: Sequence[int]) -> dict[int, list[VersionRow]]:
        def read(conn: sqlite3.Connection) -> dict[int, list[VersionRow]]:
            return {cid: _versions(conn, cid) for cid in crate_ids}

        return self.call(read)

    # -- changes ---------------------------------------------------------------------------

    def publish(
        self,
        actor: Actor,
        request: PublishRequest,
        place_file: Callable[[str], None],
        remove_file: Callable[[str], None],
    ) -> VersionRow:
        """Record a new version and put its .crate in place, all or nothing.

        ``place_file(crate_name)`` moves the staged .crate to its final path; it runs
        inside the transaction, so a failure rolls the metadata back, and a failed
        commit calls ``remove_file(crate_name)``: the index never lists a version
        whose file is missing, and no file stays without its version.
        """
        meta = request.metadata

        def tx(conn: sqlite3.Connection) -> VersionRow:
            placed = False
            try:
                with _transaction(conn):
                    now = self.now()
                    row = conn.execute(
                        "SELECT * FROM crates WHERE canonical = ?", (canonical_name(meta.name),)
                    ).fetchone()
                    if row is None:
                        crate_id = self._create_crate(conn, actor, request, now)
                        crate_name = meta.name
                    else:
                        crate = _crate(row)
                        crate_id, crate_name = crate.id, crate.name
                        if crate.name != meta.name:
                            raise bad_request(
                                f"crate `{meta.name}` conflicts with existing crate "
                                f"`{crate.name}` (names that differ only in case or "
                                "`-`/`_` are the same crate)"
                            )
                        check_publish(actor, meta.name, _existing(conn, crate))
                        existing = conn.execute(
                            "SELECT num FROM versions WHERE crate_id = ? AND num_no_build = ?",
                            (crate_id, meta.version.without_build),
                        ).fetchone()
                        if existing is not None:
                            raise conflict(
                                f"crate version `{crate_name}@{existing['num']}` already exists"
                            )
                    self._check_dependencies(conn, request)
                    version_id = self._insert_version(conn, crate_id, actor, request, now)
                    conn.execute(
                        "UPDATE crates SET updated_at = ?, index_updated_at = ?,"
                        " description = ?, homepage = ?, documentation = ?, repository = ?,"
                        " keywords = ?, categories = ? WHERE id = ?",
                        (
                            now,
                            now,
                            meta.description,
                            meta.homepage,
                            meta.documentation,
                            meta.repository,
                            json.dumps(list(meta.keywords)),
                            json.dumps(list(meta.categories)),
                            crate_id,
                        ),
                    )
                    # Set before the call: a failure inside place_file may come after
                    # its rename, and removing a file that never arrived is harmless.
                    placed = True
                    place_file(crate_name)
                    result = _find_version_by_id(conn, version_id)
            except BaseException:
                if placed:
                    remove_file(crate_name)
                raise
            return result

        return self.call(tx)

    def check_publish(self, actor: Actor, name: str) -> None:
        """The publish checks against the crate as stored now, before anything of the
        upload is unpacked (``publish`` checks again inside its transaction)."""

        def read(conn: sqlite3.Connection) -> None:
            row = conn.execute(
                "SELECT * FROM crates WHERE canonical = ?", (canonical_name(name),)
            ).fetchone()
            check_publish(actor, name, None if row is None else _existing(conn, _crate(row)))

        self.call(read)

    def _create_crate(
        self, conn: sqlite3.Connection, actor: Actor, request: PublishRequest, now: int
    ) -> int:
        meta = request.metadata
        require(actor, Operation.PUBLISH_NEW, meta.name, (), exists=False)
        if isinstance(actor, UserActor):
            owner_ids = [actor.user_id]
        else:
            owner_ids = []
            logins = unique_logins(actor.token.new_crate_owners.get(meta.name, ()))
            for login in logins:
                user = _user_by_login(conn, login)
                if user is None:
                    raise forbidden(
                        f"cannot create crate `{meta.name}`: the trust policy names owner "
                        f"`{login}`, who is not a user of this registry"
                    )
                owner_ids.append(user.id)
            if not owner_ids:
                # A crate nobody owns could never be yanked or handed over by a person.
                raise forbidden(
                    f"cannot create crate `{meta.name}`: the trust policy that grants "
                    "`publish-new` names no owners"
                )
        cur = conn.execute(
            "INSERT INTO crates (name, canonical, created_at, updated_at, index_updated_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (meta.name, canonical_name(meta.name), now, now, now),
        )
        crate_id = _rowid(cur)
        conn.executemany(
            "INSERT OR IGNORE INTO owners (crate_id, user_id, created_at) VALUES (?, ?, ?)",
            [(crate_id, uid, now) for uid in owner_ids],
        )
        return crate_id

    def _check_dependencies(self, conn: sqlite3.Connection, request: PublishRequest) -> None:
        for dep in request.metadata.deps:
            if dep.registry is not None:
                continue
            # A dependency on this registry must name a crate it holds, exactly: cargo
            # resolves it through the index, where the name is the file name.
            row = conn.execute(
                "SELECT name FROM crates WHERE canonical = ?", (canonical_name(dep.name),)
            ).fetchone()
            if row is None:
                raise bad_request(f"no known crate named `{dep.name}` (a dependency)")
            if row["name"] != dep.name:
                raise bad_request(
                    f"no known crate named `{dep.name}` (a dependency); did you mean "
                    f"`{row['name']}`?"
                )

    def _insert_version(
        self,
        conn: sqlite3.Connection,
        crate_id: int,
        actor: Actor,
        request: PublishRequest,
        now: int,
    ) -> int:
        meta = request.metadata
        trustpub_data: str | None = None
        published_by: int | None = None
        if isinstance(actor, TrustpubActor):
            trustpub_data = json.dumps(_trustpub_data(actor), sort_keys=True)
        else:
            published_by = actor.user_id
        cur = conn.execute(
            "INSERT INTO versions (crate_id, num, num_no_build, entry, cksum, size, license,"
            " rust_version, description, published_by, trustpub_data, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                crate_id,
                meta.vers,
                meta.version.without_build,
                json.dumps(meta.index_entry(request.cksum), separators=(",", ":")),
                request.cksum,
                len(request.crate),
                meta.license,
                meta.rust_version,
                meta.description,
                published_by,
                trustpub_data,
                now,
                now,
            ),
        )
        return _rowid(cur)

    def set_yanked(self, actor: Actor, name: str, num: str, yanked: bool) -> None:
        def tx(conn: sqlite3.Connection) -> None:
            with _transaction(conn):
                crate, owners = _crate_and_owners(conn, name)
                require(actor, Operation.YANK, crate.name, owners)
                version = _find_version(conn, crate.id, num)
                if version is None:
                    raise not_found(f"crate `{crate.name}` does not have a version `{num}`")
                if version.yanked == yanked:
                    return
                now = self.now()
                conn.execute(
                    "UPDATE versions SET yanked = ?, updated_at = ? WHERE id = ?",
                    (int(yanked), now, version.id),
                )
                conn.execute(
                    "UPDATE crates SET updated_at = ?, index_updated_at = ? WHERE id = ?",
                    (now, now, crate.id),
                )

        self.call(tx)

    def change_owners(self, actor: Actor, name: str, logins: Sequence[str], add: bool) -> str:
        def tx(conn: sqlite3.Connection) -> str:
            with _transaction(conn):
                crate, owners = _crate_and_owners(conn, name)
                require(actor, Operation.CHANGE_OWNERS, crate.name, owners)
                users: list[User] = []
                for login in logins:
                    user = _user_by_login(conn, login)
                    if user is None:
                        raise not_found(f"could not find user with login `{login}`")
                    users.append(user)
                now = self.now()
                if add:
                    for user in users:
                        if user.id in owners:
                            raise bad_request(
                                f"`{user.login}` is already an owner of crate `{crate.name}`"
                            )
                        conn.execute(
                            "INSERT INTO owners (crate_id, user_id, created_at) VALUES (?, ?, ?)",
                            (crate.id, user.id, now),
                        )
                    verb = "added as owners" if len(users) > 1 else "added as an owner"
                else:
                    for user in users:
                        if user.id not in owners:
                            raise bad_request(
                                f"`{user.login}` is not an owner of crate `{crate.name}`"
                            )
                    if owners <= {u.id for u in users}:
                        raise bad_request(f"cannot remove all owners of crate `{crate.name}`")
                    conn.executemany(
                        "DELETE FROM owners WHERE crate_id = ? AND user_id = ?",
                        [(crate.id, u.id) for u in users],
                    )
                    verb = "removed as owners" if len(users) > 1 else "removed as an owner"
                conn.execute("UPDATE crates SET updated_at = ? WHERE id = ?", (now, crate.id))
                names = ", ".join(f"`{u.login}`" for u in users)
                have = "have" if len(users) > 1 else "has"
                return f"{names} {have} been {verb} of crate `{crate.name}`"

        return self.call(tx)

    def set_trustpub_only(self, actor: Actor, name: str, value: bool) -> CrateRow:
        def tx(conn: sqlite3.Connection) -> CrateRow:
            with _transaction(conn):
                crate, owners = _crate_and_owners(conn, name)
                if isinstance(actor, TrustpubActor):
                    # A CI token must never lift (or set) the restriction that guards
                    # it: only a person who owns the crate decides that.
                    raise forbidden(
                        "Trusted Publishing tokens cannot change crate settings; "
                        "use an owner's API token"
                    )
                require(actor, "trusted-publishing", crate.name, owners)
                conn.execute(
                    "UPDATE crates SET trustpub_only = ?, updated_at = ? WHERE id = ?",
                    (int(value), self.now(), crate.id),
                )
                row = conn.execute("SELECT * FROM crates WHERE id = ?", (crate.id,)).fetchone()
                return _crate(row)

        return self.call(tx)


# -- helpers ---------------------------------------------------------------------------


@contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _rowid(cur: sqlite3.Cursor) -> int:
    assert cur.lastrowid is not None
    return cur.lastrowid


_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def unique_logins(logins: Sequence[str]) -> list[str]:
    """Each login once, in first-seen order, compared case-insensitively.

    A token's owners may come from a remote introspection answer, which could list
    ``Alice`` and ``alice``: one user, who must be added once. The fold is ASCII-only,
    exactly as the ``users.login`` column's ``COLLATE NOCASE`` compares, so two logins
    that the database keeps apart (``É`` and ``é``) are never merged into one owner.
    """
    seen: dict[str, str] = {}
    for login in logins:
        seen.setdefault(login.translate(_ASCII_LOWER), login)
    return list(seen.values())


def _user_by_login(conn: sqlite3.Connection, login: str) -> User | None:
    row = conn.execute(
        "SELECT id, login, created_at FROM users WHERE login = ?", (login,)
    ).fetchone()
    return User(row["id"], row["login"], row["created_at"]) if row is not None else None


def _owner_users(conn: sqlite3.Connection, crate_id: int) -> list[User]:
    rows = conn.execute(
        "SELECT u.id, u.login, u.created_at FROM owners o JOIN users u ON u.id = o.user_id"
        " WHERE o.crate_id = ? ORDER BY u.login",
        (crate_id,),
    ).fetchall()
    return [User(r["id"], r["login"], r["created_at"]) for r in rows]


def _existing(conn: sqlite3.Connection, crate: CrateRow) -> ExistingCrate:
    users = _owner_users(conn, crate.id)
    return ExistingCrate(
        crate.name,
        frozenset(u.id for u in users),
        tuple(u.login for u in users),
        crate.trustpub_only,
    )


def _crate_and_owners(conn: sqlite3.Connection, name: str) -> tuple[CrateRow, set[int]]:
    row = conn.execute(
        "SELECT * FROM crates WHERE canonical = ?", (canonical_name(name),)
    ).fetchone()
    if row is None:
        raise not_found(f"crate `{name}` does not exist")
    crate = _crate(row)
    return crate, {u.id for u in _owner_users(conn, crate.id)}


def _crate(row: sqlite3.Row) -> CrateRow:
    return CrateRow(
        id=row["id"],
        name=row["name"],
        description=row["description"],
        homepage=row["homepage"],
        documentation=row["documentation"],
        repository=row["repository"],
        keywords=tuple(json.loads(row["keywords"])),
        categories=tuple(json.loads(row["categories"])),
        trustpub_only=bool(row["trustpub_only"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        index_updated_at=row["index_updated_at"],
    )


_VERSION_SELECT = (
    "SELECT v.*, c.name AS crate_name, u.login AS publisher FROM versions v"
    " JOIN crates c ON c.id = v.crate_id LEFT JOIN users u ON u.id = v.published_by"
)


def _version(row: sqlite3.Row) -> VersionRow:
    return VersionRow(
        id=row["id"],
        crate_name=row["crate_name"],
        num=row["num"],
        entry=json.loads(row["entry"]),
        cksum=row["cksum"],
        size=row["size"],
        yanked=bool(row["yanked"]),
        license=row["license"],
        rust_version=row["rust_version"],
        description=row["description"],
        published_by=row["publisher"],
        trustpub_data=json.loads(row["trustpub_data"]) if row["trustpub_data"] else None,
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _versions(conn: sqlite3.Connection, crate_id: int) -> list[VersionRow]:
    rows = conn.execute(f"{_VERSION_SELECT} WHERE v.crate_id = ? ORDER BY v.id", (crate_id,))
    return [_version(r) for r in rows.fetchall()]


def _find_version(conn: sqlite3.Connection, crate_id: int, num: str) -> VersionRow | None:
    try:
        key = parse_version(num).without_build
    except RegistryRefused:  # an unparsable version is simply not there
        return None
    row = conn.execute(
        f"{_VERSION_SELECT} WHERE v.crate_id = ? AND v.num_no_build = ?", (crate_id, key)
    ).fetchone()
    return _version(row) if row is not None else None


def _find_version_by_id(conn: sqlite3.Connection, version_id: int) -> VersionRow:
    row = conn.execute(f"{_VERSION_SELECT} WHERE v.id = ?", (version_id,)).fetchone()
    return _version(row)


def _api_token(row: sqlite3.Row) -> ApiToken:
    return ApiToken(
        id=row["id"],
        user_login=row["login"],
        name=row["name"],
        scopes=tuple(json.loads(row["scopes"])),
        crates=tuple(json.loads(row["crates"])),
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        revoked_at=row["revoked_at"],
        last_used_at=row["last_used_at"],
    )


def _trustpub_data(actor: TrustpubActor) -> dict[str, object]:
    """crates.io's ``trustpub_data`` (provider, repository, run_id, sha) plus the rest
    of the token's provenance and the policies that granted it."""
    provenance = actor.token.record.provenance.to_json()
    data: dict[str, object] = dict(provenance)
    data["policies"] = list(actor.token.record.policies)
    return data
