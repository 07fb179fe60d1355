"""Who is calling, and what each kind of caller may do.

Two kinds of token reach the registry:

- registry API tokens (``tpreg_…``), created with ``trustpub registry token create``
  for a registry user, limited to cargo endpoint scopes and optional crate patterns;
- trustpub tokens (``trustpub_…``) minted by the exchange, each allowing only the
  operations its policies granted, only on the crates it names.

The checks are pure functions of the caller and the crate's stored state, so they run
inside the same database transaction as the change they guard.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from trustpub.grants import Operation
from trustpub.registry.errors import forbidden
from trustpub.registry.names import canonical_name
from trustpub.tokens.record import TokenRecord

SCOPES = ("publish-new", "publish-update", "yank", "change-owners", "trusted-publishing")
"""Cargo's endpoint scopes, as crates.io names them."""

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


@dataclass(frozen=True, slots=True)
class UserActor:
    """A registry user calling with one of their API tokens."""

    user_id: int
    login: str
    token_id: int
    scopes: frozenset[str]
    crate_patterns: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class TrustpubActor:
    token: TrustedToken


Actor = UserActor | TrustpubActor


def not_valid_for_crate(name: str) -> str:
    return f"The provided access token is not valid for crate `{name}`"


NEW_CRATE_REFUSED = (
    "Trusted Publishing tokens do not support creating new crates. "
    "Publish the crate manually, first"
)

TRUSTPUB_ONLY_REFUSED = (
    "Trusted Publishing is required for crate `{name}`: it only accepts new versions "
    "published through Trusted Publishing (ask an owner to disable `trustpub_only` to "
    "publish with an API token)"
)


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
