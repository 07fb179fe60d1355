from __future__ import annotations

import pytest

from trustpub.devissuer.claims import build_claims

NOW = 1_800_000_000
URL = "http://127.0.0.1:8090"


def github(**overrides: object) -> dict[str, object]:
    return build_claims("github", issuer=URL, audience="reg.example", now=NOW, overrides=overrides)


def gitlab(**overrides: object) -> dict[str, object]:
    return build_claims("gitlab", issuer=URL, audience="reg.example", now=NOW, overrides=overrides)


def test_github_defaults_are_a_consistent_release_job() -> None:
    claims = github()
    assert claims["iss"] == URL
    assert claims["aud"] == "reg.example"
    assert (claims["iat"], claims["nbf"], claims["exp"]) == (NOW, NOW - 300, NOW + 300)
    assert claims["repository_owner"] == "octo-org"
    assert claims["workflow_ref"] == (
        "octo-org/octo-lib/.github/workflows/release.yml@refs/tags/v0.1.0"
    )
    assert claims["job_workflow_ref"] == claims["workflow_ref"]
    assert claims["ref_type"] == "tag"
    assert claims["sub"] == "repo:octo-org/octo-lib:ref:refs/tags/v0.1.0"
    assert "environment" not in claims


def test_github_ids_and_flags_are_strings_as_the_real_issuer_sends_them() -> None:
    claims = github()
    for name in ("repository_id", "repository_owner_id", "run_id", "ref_protected", "actor_id"):
        assert isinstance(claims[name], str), name


def test_every_call_has_a_fresh_jti() -> None:
    assert github()["jti"] != github()["jti"]


def test_overriding_repository_and_ref_updates_the_derived_claims() -> None:
    claims = github(repository="me/my-crate", ref="refs/heads/main")
    assert claims["repository_owner"] == "me"
    assert claims["ref_type"] == "branch"
    assert claims["workflow_ref"] == "me/my-crate/.github/workflows/release.yml@refs/heads/main"
    assert claims["sub"] == "repo:me/my-crate:ref:refs/heads/main"


def test_environment_changes_the_subject_like_github_does() -> None:
    claims = github(environment="release")
    assert claims["environment"] == "release"
    assert claims["sub"] == "repo:octo-org/octo-lib:environment:release"


def test_an_explicit_override_of_a_derived_claim_wins() -> None:
    claims = github(
        workflow_ref="octo-org/octo-lib/.github/workflows/caller.yml@refs/heads/main",
        job_workflow_ref="shared/workflows/.github/workflows/publish.yml@refs/heads/main",
        repository_owner="someone-else",
    )
    assert str(claims["workflow_ref"]).endswith("caller.yml@refs/heads/main")
    assert str(claims["job_workflow_ref"]).startswith("shared/workflows/")
    assert claims["repository_owner"] == "someone-else"


def test_overriding_workflow_ref_alone_keeps_job_workflow_ref_equal() -> None:
    ref = "octo-org/octo-lib/.github/workflows/publish.yml@refs/tags/v1"
    claims = github(workflow_ref=ref)
    assert claims["job_workflow_ref"] == ref


def test_none_removes_a_claim() -> None:
    claims = github(jti=None, nbf=None)
    assert "jti" not in claims
    assert "nbf" not in claims


def test_timing_claims_can_be_overridden_for_expired_tokens() -> None:
    claims = github(exp=NOW - 1000)
    assert claims["exp"] == NOW - 1000


def test_gitlab_defaults_are_consistent() -> None:
    claims = gitlab()
    assert claims["namespace_path"] == "octo-group"
    assert claims["ref_path"] == "refs/tags/v0.1.0"
    assert claims["ci_config_ref_uri"] == (
        "127.0.0.1:8090/octo-group/octo-lib//.gitlab-ci.yml@refs/tags/v0.1.0"
    )
    assert claims["sub"] == "project_path:octo-group/octo-lib:ref_type:tag:ref:v0.1.0"
    assert claims["runner_id"] == 12345
    assert claims["nbf"] == NOW - 5


def test_gitlab_subgroup_namespace_is_split_on_the_last_slash() -> None:
    claims = gitlab(project_path="top/sub/deeper/proj", ref="main", ref_type="branch")
    assert claims["namespace_path"] == "top/sub/deeper"
    assert claims["ref_path"] == "refs/heads/main"
    assert claims["sub"] == "project_path:top/sub/deeper/proj:ref_type:branch:ref:main"


def test_unknown_provider_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown provider"):
        build_claims("jenkins", issuer=URL, audience="a", now=NOW)  # type: ignore[arg-type]
