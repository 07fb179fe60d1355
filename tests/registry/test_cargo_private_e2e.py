"""Real cargo against a registry that requires authentication (``[registry]
auth_required = true``): with a token it fetches, builds a dependent crate and
publishes; without one it fails with cargo's authentication message; a read-only token
builds but cannot publish; a token created over HTTP publishes until it is revoked."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest

from tests.live import registry_cli, run_service
from tests.registry.test_cargo_e2e import Cargo, make_package

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("cargo") is None, reason="needs cargo"),
]

LOGIN_URL = "https://wiki.example.com/registry-tokens"
PRIVATE = f'[registry]\nauth_required = true\nlogin_url = "{LOGIN_URL}"\n'


def test_cargo_uses_a_private_registry_only_with_a_token(tmp_path: Path) -> None:
    with run_service(tmp_path, issuers=[], extra_config=PRIVATE) as svc:
        index = f"sparse+{svc.url}/index/"
        work = tmp_path / "work"
        work.mkdir()
        registry_cli(svc, "user", "add", "alice")
        alice = registry_cli(
            svc, "token", "create", "--user", "alice", "--scope", "publish-new",
            "--scope", "publish-update", "--scope", "manage-tokens",
        )  # fmt: skip
        reader = registry_cli(svc, "token", "create", "--user", "alice", "--scope", "read")

        # Anonymous: cargo's 401 challenge.
        response = httpx.get(f"{svc.url}/index/config.json")
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == f'Cargo login_url="{LOGIN_URL}"'

        cargo = Cargo(tmp_path / "publisher", index)
        base = make_package(work, "pv-base", "1.0.0")
        cargo.ok(base, "publish", "--registry", "trustpub", token=alice)
        app = make_package(
            work,
            "pv-app",
            "0.1.0",
            deps='pv-base = { version = "1", registry = "trustpub" }\n',
            code="pub fn double() -> u32 { pv_base::answer() * 2 }\n",
        )
        # Verified: cargo fetches and builds the dependency through the token.
        cargo.ok(app, "publish", "--registry", "trustpub", token=alice)

        # A build machine with a read-only token fetches and builds.
        consumer = make_package(
            work, "consumer", "0.0.0", deps='pv-app = { version = "0.1", registry = "trustpub" }\n'
        )
        builder = Cargo(tmp_path / "builder", index)
        built = builder.ok(consumer, "build", token=reader)
        assert "Compiling pv-base v1.0.0" in built
        assert "Compiling pv-app v0.1.0" in built
        # ...but cannot publish.
        refused = make_package(work, "pv-base", "1.1.0")
        stderr = builder.fails(refused, "publish", "--registry", "trustpub", "--no-verify",
                               token=reader)  # fmt: skip
        assert "does not have the `publish-update` scope" in stderr

        # Without a token: cargo's own message (it read the 401 challenge).
        stranger = Cargo(tmp_path / "stranger", index)
        stderr = stranger.fails(consumer, "fetch")
        assert "no token found for `trustpub`, please run `cargo login --registry trustpub`" in (
            stderr
        )
        # With a wrong one: cargo says the registry rejected it.
        stderr = stranger.fails(consumer, "fetch", token="tpreg_" + "A" * 40)
        assert "token rejected for `trustpub`" in stderr, stderr

        # A token created over HTTP publishes until it is revoked.
        made = httpx.put(
            f"{svc.url}/api/v1/me/tokens",
            json={"api_token": {"name": "ci", "endpoint_scopes": ["publish-update"],
                                "crate_scopes": ["pv-*"]}},
            headers={"Authorization": alice},
        )  # fmt: skip
        assert made.status_code == 200, made.text
        created = made.json()["api_token"]
        update = make_package(work, "pv-base", "1.2.0")
        cargo.ok(update, "publish", "--registry", "trustpub", "--no-verify",
                 token=created["token"])  # fmt: skip
        revoked = httpx.delete(
            f"{svc.url}/api/v1/me/tokens/{created['id']}", headers={"Authorization": alice}
        )
        assert revoked.status_code == 200
        again = make_package(work, "pv-base", "1.3.0")
        stderr = cargo.fails(again, "publish", "--registry", "trustpub", "--no-verify",
                             token=created["token"])  # fmt: skip
        assert "token rejected for `trustpub`" in stderr or "invalid, expired or revoked" in (
            stderr
        ), stderr
