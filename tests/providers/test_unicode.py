"""Case-insensitive claims fold ASCII letters only, for every provider and the policy
index; non-ASCII that a provider cannot produce is refused with a clear message."""

from typing import Any

import pytest

from tests.conftest import github_claims, gitlab_claims
from tests.policies.factories import (
    GITHUB,
    GITLAB,
    github_policy,
    gitlab_policy,
    job_rule,
    verified,
)
from tests.test_text import LOOKALIKES
from trustpub.errors import InvalidJWT, PolicyMismatch
from trustpub.grants import Grant
from trustpub.oidc.issuers import Issuer
from trustpub.policies import Policy, PolicySet, parse_policy_file
from trustpub.providers import InMemoryNamespacePins, match, namespace_pin_key

KELVIN = "\u212a"

pytestmark = pytest.mark.anyio


async def run(issuer: Issuer, policies: list[Policy], claims: dict[str, Any]) -> Grant:
    return await match(
        PolicySet(policies), verified(issuer, claims), InMemoryNamespacePins(), max_ttl=3600
    )


# -- GitHub -----------------------------------------------------------------------------


async def test_github_environment_with_the_kelvin_sign_is_not_the_ascii_one() -> None:
    policy = github_policy(environment="kube-prod")
    with pytest.raises(PolicyMismatch) as exc:
        await run(GITHUB, [policy], github_claims(environment=f"{KELVIN}ube-prod"))
    assert "does not match the environment" in exc.value.detail
    # ASCII case still folds.
    await run(GITHUB, [policy], github_claims(environment="KUBE-Prod"))


@pytest.mark.parametrize(("token", "policy"), LOOKALIKES + [(b, a) for a, b in LOOKALIKES])
async def test_github_environment_lookalikes_do_not_match(token: str, policy: str) -> None:
    with pytest.raises(PolicyMismatch):
        await run(GITHUB, [github_policy(environment=policy)], github_claims(environment=token))


async def test_github_environment_non_ascii_matches_itself_exactly() -> None:
    # GitHub does not restrict environment names to ASCII: the same spelling matches.
    name = "d\u00e9ploiement-\uff30"
    grant = await run(GITHUB, [github_policy(environment=name)], github_claims(environment=name))
    assert "octo-lib" in grant.crates


@pytest.mark.parametrize("fake", [f"{KELVIN}ube-org/kube", "kube-org/\u0130nfra", "\uff4bube/kube"])
async def test_github_repository_must_be_ascii(fake: str) -> None:
    with pytest.raises(InvalidJWT) as exc:
        await run(
            GITHUB, [github_policy(repository="kube-org/kube")], github_claims(repository=fake)
        )
    assert "`repository`" in exc.value.detail


async def test_github_job_workflow_repository_with_kelvin_sign_is_refused() -> None:
    policy = github_policy(job_workflow=job_rule("kube-org/shared", "publish.yml"))
    claims = github_claims(
        job_workflow_ref=f"{KELVIN}ube-org/shared/.github/workflows/publish.yml@refs/heads/main"
    )
    with pytest.raises(InvalidJWT) as exc:
        await run(GITHUB, [policy], claims)
    assert "`job_workflow_ref`" in exc.value.detail
    assert "ASCII" in exc.value.detail
    # The ASCII spelling, in another case, is the same repository.
    ok = github_claims(
        job_workflow_ref="Kube-Org/Shared/.github/workflows/publish.yml@refs/heads/main"
    )
    await run(GITHUB, [policy], ok)


async def test_github_job_workflow_without_ascii_check_still_does_not_fold() -> None:
    # Even a repository that passes the ASCII gate compares with ASCII folding only:
    # full-width letters in the policy's rule never equal ASCII ones in the token.
    policy = github_policy(job_workflow=job_rule("\uff4bube-org/shared", "publish.yml"))
    claims = github_claims(
        job_workflow_ref="kube-org/shared/.github/workflows/publish.yml@refs/heads/main"
    )
    with pytest.raises(PolicyMismatch):
        await run(GITHUB, [policy], claims)


# -- GitLab -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "environment", [f"{KELVIN}ube-prod", "\u0130nfra", "stra\u00dfe", "\uff50\uff52\uff4f\uff44"]
)
async def test_gitlab_environment_must_be_ascii(environment: str) -> None:
    policy = gitlab_policy(environment="kube-prod")
    with pytest.raises(InvalidJWT) as exc:
        await run(GITLAB, [policy], gitlab_claims(environment=environment))
    assert "`environment`" in exc.value.detail
    assert "ASCII" in exc.value.detail
    exc.value.detail.encode("utf-8")


async def test_gitlab_environment_refusal_quotes_a_surrogate_safely() -> None:
    # optional_str_claim refuses the surrogate first; either way the text encodes.
    with pytest.raises(InvalidJWT) as exc:
        await run(GITLAB, [gitlab_policy()], gitlab_claims(environment="prod\ud800"))
    exc.value.detail.encode("utf-8")


async def test_gitlab_environment_folds_ascii_case() -> None:
    policy = gitlab_policy(environment="kube-prod")
    await run(GITLAB, [policy], gitlab_claims(environment="KUBE-prod"))


@pytest.mark.parametrize(
    "path", [f"octo-group/sub/{KELVIN}ube", "octo-group/\u0130nfra/x", "octo-group/stra\u00dfe"]
)
async def test_gitlab_project_path_must_be_ascii(path: str) -> None:
    with pytest.raises(InvalidJWT) as exc:
        await run(
            GITLAB,
            [gitlab_policy(repository="octo-group/sub/kube")],
            gitlab_claims(project_path=path),
        )
    assert "`project_path`" in exc.value.detail


async def test_gitlab_ci_config_project_with_kelvin_sign_is_refused() -> None:
    claims = gitlab_claims(
        project_path="octo-group/sub/kube",
        ci_config_ref_uri=f"gitlab.com/octo-group/sub/{KELVIN}ube//.gitlab-ci.yml@refs/heads/main",
    )
    with pytest.raises(InvalidJWT) as exc:
        await run(GITLAB, [gitlab_policy(repository="octo-group/sub/kube")], claims)
    assert "`ci_config_ref_uri`" in exc.value.detail


def test_gitlab_pin_key_folds_ascii_only() -> None:
    assert namespace_pin_key(GITLAB.url, "Octo-Group/Kube") == namespace_pin_key(
        GITLAB.url, "octo-group/kube"
    )
    assert namespace_pin_key(GITLAB.url, f"octo-group/{KELVIN}ube") != namespace_pin_key(
        GITLAB.url, "octo-group/kube"
    )


# -- the policy index and policy files ---------------------------------------------------


def test_policy_index_folds_ascii_only() -> None:
    policies = PolicySet([github_policy(repository="Kube-Org/Kube")])
    assert policies.candidates(GITHUB.url, "kube-org/KUBE")
    assert policies.candidates(GITHUB.url, f"{KELVIN}ube-org/kube") == ()
    assert github_policy(repository="Kube-Org/Kube").key == (GITHUB.url, "kube-org/kube")


GITLAB_POLICY = """
[[policy]]
name = "p"
provider = "gitlab"
crates = ["octo-lib"]
project_path = "octo-group/octo-lib"
workflow = ".gitlab-ci.yml"
environment = "{env}"
"""

GITHUB_POLICY = """
[[policy]]
name = "p"
provider = "github"
crates = ["octo-lib"]
repository = "octo-org/octo-lib"
repository_owner_id = "1"
workflow = "release.yml"
environment = "{env}"
"""


@pytest.mark.parametrize(
    "env", [f"{KELVIN}ube-prod", "\u0130nfra", "stra\u00dfe", "\uff50\uff52\uff4f\uff44", "a;b"]
)
def test_gitlab_policy_environment_outside_gitlabs_characters_is_refused(env: str) -> None:
    policies, problems = parse_policy_file("a.toml", GITLAB_POLICY.format(env=env))
    assert policies == []
    assert [p.field for p in problems] == ["environment"]
    assert "GitLab environment names" in problems[0].message


def test_gitlab_policy_environment_with_gitlabs_characters_loads() -> None:
    (policy,), problems = parse_policy_file(
        "a.toml", GITLAB_POLICY.format(env="review/${CI_X} a.b_c-d")
    )
    assert problems == []
    assert policy.environment == "review/${CI_X} a.b_c-d"


def test_github_policy_environment_may_be_non_ascii() -> None:
    (policy,), problems = parse_policy_file("a.toml", GITHUB_POLICY.format(env="d\u00e9ploiement"))
    assert problems == []
    assert policy.environment == "d\u00e9ploiement"


def test_policy_environment_must_be_printable() -> None:
    _, problems = parse_policy_file("a.toml", GITHUB_POLICY.format(env="a\\u0007b"))
    assert [p.field for p in problems] == ["environment"]


def test_crates_listed_twice_up_to_ascii_case_are_refused() -> None:
    text = GITHUB_POLICY.format(env="x").replace('["octo-lib"]', '["octo-lib", "OCTO_LIB"]')
    _, problems = parse_policy_file("a.toml", text)
    assert [p.field for p in problems] == ["crates"]


def test_a_deeply_nested_policy_file_is_a_problem_not_a_crash() -> None:
    text = GITHUB_POLICY.format(env="x") + "deep = " + "[" * 50_000 + "]" * 50_000 + "\n"
    policies, problems = parse_policy_file("a.toml", text)
    assert policies == []
    assert problems
    assert "TOML" in problems[0].message
