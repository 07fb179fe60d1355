import re
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from tests.conftest import github_claims
from tests.policies.factories import GHES, GITHUB, github_policy, job_rule, verified
from trustpub.errors import InvalidJWT, PolicyMismatch
from trustpub.grants import Grant, Operation
from trustpub.policies import Policy, PolicySet
from trustpub.providers import (
    InMemoryNamespacePins,
    UnverifiedClaims,
    WorkflowRef,
    evaluate,
    match,
    parse_workflow_ref,
)
from trustpub.providers.github import read_facts

MAX_TTL = 3600
PREFIX = "The Trusted Publishing config for repository `octo-org/octo-lib`"


async def run(policies: list[Policy], **claims: Any) -> Grant:
    return await match(
        PolicySet(policies),
        verified(GITHUB, github_claims(**claims)),
        InMemoryNamespacePins(),
        max_ttl=MAX_TTL,
    )


async def refusal(policies: list[Policy], **claims: Any) -> str:
    with pytest.raises(PolicyMismatch) as exc:
        await run(policies, **claims)
    return exc.value.detail


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            "octo-org/octo-lib/.github/workflows/release.yml@refs/heads/main",
            WorkflowRef("octo-org/octo-lib", "release.yml", "refs/heads/main"),
        ),
        (
            "o/r/.github/workflows/nested@evil.yml@refs/heads/main",
            WorkflowRef("o/r", "nested@evil.yml", "refs/heads/main"),
        ),
        (
            "o/r/.github/workflows/release.yml@refs/heads/x@y.yml",
            WorkflowRef("o/r", "release.yml", "refs/heads/x@y.yml"),
        ),
        (
            "o/r/.github/workflows/a.yml@b.yaml@refs/tags/v1",
            WorkflowRef("o/r", "a.yml@b.yaml", "refs/tags/v1"),
        ),
        (
            "o/.github/.github/workflows/ci.yaml@8c13a5f0",
            WorkflowRef("o/.github", "ci.yaml", "8c13a5f0"),
        ),
        # The file name ends at the first `@` after `.yml`, even when the ref ends in
        # `.yml` too; a one-character ref is a ref.
        ("o/r/.github/workflows/a.yml@x.ymlz", WorkflowRef("o/r", "a.yml", "x.ymlz")),
        ("o/r/.github/workflows/a.yml@x", WorkflowRef("o/r", "a.yml", "x")),
        # A file name that is only the extension is a file name.
        ("o/r/.github/workflows/.yml@x", WorkflowRef("o/r", ".yml", "x")),
        ("o/r/.github/workflows/@.yml@x/y", WorkflowRef("o/r", "@.yml", "x/y")),
    ],
)
def test_workflow_ref_is_split_at_the_ref(value: str, expected: WorkflowRef) -> None:
    assert parse_workflow_ref(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        "release.yml@refs/heads/main",
        "o/r/release.yml@refs/heads/main",
        "o/r/.github/workflows/release@refs/heads/main",
        "o/r/.github/workflows/release.yml",
        "o/r/.github/workflows/release.yml@",
        # An empty ref after the last `@` of the file name, even if an earlier `@` would
        # leave one; an empty file name.
        "o/r/.github/workflows/a.yml@b.yml@",
        "o/r/.github/workflows/@refs/heads/main",
        "o/r/.github/workflows/sub/release.yml@refs/heads/main",
        "//.github/workflows/release.yml@refs/heads/main",
        "/r/.github/workflows/release.yml@refs/heads/main",
        "o//.github/workflows/release.yml@refs/heads/main",
        # The workflows folder exactly: not another folder of the same length.
        "o/r/" + "x" * len(".github/workflows/") + "release.yml@refs/heads/main",
        "o/r/.github/workflows//release.yml@refs/heads/main",
        # The whole owner and the whole repository name, not a part of either.
        "octo/re po/.github/workflows/release.yml@refs/heads/main",
        "oc to/repo/.github/workflows/release.yml@refs/heads/main",
    ],
)
def test_malformed_workflow_refs_are_not_parsed(value: str) -> None:
    assert parse_workflow_ref(value) is None


def reference_parse_workflow_ref(value: str) -> WorkflowRef | None:
    """The character-by-character parser this module had first: the oracle for the
    find-based one."""
    parts = value.split("/", 2)
    if len(parts) != 3 or not re.fullmatch(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+", "/".join(parts[:2])):
        return None
    owner, repo, rest = parts
    if not rest.startswith(".github/workflows/"):
        return None
    rest = rest[len(".github/workflows/") :]
    slash = rest.find("/")
    limit = len(rest) if slash < 0 else slash
    split_at = None
    for i in range(limit):
        if rest[i] == "@" and rest[:i].endswith((".yml", ".yaml")):
            split_at = i
    if split_at is None or split_at + 1 >= len(rest):
        return None
    return WorkflowRef(f"{owner}/{repo}", rest[:split_at], rest[split_at + 1 :])


@given(
    st.sampled_from(
        ["o/r/.github/workflows/", "o/.github/.github/workflows/", "o/r/", "o/r/x/", ""]
    ),
    st.text(alphabet="@/.ymla\u212ax", max_size=24),
)
@example("o/r/.github/workflows/", "a.yml@@")
@example("o/r/.github/workflows/", "a.yml@b.yml@")
@example("o/r/.github/workflows/", "@a.yml@x")
@example("o/r/.github/workflows/", "a.yaml@b.yml@c/d@e.yml@f")
def test_workflow_refs_parse_as_the_reference_parser_does(prefix: str, rest: str) -> None:
    value = prefix + rest
    assert parse_workflow_ref(value) == reference_parse_workflow_ref(value)


@pytest.mark.anyio
async def test_happy_path_without_environment() -> None:
    grant = await run([github_policy()], environment="anything")
    assert grant.crates == {"octo-lib": frozenset({Operation.PUBLISH_UPDATE})}
    assert grant.policies == ("test.toml#release",)
    assert grant.ttl_seconds == 1800


@pytest.mark.anyio
async def test_happy_path_with_environment_compared_case_insensitively() -> None:
    grant = await run([github_policy(environment="Release")], environment="rElEaSe")
    assert "octo-lib" in grant.crates


@pytest.mark.anyio
async def test_owner_and_repository_compare_case_insensitively() -> None:
    grant = await run([github_policy()], repository="OCTO-ORG/Octo-Lib")
    assert grant.provenance.repository == "OCTO-ORG/Octo-Lib"


@pytest.mark.anyio
async def test_provenance_comes_from_the_claims() -> None:
    grant = await run([github_policy()], environment="release")
    p = grant.provenance
    assert (p.issuer, p.provider, p.repository) == (GITHUB.url, "github", "octo-org/octo-lib")
    assert p.repository_id == "632596897"
    assert p.owner_id == "131804563"
    assert p.workflow_ref == "octo-org/octo-lib/.github/workflows/release.yml@refs/tags/v1.2.3"
    assert p.job_workflow_ref == p.workflow_ref
    assert (p.ref, p.sha) == ("refs/tags/v1.2.3", "8c13a5f0d1c8a9e6b1f2")
    assert (p.run_id, p.run_attempt) == ("21561244697", "1")
    assert (p.environment, p.event, p.job_id) == ("release", "push", None)


@pytest.mark.anyio
async def test_no_policy_for_the_repository() -> None:
    detail = await refusal([github_policy()], repository="octo-org/other")
    assert detail == "No Trusted Publishing config found for repository `octo-org/other`."


@pytest.mark.anyio
async def test_canonical_policy_does_not_match_a_token_from_another_issuer() -> None:
    claims = github_claims(iss=GHES.url)
    with pytest.raises(PolicyMismatch, match="No Trusted Publishing config found"):
        await match(
            PolicySet([github_policy()]),
            verified(GHES, claims),
            InMemoryNamespacePins(),
            max_ttl=MAX_TTL,
        )


@pytest.mark.anyio
async def test_policy_for_a_custom_issuer_matches_its_tokens_only() -> None:
    policies = PolicySet([github_policy(issuer=GHES.url)])
    grant = await match(
        policies, verified(GHES, github_claims(iss=GHES.url)), InMemoryNamespacePins(), max_ttl=60
    )
    assert grant.provenance.issuer == GHES.url
    with pytest.raises(PolicyMismatch, match="No Trusted Publishing config found"):
        await match(
            policies, verified(GITHUB, github_claims()), InMemoryNamespacePins(), max_ttl=60
        )


@pytest.mark.anyio
async def test_owner_id_mismatch_uses_crates_io_wording() -> None:
    policies = [
        github_policy("a", repository_owner_id="9"),
        github_policy("b", repository_owner_id="10"),
    ]
    detail = await refusal(policies, repository_owner_id="666")
    assert detail.startswith(
        f"{PREFIX} does not match the repository owner ID (666) in the JWT. "
        "Expected owner IDs: 9, 10."
    )


@pytest.mark.anyio
async def test_workflow_mismatch_lists_expected_sorted_and_deduplicated() -> None:
    policies = [
        github_policy("a", workflow="b.yml"),
        github_policy("b", workflow="a.yml"),
        github_policy("c", workflow="b.yml"),
    ]
    detail = await refusal(policies)
    assert detail == (
        f"{PREFIX} does not match the workflow filename `release.yml` in the JWT. "
        "Expected workflow filenames: `a.yml`, `b.yml`"
    )


@pytest.mark.anyio
async def test_workflow_compares_case_sensitively() -> None:
    detail = await refusal([github_policy(workflow="Release.yml")])
    assert "workflow filename `release.yml`" in detail


@pytest.mark.anyio
async def test_workflow_name_with_at_sign_is_matched_whole() -> None:
    ref = "octo-org/octo-lib/.github/workflows/nested@evil.yml@refs/heads/main"
    detail = await refusal([github_policy(workflow="evil.yml")], workflow_ref=ref)
    assert "workflow filename `nested@evil.yml`" in detail
    grant = await run([github_policy(workflow="nested@evil.yml")], workflow_ref=ref)
    assert grant.policies == ("test.toml#release",)


@pytest.mark.anyio
async def test_ref_with_at_and_yml_does_not_fool_the_filename() -> None:
    ref = "octo-org/octo-lib/.github/workflows/release.yml@refs/heads/x@y.yml"
    assert (await run([github_policy()], workflow_ref=ref)).crates
    detail = await refusal([github_policy(workflow="y.yml")], workflow_ref=ref)
    assert "workflow filename `release.yml`" in detail


@pytest.mark.anyio
async def test_environment_mismatch() -> None:
    detail = await refusal([github_policy(environment="release")], environment="staging")
    assert detail == (
        f"{PREFIX} does not match the environment `staging` in the JWT. "
        "Expected environments: `release`"
    )


@pytest.mark.anyio
async def test_environment_required_but_missing() -> None:
    claims = github_claims()
    claims.pop("environment", None)
    with pytest.raises(PolicyMismatch) as exc:
        await match(
            PolicySet([github_policy(environment="release")]),
            verified(GITHUB, claims),
            InMemoryNamespacePins(),
            max_ttl=MAX_TTL,
        )
    assert exc.value.detail == (
        f"{PREFIX} requires an environment, but the JWT does not specify one. "
        "Expected environments: `release`"
    )


@pytest.mark.anyio
async def test_empty_environment_counts_as_missing() -> None:
    detail = await refusal([github_policy(environment="release")], environment="")
    assert "requires an environment" in detail


@pytest.mark.anyio
async def test_policy_without_environment_survives_next_to_one_that_requires_it() -> None:
    policies = [
        github_policy("env", environment="release", crates=("a",)),
        github_policy("any", crates=("b",)),
    ]
    grant = await run(policies)
    assert set(grant.crates) == {"b"}


@pytest.mark.anyio
@pytest.mark.parametrize("event", ["pull_request_target", "workflow_run"])
async def test_refused_events_are_refused_before_anything_else(event: str) -> None:
    detail = await refusal([], event_name=event)
    assert detail == (
        f"Trusted Publishing does not support the `{event}` event trigger due to security "
        "concerns. Please use a different trigger such as `push`, `release`, or "
        "`workflow_dispatch`."
    )


@pytest.mark.anyio
@pytest.mark.parametrize("event", ["push", "release", "workflow_dispatch", "schedule"])
async def test_other_events_are_accepted(event: str) -> None:
    assert (await run([github_policy()], event_name=event)).crates


@pytest.mark.anyio
async def test_ref_constraint_matches_tags_only() -> None:
    policy = github_policy(refs=["refs/tags/v*"])
    assert (await run([policy], ref="refs/tags/v2.0.0")).crates
    detail = await refusal([policy], ref="refs/heads/main")
    assert detail == (
        f"{PREFIX} does not match the ref `refs/heads/main` in the JWT. "
        "Expected refs: `refs/tags/v*`"
    )


@pytest.mark.anyio
async def test_single_star_ref_does_not_span_a_slash_but_double_star_does() -> None:
    assert "ref" in await refusal([github_policy(refs=["refs/tags/v*"])], ref="refs/tags/v1/x")
    grant = await run([github_policy(refs=["refs/tags/**"])], ref="refs/tags/v1/x")
    assert grant.crates


@pytest.mark.anyio
async def test_ref_required_but_missing() -> None:
    claims = github_claims()
    del claims["ref"]
    with pytest.raises(PolicyMismatch, match="requires a ref, but the JWT does not specify one"):
        await match(
            PolicySet([github_policy(refs=["refs/tags/v*"])]),
            verified(GITHUB, claims),
            InMemoryNamespacePins(),
            max_ttl=MAX_TTL,
        )


SHARED = "octo-org/shared/.github/workflows/publish.yml@refs/tags/v3"


@pytest.mark.anyio
async def test_job_workflow_constraint_accepts_the_reusable_workflow() -> None:
    policy = github_policy(job_workflow=job_rule("Octo-Org/Shared", "publish.yml", "refs/tags/v*"))
    grant = await run([policy], job_workflow_ref=SHARED)
    assert grant.provenance.job_workflow_ref == SHARED


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("job_workflow_ref", "rule"),
    [
        (SHARED, job_rule("octo-org/shared", "Publish.yml")),
        (SHARED, job_rule("octo-org/other", "publish.yml")),
        (SHARED, job_rule("octo-org/shared", "publish.yml", "refs/heads/*")),
        (
            "octo-org/shared/.github/workflows/publish.yml@refs/tags/v3/x",
            job_rule("octo-org/shared", "publish.yml", "refs/tags/v*"),
        ),
        ("not a workflow ref", job_rule("octo-org/shared", "publish.yml")),
    ],
)
async def test_job_workflow_constraint_refuses_others(job_workflow_ref: str, rule: object) -> None:
    policy = github_policy(job_workflow=rule)
    detail = await refusal([policy], job_workflow_ref=job_workflow_ref)
    assert detail.startswith(f"{PREFIX} does not match the job workflow `{job_workflow_ref}`")
    assert "Expected job workflows: `octo-org/" in detail


@pytest.mark.anyio
async def test_job_workflow_repository_compares_case_insensitively_and_any_ref() -> None:
    policy = github_policy(job_workflow=job_rule("octo-org/shared", "publish.yml"))
    ref = "Octo-Org/Shared/.github/workflows/publish.yml@refs/heads/anything"
    assert (await run([policy], job_workflow_ref=ref)).crates


def test_explain_shows_missing_job_workflow_and_owner_id_as_none() -> None:
    claims = github_claims()
    del claims["job_workflow_ref"]
    facts = read_facts(UnverifiedClaims(claims), GITHUB)
    policy = github_policy(
        repository_owner_id=None, job_workflow=job_rule("octo-org/shared", "publish.yml")
    )
    (report,) = evaluate(PolicySet([policy]), facts, GITHUB, None).reports
    checks = {c.field: c for c in report.checks}
    assert (checks["repository_owner_id"].expected, checks["repository_owner_id"].ok) == (
        "(none)",
        False,
    )
    assert (checks["job_workflow"].got, checks["job_workflow"].ok) == ("(none)", False)
    # And what the policy and the token do carry is shown as it is.
    facts = read_facts(UnverifiedClaims(github_claims(job_workflow_ref=SHARED)), GITHUB)
    (report,) = evaluate(PolicySet([github_policy()]), facts, GITHUB, None).reports
    checks = {c.field: c for c in report.checks}
    assert (checks["repository_owner_id"].expected, checks["repository_owner_id"].ok) == (
        "131804563",
        True,
    )
    assert (checks["job_workflow"].got, checks["job_workflow"].ok) == (SHARED, True)


@pytest.mark.anyio
async def test_policy_without_owner_id_never_matches_and_says_so() -> None:
    detail = await refusal([github_policy(repository_owner_id=None)])
    assert detail.startswith(
        f"{PREFIX} does not match the repository owner ID (131804563) in the JWT. "
        "Expected owner IDs: . Please update"
    )


@pytest.mark.anyio
async def test_job_workflow_required_but_missing() -> None:
    claims = github_claims()
    del claims["job_workflow_ref"]
    with pytest.raises(PolicyMismatch, match="requires a job workflow"):
        await match(
            PolicySet([github_policy(job_workflow=job_rule("octo-org/shared", "publish.yml"))]),
            verified(GITHUB, claims),
            InMemoryNamespacePins(),
            max_ttl=MAX_TTL,
        )


@pytest.mark.anyio
async def test_job_workflow_pinned_by_commit_sha() -> None:
    sha = "0123456789abcdef0123456789abcdef01234567"
    policy = github_policy(job_workflow=job_rule("octo-org/shared", "publish.yml", sha))
    ref = f"octo-org/shared/.github/workflows/publish.yml@{sha}"
    assert (await run([policy], job_workflow_ref=ref)).crates


@pytest.mark.anyio
async def test_stages_run_in_order_owner_id_first() -> None:
    policy = github_policy(repository_owner_id="1", workflow="other.yml", environment="x")
    assert "repository owner ID" in await refusal([policy])


@pytest.mark.anyio
async def test_refusal_lists_only_policies_that_reached_the_failing_stage() -> None:
    policies = [
        github_policy("wrong-owner", repository_owner_id="1", environment="alpha"),
        github_policy("right-owner", environment="beta"),
    ]
    detail = await refusal(policies, environment="gamma")
    assert detail.endswith("Expected environments: `beta`")


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("claim", "value", "message"),
    [
        ("repository", 5, "expected a string, got int"),
        ("repository_owner_id", 131804563, "expected a string, got int"),
        ("workflow_ref", ["x"], "expected a string, got list"),
        ("environment", True, "expected a string, got bool"),
        ("ref", {"a": 1}, "expected a string, got dict"),
        ("event_name", 1, "expected a string, got int"),
        ("job_workflow_ref", 1.5, "expected a string, got float"),
        ("sha", 1, "expected a string, got int"),
        ("repository", "", "missing required claim `repository`"),
        ("repository", "octo-lib", "Unexpected `repository` value"),
        ("repository", "octo-org/octo-li\u212a", "Unexpected `repository` value"),
        ("repository_owner_id", "12a", "Unexpected `repository_owner_id` value"),
        (
            "workflow_ref",
            "octo-org/octo-lib/release.yml@refs/heads/main",
            "Unexpected `workflow_ref` value",
        ),
    ],
)
async def test_claims_of_the_wrong_type_or_shape_are_invalid(
    claim: str, value: object, message: str
) -> None:
    with pytest.raises(InvalidJWT, match=message):
        await run([github_policy(environment="x", refs=["refs/**"])], **{claim: value})


@pytest.mark.anyio
async def test_missing_required_claim_is_invalid() -> None:
    claims = github_claims()
    del claims["event_name"]
    with pytest.raises(InvalidJWT, match="missing required claim `event_name`"):
        await match(
            PolicySet([github_policy()]),
            verified(GITHUB, claims),
            InMemoryNamespacePins(),
            max_ttl=60,
        )


@pytest.mark.parametrize(
    "job_workflow_ref",
    [
        "kube-org/\u212aube/.github/workflows/publish.yml@refs/heads/main",
        "\u212aube-org/shared/.github/workflows/publish.yml@refs/heads/main",
    ],
)
def test_a_job_workflow_owner_or_repository_outside_ascii_is_refused(
    job_workflow_ref: str,
) -> None:
    with pytest.raises(InvalidJWT) as exc:
        read_facts(UnverifiedClaims(github_claims(job_workflow_ref=job_workflow_ref)), GITHUB)
    assert exc.value.detail == (
        "Unexpected `job_workflow_ref` value: GitHub owner and repository names are ASCII"
    )


def test_a_job_workflow_ref_outside_ascii_after_the_repository_is_read() -> None:
    # Only the owner and the repository must be ASCII: a branch name may be anything.
    value = "kube-org/shared/.github/workflows/publish.yml@refs/heads/caf\u00e9"
    facts = read_facts(UnverifiedClaims(github_claims(job_workflow_ref=value)), GITHUB)
    assert facts.job_workflow == WorkflowRef(
        "kube-org/shared", "publish.yml", "refs/heads/caf\u00e9"
    )
