"""Fixtures for OIDC tests: a fake issuer behind httpx.MockTransport, and fake clocks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.conftest import AUDIENCE, SigningKey, make_signing_key
from trustpub.oidc.issuers import GITHUB_ISSUER, GITLAB_ISSUER, Issuer
from trustpub.oidc.keys import KeySets
from trustpub.oidc.verify import Verifier

# Wall-clock time the tokens in these tests are issued at (the verifier's clock).
NOW = 1_700_000_000

GITHUB = Issuer(GITHUB_ISSUER, "github")
GITLAB = Issuer(GITLAB_ISSUER, "gitlab")


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeIssuers:
    """An httpx.MockTransport handler serving discovery documents and key sets.

    Counts every request; tests change ``jwks``, ``discovery`` or ``status`` between calls.
    """

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.discovery: dict[str, dict[str, Any]] = {}
        self.jwks: dict[str, Any] = {}
        self.status = 200
        self.error: Exception | None = None
        self.headers: dict[str, str] = {}

    def publish(self, issuer: Issuer, *keys: SigningKey) -> None:
        self.discovery[issuer.url] = {
            "issuer": issuer.url,
            "jwks_uri": f"{issuer.url}/.well-known/jwks",
        }
        self.set_keys(issuer, *keys)

    def set_keys(self, issuer: Issuer, *keys: SigningKey) -> None:
        self.jwks[f"{issuer.url}/.well-known/jwks"] = {"keys": [key.jwk() for key in keys]}

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        # Yield to the event loop, as a real network round trip would, so concurrent
        # callers really overlap.
        await asyncio.sleep(0)
        if self.error is not None:
            raise self.error
        if self.status != 200:
            return httpx.Response(self.status, headers=self.headers)
        url = str(request.url)
        if url.endswith("/.well-known/openid-configuration"):
            document = self.discovery.get(url.removesuffix("/.well-known/openid-configuration"))
            if document is not None:
                return httpx.Response(200, json=document, headers=self.headers)
        elif url in self.jwks:
            return httpx.Response(200, json=self.jwks[url], headers=self.headers)
        return httpx.Response(404)

    def count(self, suffix: str) -> int:
        return sum(1 for r in self.requests if str(r.url).endswith(suffix))

    @property
    def discoveries(self) -> int:
        return self.count("/.well-known/openid-configuration")

    @property
    def jwks_fetches(self) -> int:
        return self.count("/.well-known/jwks")


@dataclass
class OIDCEnv:
    """Everything a verification test touches."""

    fake: FakeIssuers
    keys: KeySets
    verifier: Verifier
    key_clock: FakeClock
    wall_clock: FakeClock
    signing_key: SigningKey
    other_key: SigningKey


@pytest.fixture
def fake_issuers() -> FakeIssuers:
    fake = FakeIssuers()
    fake.publish(GITHUB, make_signing_key("test-key-1"))
    fake.publish(GITLAB, make_signing_key("gitlab-key-1"))
    return fake


@pytest.fixture
async def http(anyio_backend: str, fake_issuers: FakeIssuers) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.MockTransport(fake_issuers)) as client:
        yield client


KeySetsFactory = Callable[..., KeySets]


@pytest.fixture
def key_clock() -> FakeClock:
    return FakeClock(1000.0)


@pytest.fixture
def make_key_sets(http: httpx.AsyncClient, key_clock: FakeClock) -> KeySetsFactory:
    def make(**options: Any) -> KeySets:
        options.setdefault("clock", key_clock)
        return KeySets(http, **options)

    return make


@pytest.fixture
def env(
    fake_issuers: FakeIssuers,
    make_key_sets: KeySetsFactory,
    key_clock: FakeClock,
    signing_key: SigningKey,
    other_signing_key: SigningKey,
) -> OIDCEnv:
    keys = make_key_sets()
    wall_clock = FakeClock(NOW)
    verifier = Verifier([GITHUB, GITLAB], AUDIENCE, keys, clock=wall_clock)
    return OIDCEnv(
        fake=fake_issuers,
        keys=keys,
        verifier=verifier,
        key_clock=key_clock,
        wall_clock=wall_clock,
        signing_key=signing_key,
        other_key=other_signing_key,
    )
