import io
import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SigningKey, github_claims, gitlab_claims
from trustpub.cli import main

GITHUB_POLICY = """
[[policy]]
name = "release"
provider = "github"
crates = ["octo-lib"]
repository = "octo-org/octo-lib"
repository_owner_id = "131804563"
workflow = "release.yml"
environment = "release"
token_ttl = "2h"

[[policy]]
name = "nightly"
provider = "github"
crates = ["octo-lib"]
repository = "octo-org/octo-lib"
repository_owner_id = "131804563"
workflow = "nightly.yml"

[[policy]]
name = "sibling"
provider = "github"
crates = ["octo-other"]
repository = "octo-org/other"
repository_owner_id = "131804563"
workflow = "release.yml"
"""

GITLAB_POLICY = """
[[policy]]
name = "gitlab"
provider = "gitlab"
crates = ["octo-lib"]
project_path = "octo-group/sub/octo-lib"
workflow = ".gitlab-ci.yml"
"""


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "policies"
    directory.mkdir()
    (directory / "github.toml").write_text(GITHUB_POLICY)
    (directory / "gitlab.toml").write_text(GITLAB_POLICY)
    return directory


def write_claims(tmp_path: Path, claims: dict[str, Any]) -> str:
    path = tmp_path / "claims.json"
    path.write_text(json.dumps(claims))
    return str(path)


# -- check --------------------------------------------------------------------------


def test_check_reports_a_valid_directory(
    policy_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["policy", "check", str(policy_dir)]) == 0
    assert capsys.readouterr().out == "4 policies in 2 files OK\n"


def test_check_prints_every_problem_and_fails(
    policy_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (policy_dir / "bad.toml").write_text(
        GITLAB_POLICY.replace('workflow = ".gitlab-ci.yml"', 'workflow = "../x.yml"')
        + 'colour = "red"\n'
    )
    (policy_dir / "worse.toml").write_text("[[policy]\n")
    assert main(["policy", "check", str(policy_dir)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "bad.toml: policy gitlab: colour: unknown key"
    assert lines[1].startswith("bad.toml: policy gitlab: workflow: ")
    assert lines[2].startswith("worse.toml: invalid TOML")
    assert lines[3] == "3 problems found"


def test_check_warns_about_ttl_above_the_server_maximum(
    policy_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["policy", "check", str(policy_dir), "--max-ttl", "3600"]) == 0
    out = capsys.readouterr().out
    assert (
        "warning: github.toml: policy release: token_ttl: 7200 s exceeds the server maximum "
        "3600 s; tokens will live 3600 s"
    ) in out
    assert out.endswith("4 policies in 2 files OK\n")


def test_max_ttl_takes_a_duration_as_the_configurations_max_token_ttl_does(
    policy_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["policy", "check", str(policy_dir), "--max-ttl", "1h"]) == 0
    assert "exceeds the server maximum 3600 s" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["policy", "check", str(policy_dir), "--max-ttl", "1 hour"])
    assert exc.value.code == 2
    assert 'argument --max-ttl: expected a duration like "90s"' in capsys.readouterr().err


def test_check_with_configured_issuers_refuses_policies_of_unconfigured_ones(
    policy_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["policy", "check", str(policy_dir), "--issuer", "github=https://ghe.example.com"])
    assert code == 1
    out = capsys.readouterr().out
    assert "github.toml: policy release: issuer: the canonical github issuer" in out
    assert "gitlab.toml: policy gitlab: issuer:" in out


@pytest.mark.parametrize(
    "value", ["bitbucket=https://x.example", "no-equals", "github=http://evil.example"]
)
def test_check_refuses_bad_issuer_options(
    policy_dir: Path, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["policy", "check", str(policy_dir), "--issuer", value]) == 2
    assert "--issuer" in capsys.readouterr().err


def test_check_of_a_missing_directory_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["policy", "check", str(tmp_path / "nope")]) == 1
    assert "not a directory" in capsys.readouterr().out


def test_policy_without_subcommand_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy"]) == 2
    assert "check" in capsys.readouterr().err


# -- explain ------------------------------------------------------------------------


def test_explain_shows_each_field_and_the_grant(
    policy_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    claims = write_claims(tmp_path, github_claims(environment="release"))
    assert main(["policy", "explain", "--claims", claims, str(policy_dir)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("NOTE: these claims were decoded WITHOUT verifying any signature")
    assert "2 policies name this repository:" in out
    assert "policy github.toml#release: MATCH" in out
    assert "policy github.toml#nightly: no match" in out
    rows = [line.split() for line in out.splitlines()]
    assert ["workflow", "nightly.yml", "release.yml", "MISMATCH"] in rows
    assert ["workflow", "release.yml", "release.yml", "ok"] in rows
    assert ["environment", "release", "release", "ok"] in rows
    assert "verdict: GRANTED (if the token is genuine)" in out
    assert "crate octo-lib: publish-update" in out
    assert "token lifetime: 7200 s" in out
    assert "policies: github.toml#release" in out


def test_explain_gives_the_matchers_refusal(
    policy_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    claims = write_claims(
        tmp_path,
        github_claims(workflow_ref="octo-org/octo-lib/.github/workflows/ci.yml@refs/heads/main"),
    )
    assert main(["policy", "explain", "--claims", claims, str(policy_dir)]) == 1
    out = capsys.readouterr().out
    assert out.rstrip().endswith(
        "verdict: REFUSED: The Trusted Publishing config for repository `octo-org/octo-lib` "
        "does not match the workflow filename `ci.yml` in the JWT. Expected workflow "
        "filenames: `nightly.yml`, `release.yml`"
    )


def test_explain_environment_missing(
    policy_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    claims = write_claims(tmp_path, github_claims())
    assert main(["policy", "explain", "--claims", claims, str(policy_dir)]) == 1
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert ["environment", "release", "(none)", "MISMATCH"] in rows


def test_explain_names_similar_policies_when_none_names_the_repository(
    policy_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    claims = write_claims(tmp_path, github_claims(repository="Octo-Org/octo-cli"))
    assert main(["policy", "explain", "--claims", claims, str(policy_dir)]) == 1
    out = capsys.readouterr().out
    assert (
        "No policy for issuer https://token.actions.githubusercontent.com names repository "
        "`Octo-Org/octo-cli`." in out
    )
    assert "  github.toml#sibling: octo-org/other" in out
    assert (
        "verdict: REFUSED: No Trusted Publishing config found for repository `Octo-Org/octo-cli`."
        in out
    )


def test_explain_points_at_a_policy_bound_to_another_issuer(
    policy_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ghes = "https://ghe.example.com/_services/token"
    claims = write_claims(tmp_path, github_claims(iss=ghes, environment="release"))
    code = main(
        [
            "policy",
            "explain",
            "--claims",
            claims,
            str(policy_dir),
            "--issuer",
            f"github={ghes}",
            "--issuer",
            "github=https://token.actions.githubusercontent.com",
            "--issuer",
            "gitlab=https://gitlab.com",
        ]
    )
    assert code == 1
    out = capsys.readouterr().out
    assert "Policy github.toml#release names this repository but is bound to issuer" in out


def test_explain_refused_event(
    policy_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    claims = write_claims(
        tmp_path, github_claims(event_name="pull_request_target", environment="release")
    )
    assert main(["policy", "explain", "--claims", claims, str(policy_dir)]) == 1
    assert "does not support the `pull_request_target` event trigger" in capsys.readouterr().out


def test_explain_unsupported_issuer(
    policy_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    claims = write_claims(tmp_path, github_claims(iss="https://evil.example"))
    assert main(["policy", "explain", "--claims", claims, str(policy_dir)]) == 1
    assert (
        "verdict: REFUSED: Unsupported JWT issuer: https://evil.example" in capsys.readouterr().out
    )


def test_explain_claim_of_wrong_type(
    policy_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    claims = write_claims(tmp_path, github_claims(repository_owner_id=131804563))
    assert main(["policy", "explain", "--claims", claims, str(policy_dir)]) == 1
    assert (
        "Invalid JWT claim `repository_owner_id`: expected a string, got int"
        in capsys.readouterr().out
    )


def test_explain_gitlab_unpinned_and_pinned(
    policy_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    claims = write_claims(tmp_path, gitlab_claims())
    assert main(["policy", "explain", "--claims", claims, str(policy_dir)]) == 0
    out = capsys.readouterr().out
    assert "namespace id 4242 would be pinned" in out
    assert (
        main(["policy", "explain", "--claims", claims, str(policy_dir), "--namespace-pin", "1"])
        == 1
    )
    out = capsys.readouterr().out
    assert "does not match the namespace ID (4242) in the JWT. Expected namespace IDs: 1." in out


def test_explain_decodes_a_jwt_without_printing_it(
    policy_dir: Path, signing_key: SigningKey, capsys: pytest.CaptureFixture[str]
) -> None:
    token = signing_key.sign(github_claims(environment="release"))
    assert main(["policy", "explain", "--jwt", token, str(policy_dir)]) == 0
    captured = capsys.readouterr()
    for part in token.split("."):
        assert part not in captured.out
        assert part not in captured.err
    assert "WITHOUT verifying" in captured.out


def test_explain_reads_the_jwt_from_stdin(
    policy_dir: Path,
    signing_key: SigningKey,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    token = signing_key.sign(github_claims(environment="release"))
    monkeypatch.setattr("sys.stdin", io.StringIO(token + "\n"))
    assert main(["policy", "explain", "--jwt", "-", str(policy_dir)]) == 0
    assert "verdict: GRANTED" in capsys.readouterr().out


def test_explain_garbage_jwt_is_a_usage_error_and_not_echoed(
    policy_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["policy", "explain", "--jwt", "secret-garbage.abc", str(policy_dir)]) == 2
    captured = capsys.readouterr()
    assert "cannot decode the JWT" in captured.err
    assert "secret-garbage" not in captured.err + captured.out


@pytest.mark.parametrize("content", ["not json", "[1, 2]"])
def test_explain_bad_claims_file(
    policy_dir: Path, tmp_path: Path, content: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "claims.json"
    path.write_text(content)
    assert main(["policy", "explain", "--claims", str(path), str(policy_dir)]) == 2
    assert capsys.readouterr().err.startswith("trustpub policy: error: ")


def test_explain_with_invalid_policies(
    policy_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (policy_dir / "bad.toml").write_text("x = 1\n")
    claims = write_claims(tmp_path, github_claims())
    assert main(["policy", "explain", "--claims", claims, str(policy_dir)]) == 2
    assert "bad.toml: x: unknown top-level key" in capsys.readouterr().err


def test_explain_requires_a_claims_source(
    policy_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["policy", "explain", str(policy_dir)])
    assert exc.value.code == 2


def test_check_takes_issuers_directory_and_max_ttl_from_the_service_configuration(
    policy_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "trustpub.toml"
    config.write_text(
        f'policy_dir = "{policy_dir}"\nmax_token_ttl = "1h"\n'
        '[[issuers]]\nurl = "https://ghe.example.com"\nprovider = "github"\n'
    )
    assert main(["policy", "check", "--config", str(config)]) == 1
    out = capsys.readouterr().out
    assert "github.toml: policy release: issuer:" in out

    config.write_text(f'policy_dir = "{policy_dir}"\nmax_token_ttl = "1h"\n')
    assert main(["policy", "check", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "warning: " in out
    assert "exceeds the server maximum 3600 s" in out


def test_check_reports_a_bad_configuration_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "trustpub.toml"
    config.write_text("listen = 5\n")
    assert main(["policy", "check", "--config", str(config)]) == 2
    assert "listen: expected str" in capsys.readouterr().err


def test_check_reads_the_policy_directory_from_the_environment_as_serve_does(
    policy_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TRUSTPUB_POLICY_DIR", str(policy_dir))
    assert main(["policy", "check"]) == 0
    assert "OK" in capsys.readouterr().out
