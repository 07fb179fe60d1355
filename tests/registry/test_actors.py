"""Who may do what: the registry's authorization checks, called directly."""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from types import MappingProxyType

import pytest

from trustpub.grants import Operation, Provenance
from trustpub.registry.actors import (
    NEW_CRATE_REFUSED,
    TRUSTPUB_ONLY_REFUSED,
    Actor,
    ExistingCrate,
    TrustedToken,
    TrustpubActor,
    UserActor,
    check_crate_pattern,
    check_publish,
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


# -- check_publish: new crate, existing crate, trustpub_only, squatting ------------------


def ci(owners: Mapping[str, tuple[str, ...]], **crates: Collection[Operation]) -> TrustpubActor:
    """A trustpub token whose policies name ``owners`` for the crates it may create."""
    return TrustpubActor(TrustedToken(trustpub(**crates).token.record, owners))


def crate(
    *logins: str, owner_ids: Collection[int] = (OWNER,), trustpub_only: bool = False
) -> ExistingCrate:
    return ExistingCrate("demo", frozenset(owner_ids), logins, trustpub_only)


def publish_refusal(actor: Actor, existing: ExistingCrate | None, status: int) -> str:
    with pytest.raises(RegistryRefused) as info:
        check_publish(actor, "demo", existing)
    assert info.value.status_code == status
    return info.value.detail


BOTH = {Operation.PUBLISH_NEW, Operation.PUBLISH_UPDATE}


def test_policy_owners_are_those_named_for_that_crate_only() -> None:
    token = ci({"my-lib": ("alice", "bob"), "other": ("carol",)}).token
    assert token.policy_owners("my_lib") == ("alice", "bob")
    assert token.policy_owners("other") == ("carol",)
    assert token.policy_owners("third") == ()


def test_a_new_crate_needs_publish_new() -> None:
    check_publish(ci({}, demo={Operation.PUBLISH_NEW}), "demo", None)
    # A user API token creates a crate nobody owns yet: it becomes the owner.
    check_publish(user(), "demo", None)
    detail = publish_refusal(ci({}, demo={Operation.PUBLISH_UPDATE}), None, 403)
    assert detail == NEW_CRATE_REFUSED
    detail = publish_refusal(user(scopes={"publish-update"}), None, 403)
    assert (
        detail
        == "This API token does not have the `publish-new` scope (its scopes: publish-update)"
    )


def test_an_existing_crate_needs_publish_update_and_ownership() -> None:
    # publish-update alone is enough for an existing crate, publish-new is not asked.
    check_publish(ci({}, demo={Operation.PUBLISH_UPDATE}), "demo", crate("alice"))
    check_publish(user(scopes={"publish-update"}), "demo", crate("alice"))
    detail = publish_refusal(ci({}, demo={Operation.PUBLISH_NEW}), crate("alice"), 403)
    assert detail == (
        "The provided access token does not allow `publish-update` on crate `demo` "
        "(its trust policy grants: publish-new)"
    )
    detail = publish_refusal(user(), crate("bob", owner_ids={OWNER + 1}), 403)
    assert detail == "You are not an owner of crate `demo`"


def test_a_trustpub_only_crate_refuses_api_tokens_and_accepts_trusted_publishing() -> None:
    detail = publish_refusal(user(), crate("alice", trustpub_only=True), 403)
    assert detail == TRUSTPUB_ONLY_REFUSED.format(name="demo")
    check_publish(user(), "demo", crate("alice", trustpub_only=False))
    check_publish(ci({"demo": ("alice",)}, demo=BOTH), "demo", crate("alice", trustpub_only=True))


def test_a_ci_token_publishes_when_one_policy_owner_owns_the_crate() -> None:
    # Logins compare with ASCII case folded.
    check_publish(ci({"demo": ("carol", "ALICE")}, demo=BOTH), "demo", crate("alice", "bob"))
    # A policy that names no owner for the crate leaves ownership to the registry.
    check_publish(ci({}, demo=BOTH), "demo", crate("bob"))
    check_publish(ci({"other": ("alice",)}, demo=BOTH), "demo", crate("bob"))


@pytest.mark.parametrize(
    ("logins", "owned_by"), [(("bob", "alice2"), "`alice2`, `bob`"), ((), "nobody")]
)
def test_a_ci_token_does_not_publish_into_a_crate_squatted_by_others(
    caplog: pytest.LogCaptureFixture, logins: tuple[str, ...], owned_by: str
) -> None:
    actor = ci({"demo": ("alice", "carol")}, demo=BOTH)
    with caplog.at_level(logging.INFO, logger="trustpub.audit"):
        detail = publish_refusal(actor, crate(*logins), 409)
    assert detail == (
        f"crate `demo` already exists and is owned by {owned_by}, none of whom the trust "
        "policy names as an owner (`alice`, `carol`); Trusted Publishing does not publish "
        "into a crate registered by someone else. Ask its owners to add one of the "
        "policy's owners, or rename the crate"
    )
    fields = [getattr(r, "fields") for r in caplog.records if r.name == "trustpub.audit"]  # noqa: B009
    assert [f["reason"] for f in fields] == ["crate-owned-by-others"]
    assert fields[0]["outcome"] == "refused"
    assert fields[0]["owners"] == sorted(logins)
    assert fields[0]["policy_owners"] == ["alice", "carol"]
    assert fields[0]["policies"] == ["p"]
