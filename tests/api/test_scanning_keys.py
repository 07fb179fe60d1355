"""GitHub's secret scanning key set: fetch rules, caching and refusals, against a real key
server on loopback and an injected clock."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.github_keys import GitHubKey, KeyServer
from trustpub.api.scanning_keys import ScanningKeys, UnknownKey
from trustpub.config import load_settings
from trustpub.errors import ConfigurationError, KeySetUnavailable
from trustpub.oidc.issuers import check_key_url

pytestmark = pytest.mark.anyio


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def key_server() -> Iterator[KeyServer]:
    server = KeyServer()
    server.keys.append(GitHubKey("current"))
    yield server
    server.stop()


@pytest.fixture
async def http(anyio_backend: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(follow_redirects=False, trust_env=False) as client:
        yield client


def keys_for(
    http: httpx.AsyncClient, server: KeyServer, clock: Clock, *, timeout: float = 5.0
) -> ScanningKeys:
    return ScanningKeys(
        http,
        server.url,
        development=True,
        max_age=3600,
        refresh_cooldown=60,
        timeout=timeout,
        clock=clock,
    )


async def test_the_key_set_is_fetched_once_and_cached(
    http: httpx.AsyncClient, key_server: KeyServer
) -> None:
    keys = keys_for(http, key_server, Clock())
    first = await keys.get("current")
    assert await keys.get("current") is first
    assert key_server.requests == 1


async def test_concurrent_requests_share_one_fetch(
    http: httpx.AsyncClient, key_server: KeyServer
) -> None:
    keys = keys_for(http, key_server, Clock())
    key_server.delay = 0.2
    found = await asyncio.gather(*(keys.get("current") for _ in range(10)))
    assert len({id(k) for k in found}) == 1
    assert key_server.requests == 1


async def test_an_unknown_identifier_refetches_once_per_cooldown(
    http: httpx.AsyncClient, key_server: KeyServer
) -> None:
    clock = Clock()
    keys = keys_for(http, key_server, clock)
    await keys.get("current")
    for _ in range(3):
        with pytest.raises(UnknownKey):
            await keys.get("unknown")
    assert key_server.requests == 2  # the load, then one refetch
    key_server.keys.append(GitHubKey("unknown"))
    clock.now += 59
    with pytest.raises(UnknownKey):
        await keys.get("unknown")
    clock.now += 1
    await keys.get("unknown")
    assert key_server.requests == 3


async def test_a_stale_set_is_refetched_and_kept_when_the_refetch_fails(
    http: httpx.AsyncClient, key_server: KeyServer
) -> None:
    clock = Clock()
    keys = keys_for(http, key_server, clock)  # max_age 3600
    key = await keys.get("current")
    clock.now += 3600
    key_server.status = 500
    assert await keys.get("current") is key  # the stale set keeps serving
    assert key_server.requests == 2
    assert await keys.get("current") is key  # no retry within the cooldown
    assert key_server.requests == 2
    clock.now += 60
    key_server.status = 200
    assert await keys.get("current") is not key  # refreshed
    assert key_server.requests == 3


async def test_a_key_server_that_never_answered_is_unavailable(
    http: httpx.AsyncClient, key_server: KeyServer
) -> None:
    clock = Clock()
    keys = keys_for(http, key_server, clock)
    key_server.status = 503
    with pytest.raises(KeySetUnavailable):
        await keys.get("current")
    key_server.status = 200
    with pytest.raises(KeySetUnavailable):  # failed within the cooldown: not retried
        await keys.get("current")
    clock.now += 60
    await keys.get("current")
    assert key_server.requests == 2


async def test_a_slow_key_server_times_out(http: httpx.AsyncClient, key_server: KeyServer) -> None:
    keys = keys_for(http, key_server, Clock(), timeout=0.2)
    key_server.delay = 1.0
    with pytest.raises(KeySetUnavailable):
        await keys.get("current")


async def test_a_redirect_is_not_followed(http: httpx.AsyncClient, key_server: KeyServer) -> None:
    target = KeyServer()
    target.keys.append(GitHubKey("current"))
    try:
        key_server.location = target.url
        with pytest.raises(KeySetUnavailable):
            await keys_for(http, key_server, Clock()).get("current")
        assert target.requests == 0
    finally:
        target.stop()


async def test_keys_of_another_shape_are_skipped(
    http: httpx.AsyncClient, key_server: KeyServer
) -> None:
    good = key_server.keys[0].entry()
    entries = [{"key_identifier": 1}, "x", {"key_identifier": "k", "key": 2}, good]
    key_server.body = json.dumps({"public_keys": entries}).encode()
    keys = keys_for(http, key_server, Clock())
    await keys.get("current")
    with pytest.raises(UnknownKey):
        await keys.get("k")


@pytest.mark.parametrize(
    ("url", "development"),
    [
        ("http://api.github.com/meta/public_keys/secret_scanning", False),
        ("http://127.0.0.1:9/keys", False),
        ("http://keys.example.com/keys", True),  # development, but not loopback
        ("ftp://127.0.0.1/keys", True),
        ("https://user:pw@api.github.com/keys", False),
        ("/keys", False),
    ],
)
def test_only_https_or_a_development_loopback_url_is_accepted(
    url: str, development: bool, tmp_path: Path
) -> None:
    with pytest.raises(ConfigurationError):
        check_key_url(url, development)
    config = tmp_path / "trustpub.toml"
    config.write_text(
        f'[secret_scanning]\nkey_url = "{url}"\ndevelopment = {str(development).lower()}\n'
    )
    with pytest.raises(ConfigurationError, match=r"secret_scanning\.key_url"):
        load_settings(config, environ={})


def test_the_configuration_is_read(tmp_path: Path) -> None:
    config = tmp_path / "trustpub.toml"
    config.write_text(
        "[secret_scanning]\n"
        'key_url = "http://127.0.0.1:8000/keys"\n'
        "development = true\n"
        'refresh_cooldown = "5m"\n'
        "enabled = false\n"
    )
    scanning = load_settings(config, environ={}).secret_scanning
    assert scanning.key_url == "http://127.0.0.1:8000/keys"
    assert (scanning.development, scanning.enabled, scanning.refresh_cooldown) == (
        True,
        False,
        300,
    )
    config.write_text("[secret_scanning]\nkey = 1\n")
    with pytest.raises(ConfigurationError, match="unknown key"):
        load_settings(config, environ={})
    config.write_text('[secret_scanning]\nenabled = "yes"\n')
    with pytest.raises(ConfigurationError, match="enabled"):
        load_settings(config, environ={})
