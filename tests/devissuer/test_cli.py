from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import jwt
import pytest

from trustpub.cli import main
from trustpub.devissuer import key_thumbprint, load_key


def unverified(token: str) -> dict[str, object]:
    claims: dict[str, object] = jwt.decode(token, options={"verify_signature": False})
    return claims


def print_token(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, object]:
    assert main(["dev-issuer", "--print-token", "--audience", "reg.example", *args]) == 0
    return unverified(capsys.readouterr().out.strip())


def test_refuses_a_non_loopback_address(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dev-issuer", "--listen", "0.0.0.0:8090"]) == 2
    err = capsys.readouterr().err
    assert "not a loopback address" in err
    assert "--allow-non-loopback" in err


def test_print_token_uses_the_listen_address_as_issuer(capsys: pytest.CaptureFixture[str]) -> None:
    claims = print_token(capsys, "--listen", "127.0.0.1:9999")
    assert claims["iss"] == "http://127.0.0.1:9999"
    assert claims["aud"] == "reg.example"


def test_claim_flags_and_file_override_defaults(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    claims_file = tmp_path / "claims.json"
    claims_file.write_text(json.dumps({"repository": "me/crate", "environment": "staging"}))
    claims = print_token(
        capsys,
        "--claims",
        str(claims_file),
        "--claim",
        "environment=release",
        "--claim",
        "run_attempt:=2",
        "--claim",
        "nbf:=null",
    )
    assert claims["repository"] == "me/crate"
    assert claims["environment"] == "release"
    assert claims["run_attempt"] == 2
    assert "nbf" not in claims


def test_gitlab_provider(capsys: pytest.CaptureFixture[str]) -> None:
    claims = print_token(capsys, "--provider", "gitlab", "--claim", "project_path=a/b/c")
    assert claims["namespace_path"] == "a/b"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--claim", "novalue"], "expected NAME=VALUE"),
        (["--claim", "x:={bad"], "invalid JSON"),
        (["--claims", "/nonexistent/claims.json"], "cannot read"),
        (["--listen", "nowhere"], "expected HOST:PORT"),
        (["--lifetime", "0"], "--lifetime must be positive"),
    ],
)
def test_bad_arguments_exit_2_with_a_reason(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert main(["dev-issuer", "--print-token", "--audience", "a", *args]) == 2
    assert message in capsys.readouterr().err


def test_print_token_requires_an_audience(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dev-issuer", "--print-token"]) == 2
    assert "--audience" in capsys.readouterr().err


def test_claims_file_must_be_an_object(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "claims.json"
    path.write_text("[]")
    assert main(["dev-issuer", "--print-token", "--audience", "a", "--claims", str(path)]) == 2
    assert "expected a JSON object" in capsys.readouterr().err


def test_key_file_is_created_private_then_reused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    key_file = tmp_path / "issuer.pem"
    print_token(capsys, "--key", str(key_file))
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    first = key_file.read_bytes()
    assert main(["dev-issuer", "--print-token", "--audience", "a", "--key", str(key_file)]) == 0
    token = capsys.readouterr().out.strip()
    assert key_file.read_bytes() == first
    assert jwt.get_unverified_header(token)["kid"] == key_thumbprint(load_key(key_file))


def test_unreadable_key_file_is_reported(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    key_file = tmp_path / "issuer.pem"
    key_file.write_text("not a key")
    assert main(["dev-issuer", "--print-token", "--audience", "a", "--key", str(key_file)]) == 2
    assert f"--key {key_file}" in capsys.readouterr().err


@pytest.mark.slow
def test_running_issuer_prints_its_configuration_and_serves_tokens() -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "trustpub",
            "dev-issuer",
            "--listen",
            "127.0.0.1:0",
            "--request-token",
            "fixed-secret",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        while not any(line.startswith("  export ACTIONS_ID_TOKEN_REQUEST_TOKEN") for line in lines):
            line = proc.stdout.readline()
            assert line, f"dev-issuer exited early: {lines}"
            lines.append(line)
        text = "".join(lines)
        env_line = next(x for x in lines if "TRUSTPUB_ISSUERS=" in x)
        url = env_line.split("github=")[1].split("+dev")[0]
        assert url.startswith("http://127.0.0.1:")
        assert f"ACTIONS_ID_TOKEN_REQUEST_URL='{url}/token?api-version=2.0'" in text
        assert "ACTIONS_ID_TOKEN_REQUEST_TOKEN=fixed-secret" in text
        response = httpx.get(
            f"{url}/token?api-version=2.0&audience=a",
            headers={"Authorization": "bearer fixed-secret"},
        )
        assert unverified(response.json()["value"])["iss"] == url
    finally:
        proc.terminate()
        proc.wait(10)
        assert proc.stdout is not None
        proc.stdout.close()
