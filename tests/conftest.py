"""Shared fixtures: real RSA keys, real JWTs signed with pyjwt, claim-set factories."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import settings

from tests.isolation import sweep
from trustpub.oidc.issuers import GITHUB_ISSUER, GITLAB_ISSUER

AUDIENCE = "registry.example"

# No per-example deadline: on a loaded two-core CI machine a slow example is not a bug.
settings.register_profile("trustpub", deadline=None, print_blob=True)
settings.load_profile("trustpub")


@pytest.fixture(scope="session", autouse=True)
def _nothing_left_behind() -> Iterator[None]:
    """The session fails when its tests left Redis keys, PostgreSQL databases or
    child processes behind (tests/isolation.py); they are removed either way. Set up
    first, so torn down last: after every other session fixture has cleaned up."""
    yield
    left = sweep()
    assert not left, "tests left these behind (now removed): " + "; ".join(left)


@pytest.fixture(autouse=True)
def _no_trustpub_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests see no TRUSTPUB_* variables from the shell that runs them."""
    import os

    for name in list(os.environ):
        if name.startswith("TRUSTPUB_"):
            monkeypatch.delenv(name)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass(frozen=True)
class SigningKey:
    """An RSA key pair with its key id, as an issuer would hold it."""

    kid: str
    private: rsa.RSAPrivateKey

    def jwk(self) -> dict[str, Any]:
        """The public half as a JWK, the way issuers publish it."""
        data: dict[str, Any] = jwt.algorithms.RSAAlgorithm.to_jwk(
            self.private.public_key(), as_dict=True
        )
        data.update({"kid": self.kid, "use": "sig", "alg": "RS256"})
        return data

    def sign(self, claims: dict[str, Any], headers: dict[str, Any] | None = None) -> str:
        merged = {"kid": self.kid}
        merged.update(headers or {})
        return jwt.encode(claims, self.private, algorithm="RS256", headers=merged)


_KEYS: dict[str, rsa.RSAPrivateKey] = {}


def make_signing_key(kid: str) -> SigningKey:
    """Keys are generated once per test session per kid (RSA generation is slow)."""
    if kid not in _KEYS:
        _KEYS[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return SigningKey(kid, _KEYS[kid])


@pytest.fixture
def signing_key() -> SigningKey:
    return make_signing_key("test-key-1")


@pytest.fixture
def other_signing_key() -> SigningKey:
    return make_signing_key("test-key-2")


def github_claims(**overrides: Any) -> dict[str, Any]:
    """A realistic GitHub Actions claim set, valid now; keyword arguments override."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "actor": "octocat",
        "actor_id": "583231",
        "aud": AUDIENCE,
        "base_ref": "",
        "event_name": "push",
        "exp": now + 300,
        "head_ref": "",
        "iat": now,
        "iss": GITHUB_ISSUER,
        "job_workflow_ref": "octo-org/octo-lib/.github/workflows/release.yml@refs/tags/v1.2.3",
        "job_workflow_sha": "8c13a5f0d1c8a9e6b1f2",
        "jti": str(uuid.uuid4()),
        "nbf": now - 300,
        "ref": "refs/tags/v1.2.3",
        "ref_protected": "true",
        "ref_type": "tag",
        "repository": "octo-org/octo-lib",
        "repository_id": "632596897",
        "repository_owner": "octo-org",
        "repository_owner_id": "131804563",
        "repository_visibility": "public",
        "run_attempt": "1",
        "run_id": "21561244697",
        "run_number": "306",
        "runner_environment": "github-hosted",
        "sha": "8c13a5f0d1c8a9e6b1f2",
        "sub": "repo:octo-org/octo-lib:ref:refs/tags/v1.2.3",
        "workflow": "Release",
        "workflow_ref": "octo-org/octo-lib/.github/workflows/release.yml@refs/tags/v1.2.3",
        "workflow_sha": "8c13a5f0d1c8a9e6b1f2",
    }
    claims.update(overrides)
    return claims


def gitlab_claims(**overrides: Any) -> dict[str, Any]:
    """A realistic GitLab CI id_token claim set, valid now; keyword arguments override."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "aud": AUDIENCE,
        "ci_config_ref_uri": "gitlab.com/octo-group/sub/octo-lib//.gitlab-ci.yml@refs/tags/v1.2.3",
        "ci_config_sha": "8c13a5f0d1c8a9e6b1f2",
        "deployment_tier": "production",
        "environment": "release",
        "environment_protected": "true",
        "exp": now + 300,
        "iat": now,
        "iss": GITLAB_ISSUER,
        "job_id": "9876543210",
        "jti": str(uuid.uuid4()),
        "namespace_id": "4242",
        "namespace_path": "octo-group/sub",
        "nbf": now - 5,
        "pipeline_id": "123456",
        "pipeline_source": "push",
        "project_id": "777",
        "project_path": "octo-group/sub/octo-lib",
        "ref": "v1.2.3",
        "ref_path": "refs/tags/v1.2.3",
        "ref_protected": "true",
        "ref_type": "tag",
        "runner_environment": "gitlab-hosted",
        "runner_id": 12345,
        "sha": "8c13a5f0d1c8a9e6b1f2",
        "sub": "project_path:octo-group/sub/octo-lib:ref_type:tag:ref:v1.2.3",
        "user_id": "31",
        "user_login": "octocat",
    }
    claims.update(overrides)
    return claims


ClaimsFactory = Callable[..., dict[str, Any]]


@pytest.fixture
def make_github_claims() -> ClaimsFactory:
    return github_claims


@pytest.fixture
def make_gitlab_claims() -> ClaimsFactory:
    return gitlab_claims
