import pytest

from tests.conftest import github_claims, gitlab_claims
from tests.policies.factories import GITHUB, GITLAB, github_policy, gitlab_policy, verified
from trustpub.errors import InvalidJWT, PolicyMismatch, StoreUnavailable
from trustpub.grants import Operation
from trustpub.oidc.claims import VerifiedClaims
from trustpub.policies import PolicySet
from trustpub.providers import (
    InMemoryNamespacePins,
    UnverifiedClaims,
    build_grant,
    evaluate,
    match,
)
from trustpub.providers.github import read_facts

PU, PN, Y, CO = (
    Operation.PUBLISH_UPDATE,
    Operation.PUBLISH_NEW,
    Operation.YANK,
    Operation.CHANGE_OWNERS,
)


def claims() -> VerifiedClaims:
    return verified(GITHUB, github_claims(environment="release"))


@pytest.mark.anyio
async def test_grant_is_the_union_of_every_matching_policy() -> None:
    policies = PolicySet(
        [
            github_policy(
                "a", crates=("lib", "lib-macros"), operations=frozenset({PU}), token_ttl=900
            ),
            github_policy("b", crates=("lib",), operations=frozenset({Y, PN}), token_ttl=2400),
            github_policy("c", crates=("cli",), operations=frozenset({CO}), environment="release"),
            # Same repository, but this one does not match: it must add nothing.
            github_policy("d", crates=("secret",), operations=frozenset({CO}), workflow="x.yml"),
        ]
    )
    grant = await match(policies, claims(), InMemoryNamespacePins(), max_ttl=3600)
    assert grant.crates == {
        "cli": frozenset({CO}),
        "lib": frozenset({PU, Y, PN}),
        "lib-macros": frozenset({PU}),
    }
    assert grant.ttl_seconds == 900
    assert grant.policies == ("test.toml#a", "test.toml#b", "test.toml#c")


@pytest.mark.anyio
async def test_new_crate_owners_are_the_union_of_the_policies_granting_publish_new() -> None:
    policies = PolicySet(
        [
            github_policy(
                "a", crates=("lib", "fresh"), operations=frozenset({PN}), owners=("bob",)
            ),
            github_policy(
                "b", crates=("fresh",), operations=frozenset({PN, PU}), owners=("alice", "Bob")
            ),
            # Grants publish-new but names nobody: the crate is listed, with no owners.
            github_policy("c", crates=("bare",), operations=frozenset({PN})),
            # Not publish-new: a crate only updated has no owners entry at all.
            github_policy("d", crates=("old",), operations=frozenset({PU})),
            # Does not match this token: its owners must not leak in.
            github_policy(
                "e",
                crates=("fresh",),
                operations=frozenset({PN}),
                owners=("eve",),
                workflow="x.yml",
            ),
        ]
    )
    grant = await match(policies, claims(), InMemoryNamespacePins(), max_ttl=3600)
    # Sorted, and one entry per login whatever its case (registry logins ignore case).
    assert grant.new_crate_owners == {
        "bare": (),
        "fresh": ("Bob", "alice"),
        "lib": ("bob",),
    }
    assert list(grant.new_crate_owners) == ["bare", "fresh", "lib"]


def test_a_policy_without_publish_new_adds_no_owners_to_a_crate_another_creates() -> None:
    facts = read_facts(UnverifiedClaims(github_claims()), GITHUB)
    creator = github_policy("a", crates=("lib",), operations=frozenset({PN}), owners=("alice",))
    # The loader refuses owners without publish-new; build_grant must not rely on that.
    updater = github_policy("b", crates=("lib",), operations=frozenset({PU}), owners=("mallory",))
    grant = build_grant((creator, updater), facts, max_ttl=60)
    assert grant.new_crate_owners == {"lib": ("alice",)}
    assert build_grant((updater,), facts, max_ttl=60).new_crate_owners == {}


@pytest.mark.anyio
async def test_ttl_is_capped_by_the_server_maximum() -> None:
    policies = PolicySet([github_policy(token_ttl=7200)])
    grant = await match(policies, claims(), InMemoryNamespacePins(), max_ttl=600)
    assert grant.ttl_seconds == 600


@pytest.mark.anyio
async def test_ttl_below_the_maximum_is_kept() -> None:
    policies = PolicySet([github_policy(token_ttl=90)])
    grant = await match(policies, claims(), InMemoryNamespacePins(), max_ttl=600)
    assert grant.ttl_seconds == 90


@pytest.mark.anyio
async def test_non_positive_max_ttl_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="max_ttl"):
        await match(PolicySet([github_policy()]), claims(), InMemoryNamespacePins(), max_ttl=0)


@pytest.mark.anyio
async def test_empty_policy_set_denies() -> None:
    with pytest.raises(PolicyMismatch, match="No Trusted Publishing config found"):
        await match(PolicySet([]), claims(), InMemoryNamespacePins(), max_ttl=60)


def test_build_grant_refuses_an_empty_match() -> None:
    facts = read_facts(UnverifiedClaims(github_claims()), GITHUB)
    with pytest.raises(PolicyMismatch):
        build_grant((), facts, max_ttl=60)


def test_evaluate_reports_every_field_of_every_candidate() -> None:
    policies = PolicySet([github_policy("a"), github_policy("b", workflow="other.yml")])
    facts = read_facts(UnverifiedClaims(github_claims()), GITHUB)
    result = evaluate(policies, facts, GITHUB, None)
    assert result.refusal is None
    assert [p.name for p in result.matched] == ["a"]
    fields = [c.field for c in result.reports[0].checks]
    assert fields == ["repository_owner_id", "workflow", "environment", "refs", "job_workflow"]
    workflow = result.reports[1].checks[1]
    assert (workflow.expected, workflow.got, workflow.ok) == ("other.yml", "release.yml", False)


def test_unverified_claims_refuse_wrong_types_like_verified_ones() -> None:
    bad = github_claims(repository_owner_id=5)
    with pytest.raises(InvalidJWT) as unverified_exc:
        read_facts(UnverifiedClaims(bad), GITHUB)
    with pytest.raises(InvalidJWT) as verified_exc:
        read_facts(verified(GITHUB, bad), GITHUB)
    assert unverified_exc.value.detail == verified_exc.value.detail


def checks_of(policy_claims: dict[str, object], **policy: object) -> dict[str, tuple[str, bool]]:
    facts = read_facts(UnverifiedClaims(policy_claims), GITHUB)
    result = evaluate(PolicySet([github_policy("a", **policy)]), facts, GITHUB, None)
    return {c.field: (c.got, c.ok) for c in result.reports[0].checks}


def test_evaluate_shows_a_missing_environment_and_ref_as_none() -> None:
    claims = github_claims()
    claims.pop("environment", None)
    claims.pop("ref")
    checks = checks_of(claims, environment="release", refs=["refs/heads/main"])
    assert checks["environment"] == ("(none)", False)
    assert checks["refs"] == ("(none)", False)
    # A policy without them accepts their absence, and still shows it.
    checks = checks_of(claims)
    assert checks["environment"] == ("(none)", True)
    assert checks["refs"] == ("(none)", True)


def test_any_of_the_policy_refs_may_match() -> None:
    claims = github_claims(environment="Release", ref="refs/heads/main")
    refs = ["refs/tags/v*", "refs/heads/main"]
    checks = checks_of(claims, environment="release", refs=refs)
    assert checks["environment"] == ("Release", True)
    assert checks["refs"] == ("refs/heads/main", True)
    checks = checks_of(github_claims(ref="refs/heads/dev"), refs=refs)
    assert checks["refs"] == ("refs/heads/dev", False)


class RecordingPins(InMemoryNamespacePins):
    """Pins in a dict, recording every store call; ``down`` makes every call fail."""

    def __init__(self, down: bool = False) -> None:
        super().__init__()
        self.calls: list[str] = []
        self.down = down

    async def get_namespace_pin(self, key: str) -> str | None:
        self.calls.append("get")
        if self.down:
            raise StoreUnavailable("Token store unavailable")
        return await super().get_namespace_pin(key)

    async def pin_namespace(self, key: str, namespace_id: str) -> str:
        self.calls.append("pin")
        if self.down:
            raise StoreUnavailable("Token store unavailable")
        return await super().pin_namespace(key, namespace_id)


@pytest.mark.anyio
async def test_github_tokens_never_touch_the_namespace_pins() -> None:
    pins = RecordingPins()
    assert (await match(PolicySet([github_policy()]), claims(), pins, max_ttl=60)).crates
    assert pins.calls == []
    assert pins.pins == {}


@pytest.mark.anyio
async def test_gitlab_pin_is_read_only_when_a_policy_names_the_project() -> None:
    # No policy for the project: refused as such, without asking the (failing) store.
    pins = RecordingPins(down=True)
    with pytest.raises(PolicyMismatch, match="No Trusted Publishing config"):
        await match(
            PolicySet([gitlab_policy(repository="other/project")]),
            verified(GITLAB, gitlab_claims()),
            pins,
            max_ttl=60,
        )
    assert pins.calls == []


@pytest.mark.anyio
async def test_gitlab_pin_is_written_once_then_only_read() -> None:
    pins = RecordingPins()
    policies = PolicySet([gitlab_policy()])
    await match(policies, verified(GITLAB, gitlab_claims()), pins, max_ttl=60)
    assert pins.calls == ["get", "pin"]
    await match(policies, verified(GITLAB, gitlab_claims()), pins, max_ttl=60)
    assert pins.calls == ["get", "pin", "get"]


@pytest.mark.anyio
async def test_shortest_server_lifetime_is_one_second() -> None:
    grant = await match(PolicySet([github_policy()]), claims(), InMemoryNamespacePins(), max_ttl=1)
    assert grant.ttl_seconds == 1
    for bad in (0, -1):
        with pytest.raises(ValueError, match="max_ttl must be positive"):
            await match(
                PolicySet([github_policy()]), claims(), InMemoryNamespacePins(), max_ttl=bad
            )


def test_a_report_is_ok_only_when_every_check_is() -> None:
    policies = PolicySet([github_policy("a"), github_policy("b", workflow="other.yml")])
    facts = read_facts(UnverifiedClaims(github_claims()), GITHUB)
    ok, failed = evaluate(policies, facts, GITHUB, None).reports
    assert ok.ok
    assert [c.ok for c in failed.checks].count(False) == 1
    assert not failed.ok
