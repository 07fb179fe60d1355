import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import gitlab_claims
from tests.policies.factories import GITLAB, gitlab_policy, verified
from trustpub.cli import main
from trustpub.errors import InvalidJWT, PolicyMismatch
from trustpub.grants import Grant
from trustpub.oidc.issuers import Issuer
from trustpub.policies import Policy, PolicySet
from trustpub.providers import (
    PROVIDERS,
    InMemoryNamespacePins,
    UnverifiedClaims,
    evaluate,
    match,
    namespace_pin_key,
    parse_ci_config_path,
)
from trustpub.providers.base import CiConfigRef
from trustpub.providers.gitlab import issuer_host, parse_ci_config_ref

PREFIX = "The Trusted Publishing config for repository `octo-group/sub/octo-lib`"
KEY = namespace_pin_key(GITLAB.url, "octo-group/sub/octo-lib")


async def run(
    policies: list[Policy], pins: InMemoryNamespacePins | None = None, **claims: Any
) -> Grant:
    return await match(
        PolicySet(policies),
        verified(GITLAB, gitlab_claims(**claims)),
        pins if pins is not None else InMemoryNamespacePins(),
        max_ttl=3600,
    )


async def refusal(
    policies: list[Policy], pins: InMemoryNamespacePins | None = None, **claims: Any
) -> str:
    with pytest.raises(PolicyMismatch) as exc:
        await run(policies, pins, **claims)
    return exc.value.detail


@pytest.mark.parametrize(
    ("uri", "path"),
    [
        ("gitlab.com/octo-group/sub/octo-lib//.gitlab-ci.yml@refs/tags/v1", ".gitlab-ci.yml"),
        ("gitlab.com/g/p//ci/release.yml@refs/heads/main", "ci/release.yml"),
        ("gitlab.com/g/p//ci/a@b.yml@refs/heads/main", "ci/a@b.yml"),
        ("gitlab.com/g/p//ci//x.yml@refs/heads/main", "ci//x.yml"),
    ],
)
def test_config_path_is_between_first_double_slash_and_last_at(uri: str, path: str) -> None:
    assert parse_ci_config_path(uri) == path


@pytest.mark.parametrize(
    "uri", ["", "gitlab.com/g/p/.gitlab-ci.yml@main", "gitlab.com/g/p//@main", "a//b"]
)
def test_malformed_config_uris_are_not_parsed(uri: str) -> None:
    assert parse_ci_config_path(uri) is None


def test_pin_key_is_issuer_and_lower_cased_project_path() -> None:
    assert (
        namespace_pin_key("https://gitlab.com", "Group/Sub/Proj")
        == "https://gitlab.com|group/sub/proj"
    )


@pytest.mark.anyio
async def test_happy_path_with_subgroups_and_case_insensitive_path() -> None:
    grant = await run([gitlab_policy(repository="Octo-Group/Sub/Octo-Lib", environment="RELEASE")])
    assert grant.policies == ("test.toml#release",)
    p = grant.provenance
    assert (p.provider, p.repository, p.repository_id, p.owner_id) == (
        "gitlab",
        "octo-group/sub/octo-lib",
        "777",
        "4242",
    )
    assert p.workflow_ref == "gitlab.com/octo-group/sub/octo-lib//.gitlab-ci.yml@refs/tags/v1.2.3"
    assert (p.ref, p.run_id, p.job_id, p.event, p.environment) == (
        "refs/tags/v1.2.3",
        "123456",
        "9876543210",
        "push",
        "release",
    )


@pytest.mark.anyio
async def test_parent_group_policy_does_not_cover_a_subgroup_project() -> None:
    detail = await refusal([gitlab_policy(repository="octo-group/octo-lib")])
    assert detail == "No Trusted Publishing config found for repository `octo-group/sub/octo-lib`."


@pytest.mark.anyio
async def test_workflow_path_mismatch_uses_crates_io_wording() -> None:
    detail = await refusal([gitlab_policy(workflow="ci/release.yml")])
    assert detail == (
        f"{PREFIX} does not match the workflow filepath `.gitlab-ci.yml` in the JWT. "
        "Expected workflow filepaths: `ci/release.yml`"
    )


@pytest.mark.anyio
async def test_environment_required_but_missing() -> None:
    claims = gitlab_claims()
    del claims["environment"]
    with pytest.raises(PolicyMismatch, match="requires an environment"):
        await match(
            PolicySet([gitlab_policy(environment="release")]),
            verified(GITLAB, claims),
            InMemoryNamespacePins(),
            max_ttl=60,
        )


@pytest.mark.anyio
async def test_refs_use_ref_path() -> None:
    assert (await run([gitlab_policy(refs=["refs/tags/v*"])])).crates
    detail = await refusal([gitlab_policy(refs=["refs/heads/main"])])
    assert "does not match the ref `refs/tags/v1.2.3`" in detail


@pytest.mark.anyio
async def test_written_namespace_id_is_enforced_and_nothing_is_pinned() -> None:
    pins = InMemoryNamespacePins()
    assert (await run([gitlab_policy(namespace_id="4242")], pins)).crates
    assert pins.pins == {}
    detail = await refusal([gitlab_policy(namespace_id="4242")], pins, namespace_id="666")
    assert detail.startswith(
        f"{PREFIX} does not match the namespace ID (666) in the JWT. Expected namespace IDs: 4242."
    )


@pytest.mark.anyio
async def test_namespace_is_pinned_on_first_use_and_enforced_after() -> None:
    pins = InMemoryNamespacePins()
    policy = gitlab_policy()
    await run([policy], pins)
    assert pins.pins == {KEY: "4242"}
    assert (await run([policy], pins)).crates
    detail = await refusal([policy], pins, namespace_id="666")
    assert (
        "does not match the namespace ID (666) in the JWT. Expected namespace IDs: 4242." in detail
    )
    assert pins.pins == {KEY: "4242"}


@pytest.mark.anyio
async def test_pin_is_not_recorded_when_the_match_fails() -> None:
    pins = InMemoryNamespacePins()
    await refusal([gitlab_policy(workflow="other.yml")], pins, namespace_id="666")
    assert pins.pins == {}
    # The rightful owner's first success pins its id, not the failed attacker's.
    await run([gitlab_policy()], pins)
    assert pins.pins == {KEY: "4242"}


@pytest.mark.anyio
async def test_pin_is_per_issuer() -> None:
    other = Issuer("https://gitlab.example.org", "gitlab")
    pins = InMemoryNamespacePins({KEY: "1"})
    policy = gitlab_policy(issuer=other.url)
    claims = gitlab_claims(
        iss=other.url,
        ci_config_ref_uri="gitlab.example.org/octo-group/sub/octo-lib//.gitlab-ci.yml@refs/tags/v1",
    )
    grant = await match(PolicySet([policy]), verified(other, claims), pins, max_ttl=60)
    assert grant.crates
    assert pins.pins[namespace_pin_key(other.url, "octo-group/sub/octo-lib")] == "4242"


class RacingPins(InMemoryNamespacePins):
    """Another request pins a different namespace between our read and our write."""

    async def pin_namespace(self, key: str, namespace_id: str) -> str:
        self.pins.setdefault(key, "9999")
        return await super().pin_namespace(key, namespace_id)


@pytest.mark.anyio
async def test_losing_a_pin_race_refuses_policies_relying_on_the_pin() -> None:
    detail = await refusal([gitlab_policy()], RacingPins())
    assert (
        "does not match the namespace ID (4242) in the JWT. Expected namespace IDs: 9999." in detail
    )


@pytest.mark.anyio
async def test_losing_a_pin_race_keeps_policies_with_a_written_namespace() -> None:
    policies = [
        gitlab_policy("pinned", crates=("a",)),
        gitlab_policy("written", crates=("b",), namespace_id="4242"),
    ]
    grant = await run(policies, RacingPins())
    assert set(grant.crates) == {"b"}


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("claim", "value", "message"),
    [
        ("project_path", 1, "expected a string"),
        ("namespace_id", 4242, "expected a string, got int"),
        ("ci_config_ref_uri", None, "missing required claim"),
        ("ref_path", 1, "expected a string"),
        ("project_path", "octo-lib", "Unexpected `project_path` value"),
        ("project_path", "octo-group/sub/octo-li\u212a", "Unexpected `project_path` value"),
        ("namespace_id", "x1", "Unexpected `namespace_id` value"),
        # Digits only, the whole value: a numeric prefix is not an id.
        ("namespace_id", "123abc", "Unexpected `namespace_id` value"),
        ("namespace_id", "4242\n", "Unexpected `namespace_id` value"),
        ("namespace_id", "", "missing required claim `namespace_id`"),
        ("namespace_id", "\u0664\u0662", "Unexpected `namespace_id` value"),
        ("project_path", "octo-group/octo-lib/", "Unexpected `project_path` value"),
        ("project_path", "octo-group/octo lib", "Unexpected `project_path` value"),
        (
            "ci_config_ref_uri",
            "gitlab.com/a/b/.gitlab-ci.yml",
            "Unexpected `ci_config_ref_uri` value",
        ),
        # No project part, a one-segment project, no host, a non-ASCII project.
        ("ci_config_ref_uri", "gitlab.com//.gitlab-ci.yml@main", "Unexpected `ci_config_ref_uri`"),
        (
            "ci_config_ref_uri",
            "gitlab.com/p//.gitlab-ci.yml@main",
            "Unexpected `ci_config_ref_uri`",
        ),
        ("ci_config_ref_uri", "/g/p//.gitlab-ci.yml@main", "Unexpected `ci_config_ref_uri`"),
        (
            "ci_config_ref_uri",
            "gitlab.com/octo-group/sub/octo-li\u212a//.gitlab-ci.yml@main",
            "Unexpected `ci_config_ref_uri`",
        ),
        (
            "ci_config_ref_uri",
            "gitlab.c\u00f6m/g/p//.gitlab-ci.yml@main",
            "Unexpected `ci_config_ref_uri`",
        ),
    ],
)
async def test_claims_of_the_wrong_type_or_shape_are_invalid(
    claim: str, value: object, message: str
) -> None:
    with pytest.raises(InvalidJWT, match=message):
        await run([gitlab_policy()], None, **{claim: value})


# -- the CI configuration must come from the project itself --------------------------------

CONFIG_PREFIX = f"{PREFIX} requires the CI configuration to come from"


def test_config_ref_splits_host_project_path_and_ref() -> None:
    assert parse_ci_config_ref("gitlab.com/g/sub/p//ci/a@b.yml@refs/heads/x") == CiConfigRef(
        host="gitlab.com", project="g/sub/p", path="ci/a@b.yml", ref="refs/heads/x"
    )
    assert parse_ci_config_ref("127.0.0.1:8443/g/p//.gitlab-ci.yml@refs/heads/main") == (
        CiConfigRef("127.0.0.1:8443", "g/p", ".gitlab-ci.yml", "refs/heads/main")
    )


@pytest.mark.anyio
@pytest.mark.parametrize(
    "uri",
    [
        "gitlab.com/octo-group/sub/octo-lib//.gitlab-ci.yml@refs/tags/v1.2.3",
        # GitLab paths and host names are case-insensitive.
        "GitLab.com/Octo-Group/SUB/Octo-Lib//.gitlab-ci.yml@refs/tags/v1.2.3",
    ],
)
async def test_config_from_the_project_itself_matches(uri: str) -> None:
    assert (await run([gitlab_policy()], ci_config_ref_uri=uri)).crates == {
        "octo-lib": frozenset({"publish-update"})
    }


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("uri", "named"),
    [
        ("gitlab.com/other/proj//.gitlab-ci.yml@refs/heads/main", "other/proj"),
        # The parent group, and a sibling subgroup's project of the same name.
        ("gitlab.com/octo-group/sub//.gitlab-ci.yml@refs/heads/main", "octo-group/sub"),
        ("gitlab.com/octo-group/evil/octo-lib//.gitlab-ci.yml@main", "octo-group/evil/octo-lib"),
        # A prefix of the project path is another project.
        ("gitlab.com/octo-group/sub/octo-lib2//.gitlab-ci.yml@main", "octo-group/sub/octo-lib2"),
        # The host differs only in case: it is the same instance, the project is not.
        ("GITLAB.COM/other/proj//.gitlab-ci.yml@refs/heads/main", "other/proj"),
    ],
)
async def test_config_included_from_another_project_is_refused(uri: str, named: str) -> None:
    # The path still reads `.gitlab-ci.yml`, exactly what the policy expects: only the
    # project part says that someone else wrote the pipeline.
    detail = await refusal([gitlab_policy()], ci_config_ref_uri=uri)
    assert detail == (
        f"{CONFIG_PREFIX} the project itself, but the JWT's `ci_config_ref_uri` names `{named}`"
    )


@pytest.mark.anyio
async def test_config_source_compares_host_and_project_case_insensitively() -> None:
    uri = "GitLab.com/octo-group/sub/octo-lib//.gitlab-ci.yml@refs/tags/v1.2.3"
    assert (await run([gitlab_policy()], ci_config_ref_uri=uri)).crates
    assert (await run([gitlab_policy()], project_path="Octo-Group/Sub/Octo-Lib")).crates


@pytest.mark.anyio
async def test_issuer_host_written_in_capitals_is_the_same_instance() -> None:
    issuer = Issuer("https://GitLab.Example", "gitlab")
    claims = gitlab_claims(
        iss=issuer.url, ci_config_ref_uri="gitlab.example/other/proj//.gitlab-ci.yml@main"
    )
    with pytest.raises(PolicyMismatch) as exc:
        await match(
            PolicySet([gitlab_policy(issuer=issuer.url)]),
            verified(issuer, claims),
            InMemoryNamespacePins(),
            max_ttl=3600,
        )
    assert exc.value.detail == (
        f"{CONFIG_PREFIX} the project itself, but the JWT's `ci_config_ref_uri` names `other/proj`"
    )


@pytest.mark.anyio
async def test_pins_given_at_construction_are_used() -> None:
    pins = InMemoryNamespacePins({KEY: "4242"})
    assert await pins.get_namespace_pin(KEY) == "4242"
    detail = await refusal([gitlab_policy()], pins, namespace_id="666")
    assert "Expected namespace IDs: 4242." in detail
    assert pins.pins == {KEY: "4242"}


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        # One-character host and path are names like any other.
        ("h/g/p//.gitlab-ci.yml@main", CiConfigRef("h", "g/p", ".gitlab-ci.yml", "main")),
        (
            "gitlab.com/g/p//x@refs/heads/main",
            CiConfigRef("gitlab.com", "g/p", "x", "refs/heads/main"),
        ),
        # No `//` at all, even with an `@` at the very end.
        ("gitlab.com/g/p@", None),
        ("gitlab.com/g/p/x.yml@main", None),
        ("gitlab.com//x.yml@main", None),
        ("/g/p//x.yml@main", None),
    ],
)
def test_config_ref_edge_shapes(uri: str, expected: CiConfigRef | None) -> None:
    assert parse_ci_config_ref(uri) == expected


@pytest.mark.anyio
async def test_config_on_another_host_is_refused() -> None:
    uri = "gitlab.example.org/octo-group/sub/octo-lib//.gitlab-ci.yml@refs/tags/v1.2.3"
    detail = await refusal([gitlab_policy()], ci_config_ref_uri=uri)
    assert detail == (
        f"{CONFIG_PREFIX} the issuer's instance `gitlab.com`, but the JWT's "
        "`ci_config_ref_uri` names the host `gitlab.example.org`"
    )


@pytest.mark.anyio
async def test_config_host_includes_the_issuer_port() -> None:
    issuer = Issuer("https://gitlab.example.org:8443", "gitlab")
    policy = gitlab_policy(issuer=issuer.url)
    good = "gitlab.example.org:8443/octo-group/sub/octo-lib//.gitlab-ci.yml@main"
    grant = await match(
        PolicySet([policy]),
        verified(issuer, gitlab_claims(iss=issuer.url, ci_config_ref_uri=good)),
        InMemoryNamespacePins(),
        max_ttl=60,
    )
    assert grant.crates
    with pytest.raises(PolicyMismatch, match=r"names the host `gitlab\.example\.org`$"):
        await match(
            PolicySet([policy]),
            verified(
                issuer, gitlab_claims(iss=issuer.url, ci_config_ref_uri=good.replace(":8443", ""))
            ),
            InMemoryNamespacePins(),
            max_ttl=60,
        )


@pytest.mark.anyio
async def test_foreign_config_refusal_pins_nothing() -> None:
    pins = InMemoryNamespacePins()
    await refusal(
        [gitlab_policy()], pins, ci_config_ref_uri="gitlab.com/other/proj//.gitlab-ci.yml@main"
    )
    assert pins.pins == {}


def test_evaluation_reports_the_config_source_for_each_policy() -> None:
    claims = gitlab_claims(ci_config_ref_uri="gitlab.com/other/proj//.gitlab-ci.yml@main")
    facts = PROVIDERS["gitlab"].read_facts(UnverifiedClaims(claims), GITLAB)
    result = evaluate(PolicySet([gitlab_policy()]), facts, GITLAB, None)
    (report,) = result.reports
    check = next(c for c in report.checks if c.field == "ci_config_ref_uri")
    assert (check.expected, check.got, check.ok) == (
        "gitlab.com/octo-group/sub/octo-lib",
        "gitlab.com/other/proj",
        False,
    )
    assert result.refusal is not None
    assert result.refusal.endswith("names `other/proj`")


POLICY_TOML = """
[[policy]]
name = "gitlab"
provider = "gitlab"
crates = ["octo-lib"]
project_path = "octo-group/sub/octo-lib"
workflow = ".gitlab-ci.yml"
"""


def test_policy_explain_shows_the_config_source_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "gitlab.toml").write_text(POLICY_TOML)
    claims_file = tmp_path / "claims.json"
    uri = "gitlab.com/other/proj//.gitlab-ci.yml@refs/heads/main"
    claims_file.write_text(json.dumps(gitlab_claims(ci_config_ref_uri=uri)))
    argv = ["policy", "explain", "--claims", str(claims_file), str(tmp_path / "policies")]
    assert main(argv) == 1
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.strip().startswith("ci_config_ref_uri"))
    assert row.split() == [
        "ci_config_ref_uri",
        "gitlab.com/octo-group/sub/octo-lib",
        "gitlab.com/other/proj",
        "MISMATCH",
    ]
    assert "verdict: REFUSED: " + CONFIG_PREFIX + " the project itself" in out

    claims_file.write_text(json.dumps(gitlab_claims()))
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert any(
        line.split()[:1] == ["ci_config_ref_uri"] and line.split()[-1] == "ok"
        for line in out.splitlines()
    )


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("https://gitlab.example.org", "gitlab.example.org"),
        ("https://gitlab.example.org:443", "gitlab.example.org"),
        ("https://gitlab.example.org:8443", "gitlab.example.org:8443"),
        ("http://127.0.0.1:80", "127.0.0.1"),
        ("http://127.0.0.1:8080", "127.0.0.1:8080"),
    ],
)
def test_issuer_host_drops_only_a_default_port(url: str, host: str) -> None:
    assert issuer_host(url) == host
