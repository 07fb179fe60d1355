"""``trustpub exchange`` against a fake registry (httpx.MockTransport) and dev-issuer JWTs."""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
import textwrap
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from trustpub.cli import build_parser, run_handler
from trustpub.cli.console import Console
from trustpub.cli.exchange import execute
from trustpub.cli.remote import World
from trustpub.devissuer import DevIssuer, generate_key
from trustpub.oidc.unverified import decode_unverified_claims

REGISTRY = "https://registry.example"
ENDPOINT = f"{REGISTRY}/api/v1/trusted_publishing/tokens"
OIDC = "https://oidc.runner.example/token?api-version=2.0"
TOKEN = "trustpub_registry-token-secret"


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return generate_key()


@pytest.fixture
def issuer(key: rsa.RSAPrivateKey) -> DevIssuer:
    return DevIssuer("http://127.0.0.1:8090", key=key, request_token="req-secret")


Handler = Callable[[httpx.Request], httpx.Response]


class Registry:
    """A fake registry (and GitHub token endpoint) recording what it was sent."""

    def __init__(self, issuer: DevIssuer, exchange: list[Handler] | None = None) -> None:
        self.issuer = issuer
        self.exchange = exchange or [ok]
        self.posted: list[str] = []
        self.oidc_requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.host == "oidc.runner.example":
            self.oidc_requests.append(request)
            if request.headers.get("authorization") != "bearer req-secret":
                return httpx.Response(401, json={"message": "bad token"})
            audience = request.url.params["audience"]
            return httpx.Response(200, json={"value": self.issuer.mint(audience)})
        assert str(request.url) == ENDPOINT
        self.posted.append(json.loads(request.content)["jwt"])
        handler = self.exchange[min(len(self.posted), len(self.exchange)) - 1]
        return handler(request)


def ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "token": TOKEN,
            "expires_at": "2030-01-01T00:30:00Z",
            "crates": {"octo-lib": ["publish-update"]},
        },
    )


def refused(detail: str) -> Handler:
    return lambda request: httpx.Response(400, json={"errors": [{"detail": detail}]})


class Result:
    def __init__(self, code: int, out: str, err: str, sleeps: list[float]) -> None:
        self.code, self.out, self.err, self.sleeps = code, out, err, sleeps


def run(
    registry: Registry,
    *args: str,
    env: dict[str, str] | None = None,
    stdin: str = "",
    url: str | None = REGISTRY,
) -> Result:
    argv = ["exchange", *(["--url", url] if url else []), *args]
    parsed = build_parser().parse_args(argv)
    out, err = io.StringIO(), io.StringIO()
    sleeps: list[float] = []
    console = Console(out, err, io.StringIO(stdin), prefix="trustpub exchange")
    with httpx.Client(transport=httpx.MockTransport(registry)) as client:
        code = run_handler(
            console,
            lambda: execute(parsed, console, World(env or {}, client, sleeps.append)),
        )
    return Result(code, out.getvalue(), err.getvalue(), sleeps)


def test_jwt_flag_is_exchanged_and_only_the_token_goes_to_stdout(issuer: DevIssuer) -> None:
    registry = Registry(issuer)
    jwt = issuer.mint("registry.example")
    result = run(registry, "--jwt", jwt)
    assert result.code == 0
    assert registry.posted == [jwt]
    assert result.out == TOKEN + "\n"
    assert "token for octo-lib, valid until 2030-01-01T00:30:00Z" in result.err
    assert TOKEN not in result.err
    assert jwt not in result.err


def test_jwt_dash_reads_standard_input(issuer: DevIssuer) -> None:
    registry = Registry(issuer)
    jwt = issuer.mint("registry.example")
    assert run(registry, "--jwt", "-", stdin=jwt + "\n").code == 0
    assert registry.posted == [jwt]


def test_from_env_reads_the_named_variable(issuer: DevIssuer) -> None:
    registry = Registry(issuer)
    jwt = issuer.mint("registry.example")
    assert run(registry, "--from-env", "MY_ID_TOKEN", env={"MY_ID_TOKEN": jwt}).code == 0
    assert registry.posted == [jwt]


def test_from_env_names_an_empty_variable(issuer: DevIssuer) -> None:
    result = run(Registry(issuer), "--from-env", "MY_ID_TOKEN")
    assert result.code == 2
    assert "$MY_ID_TOKEN is empty or not set" in result.err


def test_gitlab_default_variable_is_used(issuer: DevIssuer) -> None:
    registry = Registry(issuer)
    jwt = issuer.mint("registry.example")
    assert run(registry, env={"TRUSTPUB_ID_TOKEN": jwt}).code == 0
    assert registry.posted == [jwt]


def test_github_actions_variables_request_a_token_for_the_derived_audience(
    issuer: DevIssuer,
) -> None:
    registry = Registry(issuer)
    env = {
        "ACTIONS_ID_TOKEN_REQUEST_URL": OIDC,
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "req-secret",
        "TRUSTPUB_ID_TOKEN": "not-used",
    }
    assert run(registry, env=env).code == 0
    (request,) = registry.oidc_requests
    assert request.url.params["api-version"] == "2.0"
    assert request.url.params["audience"] == "registry.example"
    assert decode_unverified_claims(registry.posted[0])["aud"] == "registry.example"  # type: ignore[index]


def test_audience_flag_overrides_the_derived_audience(issuer: DevIssuer) -> None:
    registry = Registry(issuer)
    env = {"ACTIONS_ID_TOKEN_REQUEST_URL": OIDC, "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "req-secret"}
    assert run(registry, "--audience", "other.example", env=env).code == 0
    assert registry.oidc_requests[0].url.params["audience"] == "other.example"


def test_a_refused_github_token_request_fails(issuer: DevIssuer) -> None:
    env = {"ACTIONS_ID_TOKEN_REQUEST_URL": OIDC, "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "wrong"}
    result = run(Registry(issuer), env=env)
    assert result.code == 1
    assert "OIDC token request was refused: HTTP 401" in result.err


def test_without_any_token_source_explains_each_ci(issuer: DevIssuer) -> None:
    result = run(Registry(issuer))
    assert result.code == 2
    assert "id-token: write" in result.err
    assert "id_tokens: TRUSTPUB_ID_TOKEN: aud: registry.example" in result.err


def test_url_comes_from_trustpub_url(issuer: DevIssuer) -> None:
    jwt = issuer.mint("registry.example")
    result = run(Registry(issuer), "--jwt", jwt, url=None, env={"TRUSTPUB_URL": REGISTRY + "/"})
    assert result.code == 0


def test_a_missing_url_is_a_usage_error(issuer: DevIssuer) -> None:
    result = run(Registry(issuer), "--jwt", "x", url=None)
    assert result.code == 2
    assert "--url" in result.err


def test_refusal_prints_the_servers_reasons(issuer: DevIssuer) -> None:
    detail = "No Trusted Publishing config found for repository `octo-org/octo-lib`."
    result = run(Registry(issuer, [refused(detail)]), "--jwt", issuer.mint("registry.example"))
    assert result.code == 1
    assert f"the registry refused the token (HTTP 400):\n  - {detail}" in result.err
    assert result.out == ""


def test_explain_prints_unverified_claims_but_never_the_jwt(issuer: DevIssuer) -> None:
    jwt = issuer.mint("registry.example", environment="release")
    result = run(Registry(issuer, [refused("no")]), "--jwt", jwt, "--explain")
    assert result.code == 1
    assert "decoded WITHOUT verifying its signature (a debugging aid" in result.err
    assert "  environment" in result.err
    assert "repository_owner_id" in result.err
    signature = jwt.rsplit(".", 1)[1]
    assert signature not in result.err
    assert jwt not in result.err


def explained(err: str) -> dict[str, str]:
    """The claims ``--explain`` printed: name -> value as shown."""
    rows = [line.split(None, 1) for line in err.splitlines() if line.startswith("  ")]
    return {row[0]: row[1] if len(row) > 1 else "" for row in rows}


def test_explain_shows_the_times_in_utc_beside_the_epoch_seconds(key: rsa.RSAPrivateKey) -> None:
    issuer = DevIssuer("http://127.0.0.1:8090", key=key, clock=lambda: 1_769_941_559)
    jwt = issuer.mint(
        "registry.example", exp=1_769_941_859, nbf=1_769_941_259, run_number=1_769_941_559
    )
    shown = explained(run(Registry(issuer), "--jwt", jwt, "--explain").err)
    assert shown["exp"] == "1769941859 (2026-02-01 10:30:59 UTC)"
    assert shown["iat"] == "1769941559 (2026-02-01 10:25:59 UTC)"
    assert shown["nbf"] == "1769941259 (2026-02-01 10:20:59 UTC)"
    assert shown["run_number"] == "1769941559"  # only the time claims are times


def test_explain_shows_odd_time_claims_as_they_are(issuer: DevIssuer) -> None:
    jwt = issuer.mint("registry.example", exp="soon", nbf=True, iat=10**30)
    shown = explained(run(Registry(issuer), "--jwt", jwt, "--explain").err)
    assert (shown["exp"], shown["iat"], shown["nbf"]) == ("soon", str(10**30), "true")


def test_the_gitlab_example_installs_trustpub_from_its_repository() -> None:
    from trustpub.cli.exchange import GITLAB_EXAMPLE

    assert "pip install trustpub\n" not in GITLAB_EXAMPLE
    assert 'pip install "trustpub @ git+https://<your-trustpub-repository>"' in GITLAB_EXAMPLE


def test_the_gitlab_examples_command_parses_and_its_policy_loads() -> None:
    import shlex

    from trustpub.cli import build_parser
    from trustpub.cli.exchange import GITLAB_EXAMPLE
    from trustpub.oidc.issuers import DEFAULT_ISSUERS
    from trustpub.policies import parse_policy_file

    command = next(
        line.strip().removeprefix("- ")
        for line in GITLAB_EXAMPLE.split("\n")
        if line.strip().startswith("- trustpub exchange")
    )
    args = build_parser().parse_args(shlex.split(command)[1:])
    assert (args.url, args.cargo_registry) == ("https://registry.example", "my-registry")
    policy = GITLAB_EXAMPLE[GITLAB_EXAMPLE.index("[[policy]]") :]
    policies, problems = parse_policy_file("example.toml", textwrap.dedent(policy), DEFAULT_ISSUERS)
    assert problems == []
    assert policies[0].provider == "gitlab"
    assert "aud: registry.example" in GITLAB_EXAMPLE  # the URL above without its scheme


def test_explain_notes_a_reusable_workflow(issuer: DevIssuer) -> None:
    jwt = issuer.mint(
        "registry.example",
        job_workflow_ref="octo-org/shared/.github/workflows/publish.yml@refs/heads/main",
    )
    result = run(Registry(issuer), "--jwt", jwt, "--explain")
    assert result.code == 0
    assert "note: a reusable workflow" in result.err


def test_explain_with_something_that_is_not_a_jwt(issuer: DevIssuer) -> None:
    result = run(Registry(issuer, [refused("Failed to decode JWT")]), "--jwt", "abc", "--explain")
    assert "is not a JWT" in result.err
    assert "Failed to decode JWT" in result.err


@pytest.mark.parametrize("status", [404, 405])
def test_a_wrong_url_asks_for_the_servers_base_url(issuer: DevIssuer, status: int) -> None:
    registry = Registry(issuer, [lambda r: httpx.Response(status, text="<html>")])
    result = run(registry, "--jwt", issuer.mint("registry.example"))
    assert result.code == 2
    assert f"answered HTTP {status}: is the URL the server's base URL" in result.err
    assert len(registry.posted) == 1


def test_an_answer_without_an_error_message_suggests_checking_the_url(issuer: DevIssuer) -> None:
    registry = Registry(issuer, [lambda r: httpx.Response(400, text="<html>")])
    result = run(registry, "--jwt", issuer.mint("registry.example"))
    assert result.code == 2
    assert "without an error message: is the URL the server's base URL?" in result.err


def test_a_redirect_is_not_followed(issuer: DevIssuer) -> None:
    registry = Registry(
        issuer, [lambda r: httpx.Response(301, headers={"Location": "https://x.example/"})]
    )
    result = run(registry, "--jwt", issuer.mint("registry.example"))
    assert result.code == 2
    assert "redirected (HTTP 301) to https://x.example/" in result.err
    assert len(registry.posted) == 1


def test_a_fixed_jwt_is_not_retried_after_a_server_error(issuer: DevIssuer) -> None:
    failing = lambda r: httpx.Response(503, json={"errors": [{"detail": "store down"}]})  # noqa: E731
    registry = Registry(issuer, [failing, ok])
    result = run(registry, "--jwt", issuer.mint("registry.example"))
    assert result.code == 3
    assert len(registry.posted) == 1
    assert "HTTP 503 (store down) (not retried: the registry may have seen" in result.err


def refuse_connections(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("[Errno 111] Connection refused", request=request)


def test_a_refused_connection_is_retried_with_the_same_jwt(issuer: DevIssuer) -> None:
    # The request never reached the server: resending the same token is no replay.
    registry = Registry(issuer, [refuse_connections, ok])
    jwt = issuer.mint("registry.example")
    result = run(registry, "--jwt", jwt)
    assert result.code == 0, result.err
    assert registry.posted == [jwt, jwt]
    assert result.sleeps == [1.0]
    assert "cannot connect to registry.example: [Errno 111] Connection refused" in result.err
    assert "may have seen" not in result.err


def test_a_server_that_never_accepts_a_connection_fails_after_three_attempts(
    issuer: DevIssuer,
) -> None:
    registry = Registry(issuer, [refuse_connections])
    result = run(registry, "--jwt", issuer.mint("registry.example"))
    assert result.code == 3
    assert len(registry.posted) == 3
    assert "token exchange failed after 3 attempts: cannot connect to registry.example" in (
        result.err
    )
    assert "may have seen" not in result.err


def test_a_read_timeout_with_a_fixed_jwt_is_not_retried(issuer: DevIssuer) -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    registry = Registry(issuer, [slow, ok])
    result = run(registry, "--jwt", issuer.mint("registry.example"))
    assert result.code == 3
    assert len(registry.posted) == 1
    assert "gave no answer in time (not retried: the registry may have seen" in result.err


def test_github_tokens_are_retried_fresh_after_a_server_error(issuer: DevIssuer) -> None:
    failing = lambda r: httpx.Response(503, json={})  # noqa: E731
    registry = Registry(issuer, [failing, failing, ok])
    env = {"ACTIONS_ID_TOKEN_REQUEST_URL": OIDC, "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "req-secret"}
    result = run(registry, env=env)
    assert result.code == 0
    assert len(set(registry.posted)) == 3
    assert result.sleeps == [1.0, 2.0]


def test_network_errors_are_bounded(issuer: DevIssuer) -> None:
    registry = Registry(issuer, [refuse_connections])
    env = {"ACTIONS_ID_TOKEN_REQUEST_URL": OIDC, "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "req-secret"}
    result = run(registry, env=env)
    assert result.code == 3
    assert "token exchange failed after 3 attempts: cannot connect to registry.example" in (
        result.err
    )


def test_output_file_is_private(issuer: DevIssuer, tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("old")
    path.chmod(0o644)
    result = run(Registry(issuer), "--jwt", issuer.mint("a"), "--output", str(path))
    assert result.code == 0
    assert result.out == ""
    assert path.read_text() == TOKEN + "\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_cargo_registry_writes_private_credentials(issuer: DevIssuer, tmp_path: Path) -> None:
    home = tmp_path / "cargo"
    result = run(
        Registry(issuer),
        "--jwt",
        issuer.mint("a"),
        "--cargo-registry",
        "my-reg",
        env={"CARGO_HOME": str(home)},
    )
    assert result.code == 0
    assert result.out == ""
    path = home / "credentials.toml"
    assert tomllib.loads(path.read_text()) == {"registries": {"my-reg": {"token": TOKEN}}}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_cargo_credentials_keep_other_entries(issuer: DevIssuer, tmp_path: Path) -> None:
    path = tmp_path / "credentials.toml"
    path.write_text(
        '[registry]\ntoken = "crates-io-token"\n\n'
        '[registries.my-reg]\ntoken = "old"\ncredential-provider = ["cargo:token"]\n\n'
        '[registries."other.reg"]\ntoken = "x\\"y"\n'
    )
    result = run(
        Registry(issuer),
        "--jwt",
        issuer.mint("a"),
        "--cargo-registry",
        "my-reg",
        "--cargo-home",
        str(tmp_path),
    )
    assert result.code == 0
    data: dict[str, Any] = tomllib.loads(path.read_text())
    assert data == {
        "registry": {"token": "crates-io-token"},
        "registries": {
            "my-reg": {"token": TOKEN, "credential-provider": ["cargo:token"]},
            "other.reg": {"token": 'x"y'},
        },
    }


COMMENTED_CREDENTIALS = """\
# cargo credentials: kept by hand, comments matter
[registry]
token = "crates-io-token"  # crates.io

# the company registry, rotated by CI
[registries.my-reg]
token = "old"   # replaced by trustpub exchange
credential-provider = ["cargo:token"]

[registries."other.reg"]
token = "x\\"y"

[[weird]]
a = 1
"""


def test_cargo_credentials_keep_their_comments_and_everything_else(
    issuer: DevIssuer, tmp_path: Path
) -> None:
    path = tmp_path / "credentials.toml"
    path.write_text(COMMENTED_CREDENTIALS)
    result = run(
        Registry(issuer),
        "--jwt",
        issuer.mint("a"),
        "--cargo-registry",
        "my-reg",
        "--cargo-home",
        str(tmp_path),
    )
    assert result.code == 0, result.err
    # Byte for byte the same file, but for the one value.
    assert path.read_text() == COMMENTED_CREDENTIALS.replace('"old"', f'"{TOKEN}"')
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_new_registry_is_added_below_the_others(issuer: DevIssuer, tmp_path: Path) -> None:
    path = tmp_path / "credentials.toml"
    path.write_text(COMMENTED_CREDENTIALS)
    args = ("--jwt", issuer.mint("a"), "--cargo-registry", "new-reg", "--cargo-home", str(tmp_path))
    assert run(Registry(issuer), *args).code == 0
    text = path.read_text()
    assert text.startswith(COMMENTED_CREDENTIALS.split("[[weird]]")[0])
    data: dict[str, Any] = tomllib.loads(text)
    assert data["registries"]["new-reg"] == {"token": TOKEN}
    assert data["registries"]["my-reg"]["token"] == "old"
    assert data["weird"] == [{"a": 1}]


def test_cargo_credentials_that_are_not_toml_are_left_alone(
    issuer: DevIssuer, tmp_path: Path
) -> None:
    path = tmp_path / "credentials.toml"
    original = "[registries.r\ntoken = \n"
    path.write_text(original)
    result = run(
        Registry(issuer),
        "--jwt",
        issuer.mint("a"),
        "--cargo-registry",
        "r",
        "--cargo-home",
        str(tmp_path),
    )
    assert result.code == 3
    assert "is not valid TOML" in result.err
    assert "fix it by hand" in result.err
    assert path.read_text() == original
    assert TOKEN not in result.err + result.out


def test_cargo_registry_name_is_checked(issuer: DevIssuer, tmp_path: Path) -> None:
    registry = Registry(issuer)
    result = run(
        registry,
        "--jwt",
        issuer.mint("a"),
        "--cargo-registry",
        "a]b",
        "--cargo-home",
        str(tmp_path),
    )
    assert result.code == 2
    assert "is not a cargo registry name" in result.err
    assert registry.posted == []  # refused before a token is spent
    assert not (tmp_path / "credentials.toml").exists()


@pytest.mark.slow
def test_the_gitlab_flow_against_a_live_service(tmp_path: Path) -> None:
    """The documented GitLab path: $TRUSTPUB_ID_TOKEN in, cargo credentials out."""
    from tests.action.conftest import dev_issuer
    from tests.live import run_service
    from trustpub.oidc.issuers import Issuer

    key = tmp_path / "issuer.pem"
    with dev_issuer("--provider", "gitlab", "--key", str(key)) as issuer:
        policy = f"""
[[policy]]
name = "release"
provider = "gitlab"
issuer = "{issuer.url}"
crates = ["octo-lib"]
project_path = "octo-group/octo-lib"
workflow = ".gitlab-ci.yml"
"""
        with run_service(
            tmp_path,
            issuers=[Issuer(issuer.url, "gitlab", development=True)],
            policies=policy,
            extra_config='introspection_credentials = ["cred-0123456789abcdef"]',
        ) as service:
            # A second dev-issuer process with the same key mints what the job would get.
            minted = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "trustpub",
                    "dev-issuer",
                    "--provider",
                    "gitlab",
                    "--key",
                    str(key),
                    "--url",
                    issuer.url,
                    "--print-token",
                    "--audience",
                    service.audience,
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            cargo_home = tmp_path / "cargo"
            env = {
                **os.environ,
                "TRUSTPUB_ID_TOKEN": minted.stdout.strip(),
                "CARGO_HOME": str(cargo_home),
            }
            env = {k: v for k, v in env.items() if not k.startswith("ACTIONS_ID_TOKEN")}
            result = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "trustpub",
                    "exchange",
                    "--url",
                    service.url,
                    "--cargo-registry",
                    "local",
                ],
                capture_output=True,
                text=True,
                env=env,
                check=False,
            )
            assert result.returncode == 0, result.stderr
            assert result.stdout == ""
            credentials = tomllib.loads((cargo_home / "credentials.toml").read_text())
            token = credentials["registries"]["local"]["token"]
            introspection = httpx.post(
                f"{service.url}/api/v1/trusted_publishing/introspect",
                json={"token": token},
                headers={"Authorization": "Bearer cred-0123456789abcdef"},
            ).json()
            assert introspection["active"] is True
            assert introspection["crates"] == {"octo-lib": ["publish-update"]}
