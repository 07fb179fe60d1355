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
    TrustedToken,
    TrustpubActor,
    UserActor,
    account_holder,
    check_publish,
    not_valid_for_crate,
    pattern_matches,
    require,
)
from trustpub.registry.db import (
    AlreadyOwner,
    ApiToken,
    CommitFailed,
    CrateNotFound,
    CrateRow,
    CrateState,
    Invitation,
    InvitationExpired,
    InvitationNotFound,
    LastOwners,
    NameConflict,
    NewVersion,
    NoOwners,
    NotOwner,
    PublishOutcomeUnknown,
    RegistryDataError,
    RegistryDB,
    StorageFull,
    StorageUnavailable,
    TooManyTokens,
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
from trustpub.registry.errors import (
    RegistryRefused,
    bad_request,
    conflict,
    forbidden,
    gone,
    not_found,
)
from trustpub.registry.invitations import InvitationEvent, record_invitation_event
from trustpub.registry.names import canonical_name
from trustpub.registry.publish import PublishRequest
from trustpub.text import shown

UNAVAILABLE = "The registry's storage is unavailable; nothing was changed. Try again later"
UNCERTAIN = (
    "The registry's database failed while saving the change, which may or may not have "
    "been made. Check, and try again later if it was not"
)
FULL = "The registry's storage is full; nothing was changed. Try again later"


def refusal(exc: RegistryDataError) -> RegistryRefused:
    """What the user reads for a storage error (never a file name: outages are logged
    with their reason where they happen)."""
    match exc:
        case StorageFull():
            return RegistryRefused(FULL, 507)
        case PublishOutcomeUnknown(crate=crate, num=num):
            return RegistryRefused(
                f"The registry's database failed while recording `{crate}@{num}`, and "
                "whether it was recorded is not known yet. Try again later: if it was "
                "recorded, the version is listed and publishing it again answers that "
                "it already exists",
                503,
            )
        case CommitFailed():
            # Its COMMIT may have been recorded: "nothing was changed" could be false.
            return RegistryRefused(UNCERTAIN, 503)
        case StorageUnavailable():
            return RegistryRefused(UNAVAILABLE, 503)
        case UserExists(login=login):
            return conflict(f"user `{login}` already exists")
        case UnknownUser(login=login):
            return not_found(f"could not find user with login `{login}`")
        case CrateNotFound(name=name):
            return not_found(f"crate `{shown(name)}` does not exist")
        case VersionNotFound(crate=crate, num=num):
            return not_found(f"crate `{shown(crate)}` does not have a version `{shown(num)}`")
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
        case InvitationNotFound(crate_id=crate_id):
            return not_found(f"no pending owner invitation for the crate with id {crate_id}")
        case InvitationExpired(crate=crate):
            return gone(
                f"The invitation to become an owner of the {crate} crate expired. "
                "Please reach out to an owner of the crate to request a new invitation."
            )
        case TooManyTokens(limit=limit):
            return bad_request(f"maximum tokens per user is: {limit}")
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
    *,
    max_active: int | None = None,
) -> ApiToken:
    try:
        return db.add_token(
            login,
            name,
            token_hash,
            scopes,
            crates,
            expires_at,
            actor_login,
            max_active=max_active,
        )
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
        expires_at=token.expires_at,
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


def invite_owners(
    db: RegistryDB, actor: Actor, name: str, logins: Sequence[str], expires_in: int
) -> tuple[str, list[InvitationEvent]]:
    """Invite users to own a crate (``cargo owner --add``), as crates.io does: nobody
    becomes an owner until they accept. Returns crates.io's message for cargo and the
    events to record (see ``record_invitation_event``)."""

    def authorize(state: CrateState) -> None:
        require(actor, Operation.CHANGE_OWNERS, state.crate.name, state.owner_ids)

    inviter = actor.user_id if isinstance(actor, UserActor) else None
    with worded():
        outcome = db.invite_owners(name, logins, authorize, inviter, expires_in)
    events = [record_invitation_event(InvitationEvent.invited(i)) for i in outcome.invited]
    msgs = [
        f"user {i.invitee} has been invited to be an owner of crate {outcome.crate}"
        for i in outcome.invited
    ] + [
        f"user {login} already has a pending invitation to be an owner of crate {outcome.crate}"
        for login in outcome.already_pending
    ]
    return ",".join(msgs), events


def respond_to_invitation(
    db: RegistryDB, actor: Actor, crate_id: int, accept: bool
) -> tuple[Invitation, InvitationEvent]:
    """Accept or decline the caller's invitation to own the crate ``crate_id``.

    Which token may answer: crates.io takes only a logged-in session or a token without
    scopes. Here every token is scoped, so the rule is the one for owner changes: the
    ``change-owners`` scope, and crate scopes (if any) that cover the crate. A
    publish-only CI token or a read-only build token must not make its holder an owner.
    """
    user = account_holder(actor, "answer owner invitations")

    def authorize(invitation: Invitation) -> None:
        if str(Operation.CHANGE_OWNERS) not in user.scopes:
            have = ", ".join(sorted(user.scopes)) or "none"
            raise forbidden(
                f"This API token does not have the `{Operation.CHANGE_OWNERS}` scope needed "
                f"to answer an owner invitation (its scopes: {have})"
            )
        if user.crate_patterns and not any(
            pattern_matches(p, invitation.crate_name) for p in user.crate_patterns
        ):
            raise forbidden(not_valid_for_crate(invitation.crate_name))

    with worded():
        answered = db.respond_to_invitation(user.user_id, crate_id, accept, authorize)
    event = InvitationEvent.answered(answered, accepted=accept)
    return answered, record_invitation_event(event)


MAX_DEPENDENCY_CLOSURE = 1000


def readable_crates(db: RegistryDB, token: TrustedToken) -> frozenset[str]:
    """The crates (canonical names) a Trusted Publishing token may read in a registry
    that requires authentication: the crates it names, and every crate of this registry
    they depend on, directly or not, in any published version.

    Why not all crates: a trust policy admits one CI workflow to publish some crates;
    reading the rest of a private registry is not what it was trusted with. Why not only
    its crates: ``cargo publish`` resolves (and verifies by building) the crate's
    dependencies through the same token, so the crates it already depends on must be
    readable. A release that adds a dependency on a crate none of its versions used yet
    needs a ``read`` token for that publish (or the dependency published first under
    the same policy). The walk stops at ``MAX_DEPENDENCY_CLOSURE`` crates.
    """
    seen: set[str] = set()
    queue = [canonical_name(name) for name in token.record.crates]
    while queue and len(seen) < MAX_DEPENDENCY_CLOSURE:
        name = queue.pop()
        if name in seen:
            continue
        seen.add(name)
        with worded():
            entries = db.index_entries(name)
        for entry in entries:
            deps = entry.get("deps")
            if not isinstance(deps, list):
                continue
            for dep in deps:
                if not isinstance(dep, dict) or dep.get("registry") is not None:
                    continue  # another registry's crate: not ours to gate
                package = dep.get("package") or dep.get("name")
                if isinstance(package, str):
                    queue.append(canonical_name(package))
    return frozenset(seen)


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
        raise not_found(f"crate `{shown(name)}` does not exist")
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
