"""A running service behind Starlette's TestClient, on either store.

Keys come from a fake GitHub/GitLab issuer behind httpx.MockTransport; the Redis store
uses the real server at 127.0.0.1:6379 under a key prefix unique to the test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from starlette.testclient import TestClient

from tests.conftest import AUDIENCE, SigningKey, github_claims, gitlab_claims
from tests.isolation import new_redis_prefix
from tests.oidc.conftest import FakeIssuers
from trustpub.api.app import create_app
from trustpub.api.state import Services
from trustpub.config import Settings
from trustpub.oidc.issuers import DEFAULT_ISSUERS

REDIS_URL = "redis://127.0.0.1:6379/0"
CREDENTIAL = "registry-credential-0123456789"

GITHUB_POLICY = """
[[policy]]
name = "release"
provider = "github"
crates = ["octo-lib", "octo-lib-macros"]
repository = "octo-org/octo-lib"
repository_owner_id = "131804563"
workflow = "release.yml"
operations = ["publish-update", "yank"]
"""

GITLAB_POLICY = """
[[policy]]
name = "gitlab-release"
provider = "gitlab"
crates = ["octo-lib"]
project_path = "octo-group/sub/octo-lib"
workflow = ".gitlab-ci.yml"
namespace_id = "4242"
"""


@dataclass
class Service:
    client: TestClient
    issuers: FakeIssuers
    key: SigningKey
    settings: Settings

    def github_jwt(self, **overrides: Any) -> str:
        return self.key.sign(github_claims(**overrides))

    def gitlab_jwt(self, **overrides: Any) -> str:
        return self.key.sign(gitlab_claims(**overrides))

    def exchange(self, jwt: str) -> httpx.Response:
        response: httpx.Response = self.client.post(
            "/api/v1/trusted_publishing/tokens", json={"jwt": jwt}
        )
        return response

    def token(self, **overrides: Any) -> str:
        response = self.exchange(self.github_jwt(**overrides))
        assert response.status_code == 200, response.text
        token: str = response.json()["token"]
        return token

    def introspect(self, token: str) -> httpx.Response:
        response: httpx.Response = self.client.post(
            "/api/v1/trusted_publishing/introspect",
            json={"token": token},
            headers={"Authorization": f"Bearer {CREDENTIAL}"},
        )
        return response

    def services(self) -> Services:
        services: Services = self.client.app.state.services  # type: ignore[attr-defined]
        return services

    def write_policy(self, name: str, text: str) -> Path:
        path = self.settings.policy_dir / name
        path.write_text(text)
        return path


def _redis_cleanup(prefix: str) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=500))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture(params=["sqlite", "redis"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/store.db"
        return
    prefix = new_redis_prefix()
    # The shared test server runs without persistence: opt in explicitly.
    yield f"{REDIS_URL}?prefix={prefix}&allow_volatile=1"
    _redis_cleanup(prefix)


ServiceFactory = Callable[..., Service]


@pytest.fixture
def service_factory(
    tmp_path: Path, store_url: str, signing_key: SigningKey
) -> Iterator[ServiceFactory]:
    clients: list[TestClient] = []

    def start(policies: str = GITHUB_POLICY, issuer_status: int = 200, **changes: Any) -> Service:
        policy_dir = tmp_path / "policies"
        policy_dir.mkdir(exist_ok=True)
        (policy_dir / "policies.toml").write_text(policies)
        settings = replace(
            Settings(),
            audience=AUDIENCE,
            issuers=DEFAULT_ISSUERS,
            policy_dir=policy_dir,
            store_url=store_url,
            data_dir=tmp_path / "data",
            introspection_credentials=(CREDENTIAL,),
            policy_reload_interval=0,
            registry_enabled=False,
        )
        settings = replace(settings, **changes)
        fake = FakeIssuers()
        for issuer in DEFAULT_ISSUERS:
            fake.publish(issuer, signing_key)
        # Key sets are fetched in the background from start-up: an issuer that must
        # fail does so from the start.
        fake.status = issuer_status
        http = httpx.AsyncClient(transport=httpx.MockTransport(fake))
        client = TestClient(create_app(settings, http_client=http), raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        return Service(client, fake, signing_key, settings)

    yield start
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def service(service_factory: ServiceFactory) -> Service:
    return service_factory()
