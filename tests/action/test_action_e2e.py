"""The action as the runner runs it: `node main.js`, then `node post.js`, with INPUT_*
variables, the GITHUB_OUTPUT / GITHUB_STATE / GITHUB_ENV files and workflow commands on
stdout, against a live `trustpub serve` trusting a live `trustpub dev-issuer`. The token
main outputs publishes to the service's companion registry (`PUT /api/v1/crates/new`, the
body cargo sends); after post, the registry refuses it. (Real cargo against the registry:
tests/registry/test_cargo_e2e.py.)
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.action.conftest import LiveIssuer, dev_issuer
from tests.live import LiveService, registry_cli, run_service
from tests.registry.helpers import body_for
from trustpub.oidc.issuers import Issuer

pytestmark = pytest.mark.slow

ACTION = Path(__file__).resolve().parents[2] / "action"
CREDENTIAL = "registry-introspection-secret"


def policy_for(issuer_url: str) -> str:
    return f"""
[[policy]]
name = "release"
provider = "github"
issuer = "{issuer_url}"
crates = ["octo-lib"]
repository = "octo-org/octo-lib"
repository_owner_id = "131804563"
workflow = "release.yml"
"""


@dataclass
class Stack:
    issuer: LiveIssuer
    service: LiveService


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    with (
        dev_issuer() as issuer,
        run_service(
            tmp_path,
            issuers=[Issuer(issuer.url, "github", development=True)],
            policies=policy_for(issuer.url),
            extra_config=f'introspection_credentials = ["{CREDENTIAL}"]',
        ) as service,
    ):
        yield Stack(issuer, service)


def read_file_commands(path: Path) -> dict[str, str]:
    """What the runner reads back from GITHUB_OUTPUT / GITHUB_STATE / GITHUB_ENV."""
    result: dict[str, str] = {}
    lines = path.read_text().split("\n")
    i = 0
    while i < len(lines):
        name, sep, delimiter = lines[i].partition("<<")
        if sep:
            end = lines.index(delimiter, i + 1)
            result[name] = "\n".join(lines[i + 1 : end])
            i = end
        i += 1
    return result


class Runner:
    """The parts of the Actions runner the action relies on."""

    def __init__(self, node: str, workdir: Path, inputs: dict[str, str], oidc: dict[str, str]):
        self.node = node
        self.dir = workdir
        self.inputs = {f"INPUT_{k.upper()}": v for k, v in inputs.items()}
        self.oidc = oidc
        self.files = {
            name: workdir / name.lower() for name in ("GITHUB_OUTPUT", "GITHUB_STATE", "GITHUB_ENV")
        }

    def run(self, script: str, extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
        for path in self.files.values():
            path.write_text("")  # the runner gives every step fresh, empty files
        env = {"PATH": os.environ["PATH"], "GITHUB_ACTIONS": "true", **self.inputs, **extra}
        env.update({k: str(v) for k, v in self.files.items()})
        return subprocess.run(
            [self.node, str(ACTION / script)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def main(self) -> subprocess.CompletedProcess[str]:
        result = self.run("main.js", self.oidc)
        self.outputs = read_file_commands(self.files["GITHUB_OUTPUT"])
        self.state = read_file_commands(self.files["GITHUB_STATE"])
        self.exported = read_file_commands(self.files["GITHUB_ENV"])
        return result

    def post(self) -> subprocess.CompletedProcess[str]:
        # The runner hands the main step's saved state to the post step as STATE_*.
        return self.run("post.js", {f"STATE_{k}": v for k, v in self.state.items()})


def introspect(service: LiveService, token: str) -> dict[str, object]:
    response = httpx.post(
        f"{service.url}/api/v1/trusted_publishing/introspect",
        json={"token": token},
        headers={"Authorization": f"Bearer {CREDENTIAL}"},
    )
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


def publish(service: LiveService, token: str, version: str) -> httpx.Response:
    """What `cargo publish` sends for octo-lib VERSION, with TOKEN as cargo sends it."""
    return httpx.put(
        f"{service.url}/api/v1/crates/new",
        content=body_for("octo-lib", version),
        headers={"Authorization": token},
    )


def indexed_versions(service: LiveService) -> list[str]:
    response = httpx.get(f"{service.url}/index/oc/to/octo-lib")
    assert response.status_code == 200, response.text
    return [json.loads(line)["vers"] for line in response.text.splitlines()]


def create_octo_lib(service: LiveService) -> None:
    """A person publishes the first version: the policy grants only publish-update."""
    registry_cli(service, "user", "add", "alice")
    alice = registry_cli(service, "token", "create", "--user", "alice", "--scope", "publish-new")
    first = publish(service, alice, "0.1.0")
    assert first.status_code == 200, first.text


def runner_for(node: str, tmp_path: Path, stack: Stack, **inputs: str) -> Runner:
    return Runner(
        node,
        tmp_path,
        {"url": stack.service.url, "audience": "", "registry": "", **inputs},
        {
            "ACTIONS_ID_TOKEN_REQUEST_URL": stack.issuer.token_request_url,
            "ACTIONS_ID_TOKEN_REQUEST_TOKEN": stack.issuer.request_token,
        },
    )


def test_main_then_post_issues_a_token_that_publishes_until_post_revokes_it(
    node: str, tmp_path: Path, stack: Stack
) -> None:
    create_octo_lib(stack.service)
    runner = runner_for(node, tmp_path, stack, registry="trustpub-local")

    main = runner.main()
    assert main.returncode == 0, main.stdout + main.stderr
    token = runner.outputs["token"]
    assert token.startswith("trustpub_")
    lines = main.stdout.splitlines()
    # The OIDC token, then the registry token, are masked before anything else.
    assert lines[0].startswith("::add-mask::ey")
    assert lines[1] == f"::add-mask::{token}"
    assert main.stdout.count(token) == 1
    assert "Obtained a registry token for octo-lib (publish-update)" in main.stdout
    assert runner.outputs["expires-at"].endswith("Z")
    assert runner.exported == {"CARGO_REGISTRIES_TRUSTPUB_LOCAL_TOKEN": token}
    assert runner.state["token"] == token
    assert runner.state["url"] == stack.service.url

    active = introspect(stack.service, token)
    assert active["active"] is True
    assert active["crates"] == {"octo-lib": ["publish-update"]}

    # The job's next step: publish with the token main output.
    published = publish(stack.service, token, "0.2.0")
    assert published.status_code == 200, published.text
    assert indexed_versions(stack.service) == ["0.1.0", "0.2.0"]
    version = httpx.get(f"{stack.service.url}/api/v1/crates/octo-lib/0.2.0").json()["version"]
    assert version["trustpub_data"]["repository"] == "octo-org/octo-lib"
    assert version["trustpub_data"]["issuer"] == stack.issuer.url

    post = runner.post()
    assert post.returncode == 0, post.stdout + post.stderr
    assert post.stdout.splitlines() == [f"::add-mask::{token}", "Revoked the registry token."]
    assert introspect(stack.service, token) == {"active": False}

    # After the job, the same token publishes nothing.
    refused = publish(stack.service, token, "0.3.0")
    assert refused.status_code == 403
    assert refused.json() == {
        "errors": [
            {"detail": "The provided Trusted Publishing token is invalid, expired or revoked"}
        ]
    }
    assert indexed_versions(stack.service) == ["0.1.0", "0.2.0"]


def test_a_refused_exchange_fails_main_shows_why_and_post_does_nothing(
    node: str, tmp_path: Path
) -> None:
    with (
        dev_issuer("--claim", "repository=octo-org/elsewhere") as issuer,
        run_service(
            tmp_path,
            issuers=[Issuer(issuer.url, "github", development=True)],
            policies=policy_for(issuer.url),
        ) as service,
    ):
        runner = runner_for(node, tmp_path, Stack(issuer, service))
        main = runner.main()
        assert main.returncode == 1
        error = next(line for line in main.stdout.splitlines() if line.startswith("::error"))
        assert "octo-org/elsewhere" in error
        assert "decoded WITHOUT verifying its signature" in main.stdout
        assert '  repository = "octo-org/elsewhere"' in main.stdout
        assert runner.outputs == {}
        assert runner.state == {}

        post = runner.post()
        assert post.returncode == 0
        assert post.stdout == "No registry token to revoke.\n"


def test_post_survives_an_unreachable_registry(node: str, tmp_path: Path, stack: Stack) -> None:
    create_octo_lib(stack.service)
    runner = runner_for(node, tmp_path, stack)
    assert runner.main().returncode == 0
    token = runner.state["token"]
    runner.state["url"] = "http://127.0.0.1:9"  # nothing listens on the discard port
    post = runner.post()
    assert post.returncode == 0
    assert "::warning::Could not revoke the registry token" in post.stdout
    # Still valid: it was not revoked, and expires on its own.
    assert introspect(stack.service, token)["active"] is True
    assert publish(stack.service, token, "0.2.0").status_code == 200
