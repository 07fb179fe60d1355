"""The registry's changes as its callers ask for them: who may make each one, and what
users read when it is refused.

``trustpub.registry.db`` stores; it runs the ``authorize`` callbacks built here inside
each change's transaction (so rights are checked against the state they change), and
raises plain facts (``CrateNotFound("demo")``). This module turns an actor and a
request into those calls, and every fact into the ``RegistryRefused`` cargo prints:
``refusal()`` is the one place storage errors are worded.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

from trustpub.grants import Operation
from trustpub.logins import unique_logins
from trustpub.registry.actors import (
    Actor,
    ExistingCrate,
    TrustpubActor,
    UserActor,
    check_publish,
    not_valid_for_crate,
    pattern_matches,
    require,
)
from trustpub.registry.db import (
    AlreadyOwner,
    ApiToken,
    CrateNotFound,
    CrateRow,
    CrateState,
    LastOwners,
    NameConflict,
    NewVersion,
    NoOwners,
    NotOwner,
    RegistryDataError,
    RegistryDB,
    StorageFull,
    StorageUnavailable,
    UnknownDependency,
    UnknownUser,
    User,
    UserExists,
    VersionExists,
    VersionNotFound,
    VersionRow,
    Webhook,
    WebhookExists,
    WebhookNotFound,
)
from trustpub.registry.errors import RegistryRefused, bad_request, conflict, forbidden, not_found
from trustpub.registry.publish import PublishRequest

UNAVAILABLE = "The registry's storage is unavailable; nothing was changed. Try again later"
FULL = "The registry's storage is full; nothing was changed. Try again later"


def refusal(exc: RegistryDataError) -> RegistryRefused:
    """What the user reads for a storage error (never a file name: outages are logged
    with their reason where they happen)."""
    match exc:
        case StorageFull():
            return RegistryRefused(FULL, 507)
        case StorageUnavailable():
            return RegistryRefused(UNAVAILABLE, 503)
        case UserExists(login=login):
            return conflict(f"user `{login}` already exists")
        case UnknownUser(login=login):
            return not_found(f"could not find user with login `{login}`")
        case CrateNotFound(name=name):
            return not_found(f"crate `{name}` does not exist")
        case VersionNotFound(crate=crate, num=num):
            return not_found(f"crate `{crate}` does not have a version `{num}`")
        case VersionExists(crate=crate, num=num):
            return conflict(f"crate version `{crate}@{num}` already exists")
        case NameConflict(name=name, existing=existing):
            return bad_request(
                f"crate `{name}` conflicts with existing crate `{existing}` (names that "
                "differ only in case or `-`/`_` are the same crate)"
            )
        case UnknownDependency(name=name, spelled=None):
            return bad_request(f"no known crate named `{name}` (a dependency)")
        case UnknownDependency(name=name, spelled=spelled):
            return bad_request(
                f"no known crate named `{name}` (a dependency); did you mean `{spelled}`?"
            )
        case AlreadyOwner(login=login, crate=crate):
            return bad_request(f"`{login}` is already an owner of crate `{crate}`")
        case NotOwner(login=login, crate=crate):
            return bad_request(f"`{login}` is not an owner of crate `{crate}`")
        case LastOwners(crate=crate):
            return bad_request(f"cannot remove all owners of crate `{crate}`")
        case WebhookExists(crate=crate, url=url):
            return conflict(f"crate `{crate}` already has a webhook for `{url}`")
        case WebhookNotFound(crate=crate, webhook_id=webhook_id):
            return not_found(f"crate `{crate}` has no webhook with id {webhook_id}")
        case NoOwners(crate=crate):
            return forbidden(
                f"cannot create crate `{crate}`: the trust policy that grants "
                "`publish-new` names no owners"
            )
    return RegistryRefused(UNAVAILABLE, 503)  # pragma: no cover - every kind is above


@contextlib.contextmanager
def worded() -> Iterator[None]:
    """Raise storage errors as the ``RegistryRefused`` users read."""
    try:
        yield
    except RegistryDataError as exc:
        raise refusal(exc) from exc


# -- users and tokens (the CLI) ------------------------------------------------------------


def add_user(db: RegistryDB, login: str, email: str | None = None) -> User:
    with worded():
        return db.add_user(login, email)


def set_email(db: RegistryDB, login: str, email: str | None) -> User:
    with worded():
        return db.set_email(login, email)


def add_token(
    db: RegistryDB,
    login: str,
    name: str,
    token_hash: bytes,
    scopes: Sequence[str],
    crates: Sequence[str],
    expires_at: int | None,
    actor_login: str | None = None,
) -> ApiToken:
    try:
        return db.add_token(login, name, token_hash, scopes, crates, expires_at, actor_login)
    except UnknownUser as exc:
        raise not_found(f"no registry user `{exc.login}`") from exc
    except RegistryDataError as exc:
        raise refusal(exc) from exc


def user_actor(db: RegistryDB, token_hash: bytes) -> UserActor | None:
    """The user behind an API token hash, or None if unknown, revoked or expired."""
    with worded():
        token = db.use_token(token_hash)
    if token is None:
        return None
    return UserActor(
        user_id=token.user_id,
        login=token.user_login,
        token_id=token.id,
        scopes=frozenset(token.scopes),
        crate_patterns=token.crates,
    )


# -- crates ----------------------------------------------------------------------------------


def _existing(state: CrateState | None) -> ExistingCrate | None:
    if state is None:
        return None
    return ExistingCrate(
        state.crate.name, state.owner_ids, state.owner_logins, state.crate.trustpub_only
    )


def check_publish_right(db: RegistryDB, actor: Actor, name: str) -> None:
    """The publish checks against the crate as stored now, before anything of the upload
    is unpacked (``publish`` checks again inside its transaction)."""
    with worded():
        state = db.crate_state(name)
    check_publish(actor, name, _existing(state))


def publish(
    db: RegistryDB,
    actor: Actor,
    request: PublishRequest,
    place_file: Callable[[str], None],
    remove_file: Callable[[str], None],
) -> VersionRow:
    """Record a version and place its file (see ``RegistryDB.publish``)."""
    meta = request.metadata

    def authorize(state: CrateState | None) -> None:
        # The same checks as before the upload was unpacked, now inside the transaction.
        check_publish(actor, meta.name, _existing(state))

    if isinstance(actor, UserActor):
        owners: tuple[str, ...] = (actor.login,)
        published_by, trustpub_data = actor.user_id, None
    else:
        owners = tuple(unique_logins(actor.token.new_crate_owners.get(meta.name, ())))
        published_by, trustpub_data = None, _trustpub_data(actor)
    new = NewVersion(
        crate=meta.name,
        num=meta.vers,
        num_no_build=meta.version.without_build,
        index_entry=meta.index_entry(request.cksum),
        cksum=request.cksum,
        size=len(request.crate),
        registry_deps=tuple(d.name for d in meta.deps if d.registry is None),
        owner_logins=owners,
        published_by=published_by,
        trustpub_data=trustpub_data,
        license=meta.license,
        rust_version=meta.rust_version,
        description=meta.description,
        homepage=meta.homepage,
        documentation=meta.documentation,
        repository=meta.repository,
        keywords=meta.keywords,
        categories=meta.categories,
    )
    try:
        return db.publish(new, authorize, place_file, remove_file)
    except UnknownUser as exc:
        raise forbidden(
            f"cannot create crate `{meta.name}`: the trust policy names owner "
            f"`{exc.login}`, who is not a user of this registry"
        ) from exc
    except RegistryDataError as exc:
        raise refusal(exc) from exc


def set_yanked(db: RegistryDB, actor: Actor, name: str, num: str, yanked: bool) -> None:
    def authorize(state: CrateState) -> None:
        require(actor, Operation.YANK, state.crate.name, state.owner_ids)

    with worded():
        db.set_yanked(name, num, yanked, authorize)


def change_owners(db: RegistryDB, actor: Actor, name: str, logins: Sequence[str], add: bool) -> str:
    """Add or remove owners; returns the message for the user."""

    def authorize(state: CrateState) -> None:
        require(actor, Operation.CHANGE_OWNERS, state.crate.name, state.owner_ids)

    with worded():
        changed = db.change_owners(name, logins, add, authorize, _login(actor))
    many = len(changed.logins) > 1
    if changed.added:
        verb = "added as owners" if many else "added as an owner"
    else:
        verb = "removed as owners" if many else "removed as an owner"
    names = ", ".join(f"`{login}`" for login in changed.logins)
    have = "have" if many else "has"
    return f"{names} {have} been {verb} of crate `{changed.crate}`"


def set_trustpub_only(db: RegistryDB, actor: Actor, name: str, value: bool) -> CrateRow:
    def authorize(state: CrateState) -> None:
        if isinstance(actor, TrustpubActor):
            # A CI token must never lift (or set) the restriction that guards it:
            # only a person who owns the crate decides that.
            raise forbidden(
                "Trusted Publishing tokens cannot change crate settings; use an owner's API token"
            )
        require(actor, "trusted-publishing", state.crate.name, state.owner_ids)

    with worded():
        return db.set_trustpub_only(name, value, authorize, _login(actor))


def _login(actor: Actor) -> str | None:
    return actor.login if isinstance(actor, UserActor) else None


# -- the audit trail and webhooks (owners only, with an API token) --------------------------


def _owner(actor: Actor, state: CrateState) -> UserActor:
    """The owner ``actor`` is, or a 403 saying why not."""
    name = state.crate.name
    if isinstance(actor, TrustpubActor):
        raise forbidden(
            "Trusted Publishing tokens cannot read or change a crate's audit trail or "
            "webhooks; use an owner's API token"
        )
    if actor.crate_patterns and not any(pattern_matches(p, name) for p in actor.crate_patterns):
        raise forbidden(not_valid_for_crate(name))
    if actor.user_id not in state.owner_ids:
        raise forbidden(f"You are not an owner of crate `{name}`")
    return actor


def owned_crate(db: RegistryDB, actor: Actor, name: str) -> CrateState:
    """The crate ``name`` if ``actor`` is one of its owners (404 if there is none)."""
    with worded():
        state = db.crate_state(name)
    if state is None:
        raise not_found(f"crate `{name}` does not exist")
    _owner(actor, state)
    return state


def add_webhook(db: RegistryDB, actor: Actor, name: str, url: str, secret: str) -> Webhook:
    def authorize(state: CrateState) -> None:
        _owner(actor, state)
        require(actor, "trusted-publishing", state.crate.name, state.owner_ids)

    login = _login(actor) or ""
    with worded():
        return db.add_webhook(name, url, secret, authorize, login)


def delete_webhook(db: RegistryDB, actor: Actor, name: str, webhook_id: int) -> None:
    def authorize(state: CrateState) -> None:
        _owner(actor, state)
        require(actor, "trusted-publishing", state.crate.name, state.owner_ids)

    login = _login(actor) or ""
    with worded():
        db.delete_webhook(name, webhook_id, authorize, login)


def _trustpub_data(actor: TrustpubActor) -> dict[str, object]:
    """crates.io's ``trustpub_data`` (provider, repository, run_id, sha) plus the rest
    of the token's provenance and the policies that granted it."""
    provenance = actor.token.record.provenance.to_json()
    data: dict[str, object] = dict(provenance)
    data["policies"] = list(actor.token.record.policies)
    return data
