"""Rate limits at the HTTP API, on both stores: 429 with Retry-After."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.api.conftest import CREDENTIAL, Service, ServiceFactory
from trustpub.config import load_settings
from trustpub.errors import ConfigurationError
from trustpub.ratelimit import Limit, RateLimits
from trustpub.store import RedisStore


def limited(**limits: Limit | None) -> RateLimits:
    off = RateLimits(None, None, None)
    return RateLimits(**{**{n: getattr(off, n) for n in off.__slots__}, **limits})


def test_exchanges_per_client_address(service_factory: ServiceFactory) -> None:
    service = service_factory(
        rate_limits=limited(exchange_per_client=Limit("exchange-client", 3, 3600))
    )
    for _ in range(3):
        assert service.exchange(service.github_jwt()).status_code == 200
    response = service.exchange(service.github_jwt())
    assert response.status_code == 429
    assert int(response.headers["retry-after"]) > 0
    assert "Too many token exchanges from this address" in response.json()["errors"][0]["detail"]


def test_exchanges_per_repository(service_factory: ServiceFactory) -> None:
    service = service_factory(
        rate_limits=limited(exchange_per_repository=Limit("exchange-repository", 2, 3600))
    )
    assert service.exchange(service.github_jwt()).status_code == 200
    assert service.exchange(service.github_jwt(repository="Octo-Org/Octo-Lib")).status_code == 200
    response = service.exchange(service.github_jwt())
    assert response.status_code == 429
    assert "for this repository" in response.json()["errors"][0]["detail"]
    assert "retry-after" in response.headers


def test_an_unverified_jwt_does_not_spend_a_repositorys_budget(
    service_factory: ServiceFactory,
) -> None:
    service = service_factory(
        rate_limits=limited(exchange_per_repository=Limit("exchange-repository", 1, 3600))
    )
    for _ in range(5):
        forged = service.github_jwt()[:-4] + "AAAA"
        assert service.exchange(forged).status_code == 400
    assert service.exchange(service.github_jwt()).status_code == 200


def test_a_release_of_200_crates_passes_the_default_limits(service: Service) -> None:
    for _ in range(200):
        assert service.exchange(service.github_jwt()).status_code == 200


def test_failed_introspection_credentials_block_the_address(
    service_factory: ServiceFactory,
) -> None:
    service = service_factory(
        rate_limits=limited(failed_auth_per_client=Limit("failed-auth-client", 2, 3600))
    )
    token = service.token()

    def introspect(credential: str) -> int:
        response = service.client.post(
            "/api/v1/trusted_publishing/introspect",
            json={"token": token},
            headers={"Authorization": f"Bearer {credential}"},
        )
        status: int = response.status_code
        return status

    assert introspect(CREDENTIAL) == 200  # success costs nothing
    assert introspect("wrong-credential-0123456789") == 401
    assert introspect("wrong-credential-9876543210") == 401
    # Now refused before the credential is even checked, the right one included.
    response = service.client.post(
        "/api/v1/trusted_publishing/introspect",
        json={"token": token},
        headers={"Authorization": f"Bearer {CREDENTIAL}"},
    )
    assert response.status_code == 429
    assert "retry-after" in response.headers


def test_rate_limits_are_read_from_the_configuration(tmp_path: Path) -> None:
    config = tmp_path / "trustpub.toml"
    config.write_text(
        '[rate_limits]\nexchange_per_client = "1/1m"\nfailed_auth_per_client = "off"\n'
    )
    limits = load_settings(config, environ={}).rate_limits
    assert limits.exchange_per_client == Limit("exchange-client", 1, 60)
    assert limits.failed_auth_per_client is None
    assert limits.exchange_per_repository == RateLimits().exchange_per_repository
    config.write_text('[rate_limits]\nexchange_per_client = "\u00b2/1m"\n')
    with pytest.raises(ConfigurationError, match=r"rate_limits\.exchange_per_client"):
        load_settings(config, environ={})


def test_introspection_refusals_keep_their_order(service_factory: ServiceFactory) -> None:
    # 429 (the address failed too often) before 401 (the credential) before 400 (the body).
    service = service_factory(
        rate_limits=limited(failed_auth_per_client=Limit("failed-auth-client", 1, 3600))
    )
    token = service.token()

    def introspect(credential: str, body: bytes) -> int:
        response = service.client.post(
            "/api/v1/trusted_publishing/introspect",
            content=body,
            headers={"Authorization": f"Bearer {credential}", "Content-Type": "application/json"},
        )
        status: int = response.status_code
        return status

    good = json.dumps({"token": token}).encode()
    assert introspect(CREDENTIAL, b"{not json") == 400
    assert introspect(CREDENTIAL, b'{"token": "not-a-token"}') == 200  # inactive, not refused
    assert introspect("wrong-credential-0123456789", b"{not json") == 401
    # The address is now over its limit: 429 whatever else is wrong.
    assert introspect("wrong-credential-0123456789", b"{not json") == 429
    assert introspect(CREDENTIAL, b"{not json") == 429
    assert introspect(CREDENTIAL, b'{"token": "not-a-token"}') == 429
    assert introspect(CREDENTIAL, good) == 429


def test_introspection_is_one_round_trip_on_redis(
    service_factory: ServiceFactory, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = service_factory(
        rate_limits=limited(failed_auth_per_client=Limit("failed-auth-client", 5, 3600))
    )
    token = service.token()
    store = service.services().store
    if not store_url.startswith("redis"):
        # Limits kept in this process: the gate has no script to send with the lookup.
        assert service.services().limiter.auth_gate("127.0.0.1").call is None
        assert service.introspect(token).json()["active"] is True
        return
    assert isinstance(store, RedisStore)
    trips: list[int] = []  # the number of replies of each send
    original = store._pipeline.submit

    def counted(data: bytes, replies: int = 1) -> Any:
        trips.append(replies)
        return original(data, replies)

    monkeypatch.setattr(store._pipeline, "submit", counted)
    response = service.introspect(token)
    assert response.status_code == 200
    assert response.json()["active"] is True
    assert trips == [2]  # the gate's script and the lookup, in one send
