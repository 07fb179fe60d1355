from __future__ import annotations

import json
import os
import shlex
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from trustpub.cli import main
from trustpub.cli.dev_issuer import banner, resolve_key
from trustpub.devissuer import DevIssuer, key_thumbprint, load_key
from trustpub.oidc.issuers import ProviderKind


def unverified(token: str) -> dict[str, object]:
    claims: dict[str, object] = jwt.decode(token, options={"verify_signature": False})
    return claims


def print_token(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, object]:
    if "--key" not in args:
        args = ("--throwaway-key", *args)
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
    assert main(["dev-issuer", "--print-token", "--throwaway-key", "--audience", "a", *args]) == 2
    assert message in capsys.readouterr().err


def test_print_token_requires_an_audience(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dev-issuer", "--print-token", "--throwaway-key"]) == 2
    assert "--audience" in capsys.readouterr().err


def test_print_token_without_a_key_file_is_refused_with_the_fix(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["dev-issuer", "--print-token", "--audience", "a"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "--print-token needs --key FILE, the key file of the running dev issuer" in captured.err
    assert "Invalid JWT key ID" in captured.err
    assert "--throwaway-key" in captured.err


def test_print_token_does_not_invent_a_missing_key_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    key_file = tmp_path / "typo.pem"
    assert main(["dev-issuer", "--print-token", "--audience", "a", "--key", str(key_file)]) == 2
    assert f"--key {key_file}: no such file" in capsys.readouterr().err
    assert not key_file.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--throwaway-key"], "--throwaway-key applies to --print-token only"),
        (["--print-token", "--throwaway-key", "--key", "k.pem"], "exclude each other"),
    ],
)
def test_throwaway_key_is_only_for_print_token_without_a_key(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert main(["dev-issuer", "--audience", "a", *args]) == 2
    assert message in capsys.readouterr().err


def test_help_explains_which_key_print_token_needs(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["dev-issuer", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "Needs --audience and --key FILE, the key file of the running dev issuer" in text
    assert "--throwaway-key signs with a new key instead" in text


def test_claims_file_must_be_an_object(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "claims.json"
    path.write_text("[]")
    args = ["--print-token", "--throwaway-key", "--audience", "a", "--claims", str(path)]
    assert main(["dev-issuer", *args]) == 2
    assert "expected a JSON object" in capsys.readouterr().err


def test_key_file_is_created_private_then_reused(tmp_path: Path) -> None:
    key_file = tmp_path / "issuer.pem"
    key, note = resolve_key(str(key_file))
    assert note == f"new key saved to {key_file}"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    first = key_file.read_bytes()
    again, note = resolve_key(str(key_file))
    assert note == f"key from {key_file}"
    assert key_file.read_bytes() == first
    assert key_thumbprint(again) == key_thumbprint(key)


def test_print_token_signs_with_the_key_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    key_file = tmp_path / "issuer.pem"
    resolve_key(str(key_file))
    assert main(["dev-issuer", "--print-token", "--audience", "a", "--key", str(key_file)]) == 0
    token = capsys.readouterr().out.strip()
    assert jwt.get_unverified_header(token)["kid"] == key_thumbprint(load_key(key_file))


def test_unreadable_key_file_is_reported(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    key_file = tmp_path / "issuer.pem"
    key_file.write_text("not a key")
    assert main(["dev-issuer", "--print-token", "--audience", "a", "--key", str(key_file)]) == 2
    assert f"--key {key_file}: " in capsys.readouterr().err


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


def banner_command(text: str, starts: str) -> list[str]:
    """The shell command in ``text`` that starts with ``starts``, continuation lines
    joined and split as the shell would, up to its first pipe."""
    lines = text.splitlines()
    first = next(i for i, line in enumerate(lines) if line.strip().startswith(starts))
    joined = lines[first]
    for line in lines[first + 1 :]:
        if not joined.endswith("\\"):
            break
        joined = joined[:-1] + line
    words = shlex.split(joined)
    return words[: words.index("|")] if "|" in words else words


def test_banner_without_an_audience_shows_placeholders_not_a_guessed_port(
    rsa_key: rsa.RSAPrivateKey,
) -> None:
    text = banner(DevIssuer("http://127.0.0.1:8090", key=rsa_key), "a new key for this run")
    assert "localhost:8080" not in text.replace("(localhost:8080 for a local trustpub)", "")
    curl = banner_command(text, "curl")
    assert curl[-1] == "http://127.0.0.1:8090/mint?audience=<your trustpub audience>&format=raw"
    assert "trustpub exchange --url '<your trustpub URL>' --jwt - --explain" in text
    assert "restart this issuer with --audience AUD" in text
    # Without a key file there is no --print-token command to copy, only how to get one.
    assert "restart this issuer with\n  --key FILE" in text
    assert "--print-token --key" not in text


@pytest.mark.parametrize(
    ("audience", "url"),
    [("localhost:9123", "http://localhost:9123"), ("registry.example", "https://registry.example")],
)
def test_banner_with_an_audience_fills_it_in(
    rsa_key: rsa.RSAPrivateKey, audience: str, url: str
) -> None:
    issuer = DevIssuer("http://127.0.0.1:8090", key=rsa_key, audience=audience)
    text = banner(issuer, "a new key for this run")
    assert "<your trustpub" not in text
    assert banner_command(text, "curl")[-1] == (
        f"http://127.0.0.1:8090/mint?audience={audience}&format=raw"
    )
    assert f"| trustpub exchange --url {url} --jwt - --explain" in text


@pytest.mark.parametrize("provider", ["github", "gitlab"])
def test_banners_print_token_command_signs_what_the_running_issuer_serves(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    provider: ProviderKind,
) -> None:
    monkeypatch.chdir(tmp_path)  # the banner shows the key file's absolute path
    key, note = resolve_key("dev-issuer.pem")
    running = DevIssuer(
        "http://127.0.0.1:45678", key=key, kid="k1", provider=provider, audience="localhost:9123"
    )
    command = banner_command(banner(running, note, "dev-issuer.pem"), "trustpub dev-issuer --print")
    assert command[:3] == ["trustpub", "dev-issuer", "--print-token"]
    assert str(tmp_path / "dev-issuer.pem") in command
    monkeypatch.chdir("/")
    assert main(command[1:]) == 0
    token = capsys.readouterr().out.strip()
    public = jwt.PyJWK(running.jwks()["keys"][0]).key
    claims = jwt.decode(
        token,
        public,
        algorithms=["RS256"],
        audience="localhost:9123",
        issuer=running.url,
        options={"require": ["exp", "iat", "iss", "aud"], "verify_signature": True},
    )
    assert jwt.get_unverified_header(token)["kid"] == "k1"
    assert claims["ref"] == ("refs/tags/v1.0.0" if provider == "github" else "v1.0.0")
    assert ("project_path" in claims) == (provider == "gitlab")


@pytest.mark.parametrize("provider", ["github", "gitlab"])
def test_the_banners_issuer_spec_is_what_trustpub_reads(
    rsa_key: rsa.RSAPrivateKey, provider: ProviderKind
) -> None:
    from trustpub.config import load_settings

    issuer = DevIssuer("http://127.0.0.1:8090", key=rsa_key, provider=provider)
    words = banner_command(banner(issuer, "a new key for this run"), "TRUSTPUB_ISSUERS=")
    variable, _, value = words[0].partition("=")
    settings = load_settings(environ={variable: value})
    assert settings.issuers == (issuer.trustpub_issuer(),)
