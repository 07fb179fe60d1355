"""Who may do what: the registry's authorization checks, called directly."""

from __future__ import annotations

from collections.abc import Collection
from types import MappingProxyType

import pytest

from trustpub.grants import Operation, Provenance
from trustpub.registry.actors import (
    NEW_CRATE_REFUSED,
    Actor,
    TrustedToken,
    TrustpubActor,
    UserActor,
    check_crate_pattern,
    pattern_matches,
    require,
)
from trustpub.registry.errors import RegistryRefused
from trustpub.tokens.record import TokenRecord

ALL_SCOPES = frozenset({"publish-new", "publish-update", "yank", "change-owners"})
OWNER = 7


def user(*patterns: str, scopes: Collection[str] = ALL_SCOPES) -> UserActor:
    return UserActor(OWNER, "alice", 1, frozenset(scopes), patterns)


def trustpub(**crates: Collection[Operation]) -> TrustpubActor:
    record = TokenRecord(
        crates=MappingProxyType({name: frozenset(ops) for name, ops in crates.items()}),
        issued_at=0,
        expires_at=2**40,
        provenance=Provenance(issuer="https://issuer", provider="github", repository="o/r"),
        policies=("p",),
    )
    return TrustpubActor(TrustedToken(record))


def refusal(
    actor: Actor, op: str, crate: str, owners: Collection[int] = (OWNER,), *, exists: bool = True
) -> RegistryRefused:
    with pytest.raises(RegistryRefused) as info:
        require(actor, op, crate, owners, exists=exists)
    assert info.value.status_code == 403
    return info.value


# -- crate patterns -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "name", "expected"),
    [
        ("demo", "demo", True),
        ("demo", "Demo", True),
        ("demo-lib", "demo_lib", True),
        ("demo", "demox", False),
        ("demo", "xdemo", False),
        ("demo", "dem", False),
        ("demo-*", "demo-", True),
        ("demo-*", "demo-cli", True),
        ("demo-*", "DEMO_cli", True),
        ("demo-*", "demox", False),
        ("demo-*", "demo", False),
        ("demo-*", "xdemo-cli", False),
        ("demo*", "demox", True),
        ("*", "anything", True),
    ],
)
def test_crate_pattern_matching(pattern: str, name: str, expected: bool) -> None:
    assert pattern_matches(pattern, name) is expected


@pytest.mark.parametrize("pattern", ["demo", "demo-*", "demo_lib*", "*", "a" * 65])
def test_valid_crate_patterns_are_accepted(pattern: str) -> None:
    check_crate_pattern(pattern)


@pytest.mark.parametrize(
    "pattern", ["", "-demo", "1demo", "de*mo", "demo**", "*demo", "de mo", "demö", "a" * 66]
)
def test_invalid_crate_patterns_are_refused(pattern: str) -> None:
    with pytest.raises(ValueError, match="invalid crate pattern") as info:
        check_crate_pattern(pattern)
    assert str(info.value) == (
        f"invalid crate pattern {pattern!r}: expected a crate name, optionally ending in `*`"
    )


# -- registry API tokens --------------------------------------------------------------


def test_user_token_limited_to_one_crate_is_refused_for_every_other_crate() -> None:
    actor = user("demo")
    require(actor, "publish-update", "demo", {OWNER})
    require(actor, "publish-update", "Demo", {OWNER})
    for other in ("demo2", "other", "dem", "demo-cli"):
        error = refusal(actor, "publish-update", other)
        assert error.detail == f"The provided access token is not valid for crate `{other}`"


def test_user_token_with_a_prefix_pattern_is_limited_to_the_prefix() -> None:
    actor = user("demo-*")
    require(actor, "yank", "demo-cli", {OWNER})
    error = refusal(actor, "yank", "demox")
    assert error.detail == "The provided access token is not valid for crate `demox`"


def test_user_token_with_several_patterns_allows_each_of_them() -> None:
    actor = user("demo", "tools-*")
    require(actor, "publish-update", "demo", {OWNER})
    require(actor, "publish-update", "tools-x", {OWNER})
    refusal(actor, "publish-update", "other")


def test_user_token_without_patterns_allows_every_crate_it_owns() -> None:
    require(user(), "publish-update", "anything", {OWNER})


def test_user_token_needs_the_operation_scope() -> None:
    actor = user(scopes={"yank", "publish-update"})
    require(actor, "yank", "demo", {OWNER})
    error = refusal(actor, "change-owners", "demo")
    assert error.detail == (
        "This API token does not have the `change-owners` scope (its scopes: publish-update, yank)"
    )
    error = refusal(user(scopes=()), "yank", "demo")
    assert error.detail == "This API token does not have the `yank` scope (its scopes: none)"


def test_user_must_own_an_existing_crate() -> None:
    error = refusal(user(), "publish-update", "demo", owners={OWNER + 1})
    assert error.detail == "You are not an owner of crate `demo`"
    error = refusal(user(), "publish-update", "demo", owners=())
    assert error.detail == "You are not an owner of crate `demo`"


def test_user_may_create_a_crate_nobody_owns_yet() -> None:
    require(user(), "publish-new", "demo", (), exists=False)
    # ... but the crate patterns still apply to a new crate.
    refusal(user("other"), "publish-new", "demo", (), exists=False)


# -- trustpub tokens ------------------------------------------------------------------


def test_trustpub_token_allows_its_operations_on_its_crates_only() -> None:
    actor = trustpub(demo={Operation.PUBLISH_UPDATE, Operation.YANK})
    require(actor, Operation.PUBLISH_UPDATE, "demo", {OWNER})
    require(actor, "yank", "demo", ())  # ownership is the policy's business, not the user's
    require(actor, "yank", "DEMO", ())
    error = refusal(actor, "change-owners", "demo")
    assert error.detail == (
        "The provided access token does not allow `change-owners` on crate `demo` "
        "(its trust policy grants: publish-update, yank)"
    )
    error = refusal(actor, "publish-update", "demo2")
    assert error.detail == "The provided access token is not valid for crate `demo2`"


def test_trustpub_token_compares_crates_by_canonical_name() -> None:
    actor = trustpub(demo_lib={Operation.YANK}, other={Operation.PUBLISH_UPDATE})
    assert actor.token.operations("Demo-Lib") == frozenset({Operation.YANK})
    assert actor.token.operations("other") == frozenset({Operation.PUBLISH_UPDATE})
    assert actor.token.operations("demo-lib-x") is None
    assert actor.token.operations("demo") is None


def test_trustpub_token_creates_only_the_exact_crate_granted_publish_new() -> None:
    actor = trustpub(**{"demo-lib": {Operation.PUBLISH_NEW}, "tool": {Operation.PUBLISH_UPDATE}})
    require(actor, "publish-new", "demo-lib", (), exists=False)
    for name in ("demo_lib", "Demo-lib", "tool", "other"):
        error = refusal(actor, "publish-new", name, (), exists=False)
        assert error.detail == NEW_CRATE_REFUSED
    # publish-new is not publish-update: the grant does not let it update the crate.
    refusal(actor, "publish-update", "demo-lib")
