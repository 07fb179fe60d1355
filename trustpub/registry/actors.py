"""Who is calling, and what each kind of caller may do.

Two kinds of token reach the registry:

- registry API tokens (``tpreg_…``), created with ``trustpub registry token create``
  for a registry user, limited to cargo endpoint scopes and optional crate patterns;
- trustpub tokens (``trustpub_…``) minted by the exchange, each allowing only the
  operations its policies granted, only on the crates it names.

The checks are pure functions of the caller and the crate's stored state, so they run
inside the same database transaction as the change they guard. ``check_publish`` also
runs once before a publish body's ``.crate`` is decompressed: a caller without the right
to publish that name never makes the registry unpack anything.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from trustpub.grants import Operation
from trustpub.logs import audit
from trustpub.registry.errors import conflict, forbidden
from trustpub.registry.names import canonical_name
from trustpub.text import fold, shown
from trustpub.tokens.record import TokenRecord

READ = "read"
MANAGE_TOKENS = "manage-tokens"
SCOPES = (
    "publish-new",
    "publish-update",
    "yank",
    "change-owners",
    "trusted-publishing",
    READ,
    MANAGE_TOKENS,
)
"""Cargo's endpoint scopes, as crates.io names them, and two of this registry's own:

- ``read``: fetch the index and downloads and read the API of a registry that requires
  authentication (``[registry] auth_required``), and nothing else: the token for
  consumers and build machines. Every other scope implies it.
- ``manage-tokens``: the registry's stand-in for crates.io's logged-in session, which
  alone may create, list and revoke API tokens over HTTP (``/api/v1/me/tokens``);
  crates.io refuses API tokens there, and our users have no session.
"""

_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9_-]*\*?|\*")


def check_crate_pattern(pattern: str) -> None:
    """A crate pattern is a crate name, optionally ending in ``*`` (a prefix match)."""
    if not _PATTERN.fullmatch(pattern) or len(pattern) > 65:
        raise ValueError(
            f"invalid crate pattern {pattern!r}: expected a crate name, optionally ending in `*`"
        )


def pattern_matches(pattern: str, name: str) -> bool:
    canonical = canonical_name(name)
    if pattern.endswith("*"):
        return canonical.startswith(canonical_name(pattern[:-1]))
    return canonical == canonical_name(pattern)


@dataclass(frozen=True, slots=True)
class TrustedToken:
    """An active trustpub token, as its authority reported it.

    ``new_crate_owners`` maps each crate the token may create (``publish-new``) to the
    registry logins its policies named as owners when the token was minted, as the
    authority reported them (the record's own field, or the introspection answer).
    """

    record: TokenRecord
    new_crate_owners: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def operations(self, crate: str) -> frozenset[Operation] | None:
        """What the token allows on ``crate`` (None: the token does not name it).

        Compared as canonical names: two spellings of one name are one crate here.
        """
        wanted = canonical_name(crate)
        for name, ops in self.record.crates.items():
            if canonical_name(name) == wanted:
                return ops
        return None

    def policy_owners(self, crate: str) -> tuple[str, ...]:
        """The logins the token's policies name as owners of ``crate`` (any spelling of
        the name: ``my_lib`` and ``my-lib`` are one crate)."""
        wanted = canonical_name(crate)
        return tuple(
            login
            for name, logins in self.new_crate_owners.items()
            if canonical_name(name) == wanted
            for login in logins
        )


@dataclass(frozen=True, slots=True)
class UserActor:
    """A registry user calling with one of their API tokens."""

    user_id: int
    login: str
    token_id: int
    scopes: frozenset[str]
    crate_patterns: tuple[str, ...] = ()
    expires_at: int | None = None


@dataclass(frozen=True, slots=True)
class TrustpubActor:
    token: TrustedToken


Actor = UserActor | TrustpubActor


def account_holder(actor: Actor, what: str) -> UserActor:
    """The user a request acts for, on an endpoint about that user's own account
    (``/api/v1/me/...``): a Trusted Publishing token belongs to no user."""
    if isinstance(actor, TrustpubActor):
        raise forbidden(
            f"Trusted Publishing tokens cannot {what}: they act for a CI workflow, not a "
            "registry user; use the user's API token"
        )
    return actor


def require_token_manager(actor: Actor) -> UserActor:
    """Refuse unless ``actor`` may manage its user's API tokens over HTTP.

    crates.io manages tokens only from a logged-in browser session, never with an API
    token. Here a token with the ``manage-tokens`` scope and no crate scopes stands for
    that session: a token limited to some crates, or to some endpoints, must not mint
    itself a wider one.
    """
    user = account_holder(actor, "manage API tokens")
    if MANAGE_TOKENS not in user.scopes:
        have = ", ".join(sorted(user.scopes)) or "none"
        raise forbidden(
            f"This API token cannot manage API tokens: it needs the `{MANAGE_TOKENS}` scope "
            f"(its scopes: {have})"
        )
    if user.crate_patterns:
        raise forbidden(
            "This API token cannot manage API tokens: it is limited to some crates "
            f"({', '.join(user.crate_patterns)}); use a token without crate scopes"
        )
    return user


def not_valid_for_crate(name: str) -> str:
    return f"The provided access token is not valid for crate `{shown(name)}`"


NEW_CRATE_REFUSED = (
    "Trusted Publishing tokens do not support creating new crates. "
    "Publish the crate manually, first"
)

TRUSTPUB_ONLY_REFUSED = (
    "Trusted Publishing is required for crate `{name}`: it only accepts new versions "
    "published through Trusted Publishing (ask an owner to disable `trustpub_only` to "
    "publish with an API token)"
)


@dataclass(frozen=True, slots=True)
class ExistingCrate:
    """What publishing checks need of a crate already registered."""

    name: str
    owner_ids: frozenset[int]
    owner_logins: tuple[str, ...]
    trustpub_only: bool = False


def check_publish(actor: Actor, name: str, existing: ExistingCrate | None) -> None:
    """Refuse unless ``actor`` may publish a version of ``name`` (``existing`` is the
    registered crate of that canonical name, None when there is none).

    A new crate needs ``publish-new``; an existing one ``publish-update``, ownership (API
    tokens), Trusted Publishing when the owners require it, and, for a trustpub token
    whose policies name owners for this crate, at least one of those owners among the
    crate's: otherwise whoever registered the name first (a squatter) would receive the
    CI's releases while the owners the policy chose stay locked out. That refusal is a
    409 and is audited.
    """
    if existing is None:
        require(actor, Operation.PUBLISH_NEW, name, (), exists=False)
        return
    require(actor, Operation.PUBLISH_UPDATE, existing.name, existing.owner_ids)
    if isinstance(actor, UserActor):
        if existing.trustpub_only:
            # The owners chose Trusted Publishing as the only way in: a leaked or
            # long-lived API token must not bypass it.
            raise forbidden(TRUSTPUB_ONLY_REFUSED.format(name=existing.name))
        return
    wanted = actor.token.policy_owners(name)
    if wanted and not {fold(w) for w in wanted} & {fold(o) for o in existing.owner_logins}:
        audit(
            "publish",
            outcome="refused",
            reason="crate-owned-by-others",
            crate=existing.name,
            owners=sorted(existing.owner_logins),
            policy_owners=sorted(wanted),
            policies=list(actor.token.record.policies),
        )
        raise conflict(
            f"crate `{existing.name}` already exists and is owned by "
            f"{_logins(existing.owner_logins)}, none of whom the trust policy names as an "
            f"owner ({_logins(wanted)}); Trusted Publishing does not publish into a crate "
            "registered by someone else. Ask its owners to add one of the policy's owners, "
            "or rename the crate"
        )


def _logins(logins: Collection[str]) -> str:
    return ", ".join(f"`{login}`" for login in sorted(logins)) or "nobody"


def require(
    actor: Actor,
    operation: Operation | str,
    crate: str,
    owners: Collection[int],
    *,
    exists: bool = True,
) -> None:
    """Refuse unless ``actor`` may perform ``operation`` on ``crate``.

    ``owners`` are the crate's owners' user ids (empty for a new crate). Raises a 403
    ``RegistryRefused`` whose detail says what is missing.
    """
    op = str(operation)
    if isinstance(actor, TrustpubActor):
        if op == Operation.PUBLISH_NEW:
            # A new crate only for the exact name a policy lists with `publish-new`:
            # a canonical match would let `foo_bar` be created from a grant for `foo-bar`.
            exact = actor.token.record.crates.get(crate)
            if exact is None or Operation.PUBLISH_NEW not in exact:
                raise forbidden(NEW_CRATE_REFUSED)
            return
        granted = actor.token.operations(crate)
        if granted is None:
            raise forbidden(not_valid_for_crate(crate))
        if op not in {str(g) for g in granted}:
            have = ", ".join(sorted(str(g) for g in granted))
            raise forbidden(
                f"The provided access token does not allow `{op}` on crate `{crate}` "
                f"(its trust policy grants: {have})"
            )
        return
    if op not in actor.scopes:
        have = ", ".join(sorted(actor.scopes)) or "none"
        raise forbidden(f"This API token does not have the `{op}` scope (its scopes: {have})")
    if actor.crate_patterns and not any(pattern_matches(p, crate) for p in actor.crate_patterns):
        raise forbidden(not_valid_for_crate(crate))
    # A new crate has no owners yet: the publisher becomes its owner.
    if exists and actor.user_id not in owners:
        raise forbidden(f"You are not an owner of crate `{crate}`")
