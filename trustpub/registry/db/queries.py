"""Reads: plain functions of a connection, each returning stored values (``rows``).

The SQL runs on SQLite and PostgreSQL alike (``?`` placeholders, which the
PostgreSQL engine numbers; ``RETURNING``; ``ON CONFLICT``). Names compare up to ASCII
case as ``lower(col) = lower(?)``, with non-ASCII input refused before the query:
SQLite's ``lower`` folds ASCII only, PostgreSQL's folds more (the Kelvin sign to
``k``), and on ASCII input both agree. ``LIKE`` compares lower-cased operands (SQLite
folds ASCII case in ``LIKE``, PostgreSQL does not).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Protocol

from trustpub.errors import TrustpubError
from trustpub.registry.db import rows
from trustpub.registry.db.errors import CrateNotFound
from trustpub.registry.db.rows import (
    ApiToken,
    CrateRow,
    CrateState,
    DependencyRow,
    Invitation,
    KeywordRow,
    ReverseDependencies,
    User,
    VersionRow,
)
from trustpub.registry.names import canonical_name
from trustpub.registry.versions import parse_version


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Connection(Protocol):
    """What the queries need of a connection (``sqlite3.Connection`` has it)."""

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Cursor: ...


def user_by_login(conn: Connection, login: str) -> User | None:
    if not login.isascii():  # logins are ASCII; see the module docstring
        return None
    row = conn.execute(
        "SELECT id, login, created_at, email FROM users WHERE lower(login) = lower(?)",
        (login,),
    ).fetchone()
    return rows.user(row) if row is not None else None


def users(conn: Connection) -> list[User]:
    found = conn.execute(
        "SELECT id, login, created_at, email FROM users ORDER BY lower(login), login"
    ).fetchall()
    return [rows.user(r) for r in found]


def tokens(conn: Connection, login: str | None) -> list[ApiToken]:
    query = "SELECT t.*, u.login FROM api_tokens t JOIN users u ON u.id = t.user_id"
    params: tuple[Any, ...] = ()
    if login is not None:
        if not login.isascii():
            return []
        query += " WHERE lower(u.login) = lower(?)"
        params = (login,)
    return [rows.api_token(r) for r in conn.execute(query + " ORDER BY t.id", params).fetchall()]


def token_by_hash(conn: Connection, token_hash: bytes) -> ApiToken | None:
    row = conn.execute(
        "SELECT t.*, u.login FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE t.hash = ?",
        (token_hash,),
    ).fetchone()
    return rows.api_token(row) if row is not None else None


def crate(conn: Connection, name: str) -> CrateRow | None:
    """The crate ``name`` denotes, up to case and ``-``/``_``."""
    row = conn.execute(
        "SELECT * FROM crates WHERE canonical = ?", (canonical_name(name),)
    ).fetchone()
    return rows.crate(row) if row is not None else None


def crate_by_id(conn: Connection, crate_id: int) -> CrateRow:
    return rows.crate(conn.execute("SELECT * FROM crates WHERE id = ?", (crate_id,)).fetchone())


def crate_by_index_name(conn: Connection, lower_name: str) -> CrateRow | None:
    """The crate whose index file is ``lower_name``: its name up to case only."""
    if not lower_name.isascii():  # crate names are ASCII
        return None
    # Through the canonical name's index; the name itself differs only in case.
    row = conn.execute(
        "SELECT * FROM crates WHERE canonical = ? AND lower(name) = lower(?)",
        (canonical_name(lower_name), lower_name),
    ).fetchone()
    return rows.crate(row) if row is not None else None


def owner_users(conn: Connection, crate_id: int) -> list[User]:
    found = conn.execute(
        "SELECT u.id, u.login, u.created_at, u.email FROM owners o"
        " JOIN users u ON u.id = o.user_id"
        " WHERE o.crate_id = ? ORDER BY lower(u.login), u.login",
        (crate_id,),
    ).fetchall()
    return [rows.user(r) for r in found]


def crate_state(conn: Connection, name: str) -> CrateState:
    """The crate and its owners, or ``CrateNotFound``."""
    found = crate(conn, name)
    if found is None:
        raise CrateNotFound(name)
    return state_of(conn, found)


def state_of(conn: Connection, found: CrateRow) -> CrateState:
    """``found`` with its owners' ids and logins."""
    owners = owner_users(conn, found.id)
    return CrateState(found, frozenset(u.id for u in owners), tuple(u.login for u in owners))


SEARCH_SORTS = ("relevance", "downloads", "recent-downloads", "recent-updates", "new", "alpha")
_BY_NAME = "lower(name), name"


#: A crate's downloads on a day and later, as an SQL expression on a row of ``crates``
#: (its one placeholder: the first day). For ORDER BY too (a sort by recent downloads).
RECENT_SUM = (
    "(SELECT COALESCE(SUM(d.downloads), 0) FROM version_downloads d"
    " JOIN versions v ON v.id = d.version_id WHERE v.crate_id = crates.id AND d.date >= ?)"
)


def downloads_order(recent: bool) -> tuple[str, int]:
    """ORDER BY terms of the ``downloads`` (all time) and ``recent-downloads`` (crates.io:
    the last 90 days, from the day given as the search's ``recent_since``) sorts, most
    downloaded first, the name order breaking ties; and how many parameters they take
    (the recent sum takes its first day)."""
    if recent:
        return f"{RECENT_SUM} DESC, {_BY_NAME}", 1
    return f"downloads DESC, {_BY_NAME}", 0


def search(
    conn: Connection,
    query: str,
    limit: int,
    offset: int,
    *,
    sort: str = "relevance",
    categories: Sequence[str] | None = None,
    keyword: str | None = None,
    recent_since: str = "",
) -> tuple[list[CrateRow], int]:
    """Crates whose name or description holds ``query`` (all crates for ""), in one of
    the ``categories`` slugs (None: any) and naming ``keyword`` (stored form; None:
    any), ordered by ``sort`` (one of ``SEARCH_SORTS``; ``recent-downloads`` counts
    the days from ``recent_since``, 'YYYY-MM-DD'); one page and the total."""
    if sort not in SEARCH_SORTS:
        raise ValueError(f"unknown sort {sort!r}")
    if categories is not None and not categories:
        return [], 0
    clauses: list[str] = []
    params: list[Any] = []
    if query:
        escaped = query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        pattern = f"%{escaped}%"
        # Both sides lowered by the database: not a name comparison, so each engine's own
        # folding is fine here.
        clauses.append(
            "(lower(name) LIKE lower(?) ESCAPE '\\'"
            " OR lower(description) LIKE lower(?) ESCAPE '\\')"
        )
        params += [pattern, pattern]
    if categories is not None:
        marks = ", ".join("?" * len(categories))
        clauses.append(
            f"id IN (SELECT crate_id FROM crates_categories WHERE slug IN ({marks}))"  # noqa: S608
        )
        params += list(categories)
    if keyword is not None:
        clauses.append(
            "id IN (SELECT ck.crate_id FROM crates_keywords ck"
            " JOIN keywords k ON k.id = ck.keyword_id WHERE k.keyword = ?)"
        )
        params.append(keyword)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    (total,) = conn.execute(f"SELECT COUNT(*) FROM crates {where}", params).fetchone()  # noqa: S608
    order_params: list[Any] = []
    if sort == "relevance" and query:
        order = f"lower(name) = lower(?) DESC, {_BY_NAME}"
        order_params.append(query)
    elif sort in ("downloads", "recent-downloads"):
        order, takes = downloads_order(sort == "recent-downloads")
        order_params += [recent_since] * takes
    elif sort == "new":
        order = f"created_at DESC, {_BY_NAME}"
    elif sort == "recent-updates":
        order = f"updated_at DESC, {_BY_NAME}"
    else:  # alpha, or relevance without a query
        order = _BY_NAME
    found = conn.execute(
        f"SELECT * FROM crates {where} ORDER BY {order}, id LIMIT ? OFFSET ?",  # noqa: S608
        [*params, *order_params, limit, offset],
    ).fetchall()
    return [rows.crate(r) for r in found], int(total)


# -- categories and keywords -------------------------------------------------------------


def category_counts(conn: Connection) -> dict[str, int]:
    """How many crates name each slug (configured or not)."""
    found = conn.execute(
        "SELECT slug, COUNT(*) AS n FROM crates_categories GROUP BY slug"
    ).fetchall()
    return {str(r["slug"]): int(r["n"]) for r in found}


def category_times(conn: Connection) -> dict[str, int]:
    """When each category slug was first offered."""
    found = conn.execute("SELECT slug, created_at FROM categories").fetchall()
    return {str(r["slug"]): int(r["created_at"]) for r in found}


_KEYWORD_SELECT = (
    "SELECT k.id, k.keyword, k.created_at, COUNT(ck.crate_id) AS crates_cnt FROM keywords k"
    " LEFT JOIN crates_keywords ck ON ck.keyword_id = k.id"
)
_KEYWORD_GROUP = " GROUP BY k.id, k.keyword, k.created_at"


def keywords(
    conn: Connection, by_crates: bool, limit: int, offset: int
) -> tuple[list[KeywordRow], int]:
    """A page of keywords, alphabetical or by crates named (most first), and the total."""
    order = "crates_cnt DESC, k.keyword" if by_crates else "k.keyword"
    found = conn.execute(
        f"{_KEYWORD_SELECT}{_KEYWORD_GROUP} ORDER BY {order} LIMIT ? OFFSET ?",
        (limit, offset),
    ).fetchall()
    (total,) = conn.execute("SELECT COUNT(*) FROM keywords").fetchone()
    return [rows.keyword(r) for r in found], int(total)


def keyword(conn: Connection, key: str) -> KeywordRow | None:
    """The keyword ``key`` (its stored, lower-case form)."""
    row = conn.execute(f"{_KEYWORD_SELECT} WHERE k.keyword = ?{_KEYWORD_GROUP}", (key,)).fetchone()
    return rows.keyword(row) if row is not None else None


def crate_keywords(conn: Connection, crate_id: int) -> list[KeywordRow]:
    """The keywords a crate names, alphabetical, each with its crate count."""
    found = conn.execute(
        f"{_KEYWORD_SELECT} WHERE k.id IN"  # noqa: S608
        " (SELECT keyword_id FROM crates_keywords WHERE crate_id = ?)"
        f"{_KEYWORD_GROUP} ORDER BY k.keyword",
        (crate_id,),
    ).fetchall()
    return [rows.keyword(r) for r in found]


_VERSION_SELECT = (
    "SELECT v.*, c.name AS crate_name, u.login AS publisher FROM versions v"
    " JOIN crates c ON c.id = v.crate_id LEFT JOIN users u ON u.id = v.published_by"
)


def versions(conn: Connection, crate_id: int) -> list[VersionRow]:
    """A crate's versions in publication order."""
    found = conn.execute(f"{_VERSION_SELECT} WHERE v.crate_id = ? ORDER BY v.id", (crate_id,))
    return [rows.version(r) for r in found.fetchall()]


def version(conn: Connection, crate_id: int, num: str) -> VersionRow | None:
    """The version ``num`` (build metadata ignored, as cargo compares versions)."""
    try:
        key = parse_version(num).without_build
    except TrustpubError:  # an unparsable version is simply not there
        return None
    row = conn.execute(
        f"{_VERSION_SELECT} WHERE v.crate_id = ? AND v.num_no_build = ?", (crate_id, key)
    ).fetchone()
    return rows.version(row) if row is not None else None


def version_by_id(conn: Connection, version_id: int) -> VersionRow:
    return rows.version(conn.execute(f"{_VERSION_SELECT} WHERE v.id = ?", (version_id,)).fetchone())


def existing_version(conn: Connection, crate_id: int, num_no_build: str) -> str | None:
    row = conn.execute(
        "SELECT num FROM versions WHERE crate_id = ? AND num_no_build = ?",
        (crate_id, num_no_build),
    ).fetchone()
    return str(row["num"]) if row is not None else None


def published_files(conn: Connection) -> set[tuple[str, str]]:
    """Every version as (crate name, version number): the .crate files that must exist."""
    found = conn.execute(
        "SELECT c.name, v.num FROM versions v JOIN crates c ON c.id = v.crate_id"
    ).fetchall()
    return {(str(r["name"]), str(r["num"])) for r in found}


_INVITATION_SELECT = (
    "SELECT i.*, c.name AS crate_name, invitee.login AS invitee, inviter.login AS inviter"
    " FROM owner_invitations i JOIN crates c ON c.id = i.crate_id"
    " JOIN users invitee ON invitee.id = i.invited_user_id"
    " LEFT JOIN users inviter ON inviter.id = i.invited_by_user_id"
)


def invitations_for(conn: Connection, user_id: int, now: int) -> list[Invitation]:
    """The user's pending invitations that have not expired, oldest first."""
    found = conn.execute(
        f"{_INVITATION_SELECT} WHERE i.invited_user_id = ? AND i.expires_at > ?"
        " ORDER BY i.created_at, c.name",
        (user_id, now),
    ).fetchall()
    return [rows.invitation(r) for r in found]


def invitation(conn: Connection, crate_id: int, user_id: int) -> Invitation | None:
    row = conn.execute(
        f"{_INVITATION_SELECT} WHERE i.crate_id = ? AND i.invited_user_id = ?",
        (crate_id, user_id),
    ).fetchone()
    return rows.invitation(row) if row is not None else None


def active_token_count(conn: Connection, user_id: int, now: int) -> int:
    (count,) = conn.execute(
        "SELECT COUNT(*) FROM api_tokens WHERE user_id = ? AND revoked_at IS NULL"
        " AND (expires_at IS NULL OR expires_at > ?)",
        (user_id, now),
    ).fetchone()
    return int(count)


def index_entries(conn: Connection, name: str) -> list[dict[str, Any]]:
    """The index entries of every version of the crate ``name`` denotes (none if it
    does not exist)."""
    found = conn.execute(
        "SELECT v.entry FROM versions v JOIN crates c ON c.id = v.crate_id WHERE c.canonical = ?",
        (canonical_name(name),),
    ).fetchall()
    return [json.loads(r["entry"]) for r in found]


def dependencies(conn: Connection, version_id: int) -> list[DependencyRow]:
    """A version's dependencies in its index entry's order."""
    found = conn.execute(
        "SELECT * FROM dependencies WHERE version_id = ? ORDER BY id", (version_id,)
    ).fetchall()
    return [rows.dependency(r) for r in found]


def reverse_dependencies(
    conn: Connection, crate_id: int, limit: int, offset: int
) -> ReverseDependencies:
    """The crates whose default version depends on the crate ``crate_id`` (crates.io's
    rule), the most downloaded first, then by name, one page of them.

    A crate's default version is its highest version that is not yanked, a release
    before a pre-release; a crate whose versions are all yanked has none. Which version
    is highest is semver order, which SQL cannot compute: the candidates' versions are
    read (the versions of the crates with any version depending on this one) and
    ordered here. Dependencies on another registry's crate of the same name do not
    count.
    """
    name = crate_by_id(conn, crate_id).name
    depending = conn.execute(
        "SELECT d.version_id, MIN(d.id) AS first_id FROM dependencies d"
        " WHERE d.canonical = ? AND d.registry IS NULL GROUP BY d.version_id",
        (canonical_name(name),),
    ).fetchall()
    first_of = {int(r["version_id"]): int(r["first_id"]) for r in depending}
    if not first_of:
        return ReverseDependencies(name, (), (), 0)
    candidates = conn.execute(
        "SELECT v.id, v.crate_id, v.num, v.yanked, c.name, c.downloads FROM versions v"
        " JOIN crates c ON c.id = v.crate_id WHERE v.crate_id IN ("
        "SELECT v2.crate_id FROM versions v2 JOIN dependencies d ON d.version_id = v2.id"
        " WHERE d.canonical = ? AND d.registry IS NULL)",
        (canonical_name(name),),
    ).fetchall()
    default: dict[int, tuple[tuple[Any, ...], int, str, int]] = {}
    for r in candidates:
        if r["yanked"]:
            continue
        parsed = parse_version(str(r["num"]))
        key = (not parsed.is_prerelease, parsed.sort_key())
        best = default.get(int(r["crate_id"]))
        if best is None or key > best[0]:
            default[int(r["crate_id"])] = (key, int(r["id"]), str(r["name"]), int(r["downloads"]))
    chosen = sorted(
        (
            (crate_name, version_id, downloads)
            for _, version_id, crate_name, downloads in default.values()
            if version_id in first_of
        ),
        key=lambda item: (-item[2], item[0].lower(), item[0]),
    )
    page = chosen[offset : offset + limit]
    deps = [
        rows.dependency(
            conn.execute("SELECT * FROM dependencies WHERE id = ?", (first_of[vid],)).fetchone()
        )
        for _, vid, _ in page
    ]
    found = tuple(version_by_id(conn, vid) for _, vid, _ in page)
    downloads = tuple(n for _, _, n in page)
    return ReverseDependencies(name, tuple(deps), found, len(chosen), downloads)
