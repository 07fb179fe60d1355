"""The registry on its own, validating trustpub tokens through the introspection
endpoint of a live ``trustpub serve`` (the wire shape both sides must agree on)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from tests.live import run_service
from tests.registry.helpers import body_for
from trustpub.devissuer import DevIssuer, serve_in_thread
from trustpub.registry import Registry, create_registry_app
from trustpub.registry.auth import generate_user_token, user_token_hash

pytestmark = pytest.mark.slow

CREDENTIAL = "registry-credential-0123456789"

POLICIES = """
[[policy]]
name = "release"
provider = "github"
issuer = "{issuer}"
crates = ["demo", "fresh"]
repository = "octo-org/octo-lib"
repository_owner_id = "131804563"
workflow = "release.yml"
operations = ["publish-update", "publish-new"]
owners = ["alice"]
"""


def introspect(url: str, token: str) -> dict[str, Any]:
    response = httpx.post(
        f"{url}/api/v1/trusted_publishing/introspect",
        json={"token": token},
        headers={"Authorization": f"Bearer {CREDENTIAL}"},
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def wait_for_owners(
    url: str, issuer: DevIssuer, audience: str, expected: dict[str, list[str]]
) -> None:
    """Mint fresh tokens until one carries ``expected``: the service reloaded its policies."""
    deadline = time.monotonic() + 20
    while True:
        jwt = issuer.mint(audience)
        token = httpx.post(f"{url}/api/v1/trusted_publishing/tokens", json={"jwt": jwt}).json()
        owners = introspect(url, token["token"])["new_crate_owners"]
        if owners == expected:
            return
        assert time.monotonic() < deadline, f"policies not reloaded; owners still {owners}"
        time.sleep(0.2)


@pytest.fixture
def issuer() -> Iterator[DevIssuer]:
    with serve_in_thread(provider="github") as running:
        yield running


def test_a_standalone_registry_accepts_tokens_through_introspection(
    tmp_path: Path, issuer: DevIssuer
) -> None:
    extra = f'introspection_credentials = ["{CREDENTIAL}"]\n[registry]\nenabled = false\n'
    with run_service(
        tmp_path,
        issuers=[issuer.trustpub_issuer()],
        policies=POLICIES.format(issuer=issuer.url),
        extra_config=extra,
    ) as svc:
        # The service itself no longer serves a registry.
        assert httpx.get(f"{svc.url}/index/config.json").status_code == 404
        app = create_registry_app(
            tmp_path / "standalone", "http://registry.test", trustpub_url=svc.url,
            credential=CREDENTIAL,
        )  # fmt: skip
        with TestClient(app) as client:
            registry: Registry = app.state.registry
            registry.db.add_user("alice")
            token = generate_user_token()
            registry.db.add_token("alice", "t", user_token_hash(token), ["publish-new"], [], None)
            put = "/api/v1/crates/new"
            assert (
                client.put(
                    put, content=body_for("demo", "1.0.0"), headers={"Authorization": token}
                ).status_code
                == 200
            )

            jwt = issuer.mint(svc.audience)
            minted = httpx.post(
                f"{svc.url}/api/v1/trusted_publishing/tokens", json={"jwt": jwt}
            ).json()["token"]
            headers = {"Authorization": minted}
            response = client.put(put, content=body_for("demo", "1.1.0"), headers=headers)
            assert response.status_code == 200, response.text
            version = client.get("/api/v1/crates/demo/1.1.0").json()["version"]
            assert version["trustpub_data"]["repository"] == "octo-org/octo-lib"

            # The policy now names another owner. The token minted before keeps the
            # owners recorded at minting; only tokens minted after the reload change.
            policy_file = tmp_path / "service" / "policies" / "policies.toml"
            policy_file.write_text(
                POLICIES.format(issuer=issuer.url).replace('["alice"]', '["mallory"]')
            )
            wait_for_owners(
                svc.url, issuer, svc.audience, {"demo": ["mallory"], "fresh": ["mallory"]}
            )
            assert introspect(svc.url, minted)["new_crate_owners"] == {
                "demo": ["alice"],
                "fresh": ["alice"],
            }

            # A standalone registry creates a crate through trusted publishing, owned by
            # the owners the introspection answer carries.
            response = client.put(put, content=body_for("fresh", "0.1.0"), headers=headers)
            assert response.status_code == 200, response.text
            owners = client.get("/api/v1/crates/fresh/owners").json()["users"]
            assert [u["login"] for u in owners] == ["alice"]

            httpx.delete(
                f"{svc.url}/api/v1/trusted_publishing/tokens",
                headers={"Authorization": f"Bearer {minted}"},
            )
            response = client.put(put, content=body_for("demo", "1.2.0"), headers=headers)
            assert response.status_code == 403
            assert "invalid, expired or revoked" in response.text

    # With the trustpub service gone, a trustpub token cannot be checked: 503, denied.
    with TestClient(app) as client:
        response = client.put(
            "/api/v1/crates/new", content=body_for("demo", "1.3.0"), headers=headers
        )
        assert response.status_code == 503
