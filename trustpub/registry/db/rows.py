"""What the registry stores, as frozen values, and how a database row becomes one.

A row is read by column name (``sqlite3.Row`` does this; so does a PostgreSQL
driver's dict row), so the converters serve any engine.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol


class Row(Protocol):
    """A database row read by column name."""

    def __getitem__(self, key: str, /) -> Any: ...


@dataclass(frozen=True, slots=True)
class User:
    id: int
    login: str
    created_at: int
    email: str | None = None


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
    user_id: int


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
    downloads: int = 0  # every version's, as flushed so far


@dataclass(frozen=True, slots=True)
class KeywordRow:
    """A keyword (ASCII lower case) and how many crates it names now."""

    id: int
    keyword: str
    crates_cnt: int
    created_at: int


@dataclass(frozen=True, slots=True)
class CrateState:
    """A crate and its owners (user ids and logins), read inside the transaction that
    changes it: what an authorization check decides on."""

    crate: CrateRow
    owner_ids: frozenset[int]
    owner_logins: tuple[str, ...] = ()


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
    downloads: int = 0  # as flushed so far (trustpub.registry.downloads)

    def index_line(self) -> dict[str, Any]:
        line = dict(self.entry)
        line["yanked"] = self.yanked
        return line


@dataclass(frozen=True, slots=True)
class DependencyRow:
    """One dependency of a version, as its index entry lists it: ``name`` is the name
    the manifest uses, ``crate`` the crate depended on (they differ for a renamed
    dependency); ``registry`` is None for a crate of this registry."""

    id: int
    version_id: int
    name: str
    crate: str
    req: str
    optional: bool
    default_features: bool
    features: tuple[str, ...]
    target: str | None
    kind: str
    registry: str | None


@dataclass(frozen=True, slots=True)
class ReverseDependencies:
    """One page of the crates whose default version depends on the crate ``crate`` (its
    name as stored): for each, the first such dependency of that version (in
    ``dependencies``) and the version (``versions``, in the same order), and the
    dependent crate's downloads (``downloads``, in the same order); ``total`` counts
    every such crate."""

    crate: str
    dependencies: tuple[DependencyRow, ...]
    versions: tuple[VersionRow, ...]
    total: int
    downloads: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class NewVersion:
    """A version to record, with everything the storage needs and nothing it must parse.

    ``registry_deps`` are the crates of this registry it depends on (each must exist,
    spelled as stored). A new crate is owned by ``owner_logins`` (each a user); a
    version is published by the user ``published_by`` or through Trusted Publishing,
    whose provenance is ``trustpub_data``.
    """

    crate: str
    num: str
    num_no_build: str
    index_entry: Mapping[str, Any]
    cksum: str
    size: int
    registry_deps: tuple[str, ...] = ()
    owner_logins: tuple[str, ...] = ()
    published_by: int | None = None
    trustpub_data: Mapping[str, object] | None = None
    license: str | None = None
    rust_version: str | None = None
    description: str | None = None
    homepage: str | None = None
    documentation: str | None = None
    repository: str | None = None
    keywords: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class OwnersChanged:
    """The outcome of an owner change: the crate as stored and the users changed."""

    crate: str
    logins: tuple[str, ...]
    added: bool


@dataclass(frozen=True, slots=True)
class Invitation:
    """A pending invitation to become an owner of a crate (``inviter`` is None when a
    Trusted Publishing token sent it)."""

    crate_id: int
    crate_name: str
    invitee_id: int
    invitee: str
    inviter_id: int | None
    inviter: str | None
    created_at: int
    expires_at: int


@dataclass(frozen=True, slots=True)
class OwnersInvited:
    """The outcome of inviting owners: who was invited now, who already had a pending
    invitation (left as it was), in the order asked."""

    crate: str
    invited: tuple[Invitation, ...]
    already_pending: tuple[str, ...]


def user(row: Row) -> User:
    try:
        email = row["email"]
    except (IndexError, KeyError):  # a query that did not select it (sqlite3: IndexError)
        email = None
    return User(row["id"], row["login"], row["created_at"], email)


def api_token(row: Row) -> ApiToken:
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
        user_id=row["user_id"],
    )


def crate(row: Row) -> CrateRow:
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
        downloads=row["downloads"],
    )


def version(row: Row) -> VersionRow:
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
        downloads=row["downloads"],
    )


def dependency(row: Row) -> DependencyRow:
    return DependencyRow(
        id=row["id"],
        version_id=row["version_id"],
        name=row["name"],
        crate=row["crate"],
        req=row["req"],
        optional=bool(row["optional"]),
        default_features=bool(row["default_features"]),
        features=tuple(json.loads(row["features"])),
        target=row["target"],
        kind=row["kind"],
        registry=row["registry"],
    )


def invitation(row: Row) -> Invitation:
    return Invitation(
        crate_id=row["crate_id"],
        crate_name=row["crate_name"],
        invitee_id=row["invited_user_id"],
        invitee=row["invitee"],
        inviter_id=row["invited_by_user_id"],
        inviter=row["inviter"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
    )


def keyword(row: Row) -> KeywordRow:
    return KeywordRow(
        id=row["id"],
        keyword=row["keyword"],
        crates_cnt=int(row["crates_cnt"]),
        created_at=row["created_at"],
    )
