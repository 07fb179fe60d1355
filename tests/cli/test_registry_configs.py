"""``trustpub registry config`` and ``trustpub policy explain`` with owner configs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import github_claims
from trustpub.cli import main


def registry(data: Path, *args: str) -> int:
    return main(["registry", "--data-dir", str(data), *args])


def add_github(data: Path, crate: str, *extra: str) -> int:
    return registry(
        data,
        "config",
        "add",
        "--crate",
        crate,
        "--user",
        "alice",
        "--provider",
        "github",
        "--repository",
        "octo-org/octo-lib",
        "--workflow",
        "release.yml",
        "--repository-owner-id",
        "131804563",
        *extra,
    )


def test_add_list_explain_remove(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    assert registry(data, "user", "add", "alice") == 0
    assert add_github(data, "octo-lib") == 0
    assert (
        capsys.readouterr().out.splitlines()[-1] == "added pending publisher 1 for crate octo-lib"
    )
    assert registry(data, "config", "list", "--json") == 0
    [record] = json.loads(capsys.readouterr().out)
    assert record["crate"] == "octo-lib"
    assert record["repository_owner_id"] == 131804563
    assert record["pending"] is True

    policies = tmp_path / "policies"
    policies.mkdir()
    claims = tmp_path / "claims.json"
    claims.write_text(json.dumps(github_claims()))
    without = main(["policy", "explain", "--claims", str(claims), str(policies)])
    assert without == 1
    capsys.readouterr()
    args = ["policy", "explain", "--claims", str(claims), str(policies), "--data-dir", str(data)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "policy registry#github-config-1: MATCH" in out
    assert "crate octo-lib: publish-new, publish-update" in out

    assert registry(data, "config", "remove", "1") == 0
    assert "removed config 1" in capsys.readouterr().out
    assert main(args) == 1
    assert registry(data, "config", "remove", "1") == 1
    assert "no config with id 1" in capsys.readouterr().err


def test_add_refuses_what_a_policy_file_would_refuse(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    assert registry(data, "user", "add", "alice") == 0
    capsys.readouterr()
    assert add_github(data, "octo-lib", "--ref", "refs/tags/[v", "--token-ttl", "forever") == 1
    err = capsys.readouterr().err
    assert "refs" in err
    assert "token_ttl" in err
    assert add_github(data, "octo-lib") == 0
    assert add_github(data, "octo-lib") == 1
    assert "an identical config exists (id 1)" in capsys.readouterr().err
    assert registry(data, "config", "list") == 0
    assert len(capsys.readouterr().out.splitlines()) == 2
