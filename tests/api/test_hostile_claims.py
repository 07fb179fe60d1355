"""Hostile claims end to end, on both stores: a bad JWT (400), never a store error."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.api.conftest import GITLAB_POLICY, Service, ServiceFactory


def assert_bad_jwt(service: Service, **claims: Any) -> str:
    response = service.exchange(service.github_jwt(**claims))
    assert response.status_code == 400, response.text
    detail: str = response.json()["errors"][0]["detail"]
    assert detail.startswith("Failed to decode JWT")
    return detail


@pytest.mark.parametrize(
    "claims",
    [
        {"exp": 10**20},
        {"exp": 2**63 + 5},
        {"iat": -(10**20)},
        {"nbf": 10**20},
        {"exp": 1e20},
        {"iat": True},
    ],
    ids=["exp-1e20", "exp-2^63", "iat-negative", "nbf-1e20", "exp-float", "iat-bool"],
)
def test_absurd_numeric_dates_never_reach_the_store(service: Service, claims: Any) -> None:
    assert_bad_jwt(service, **claims)
    # The store still works afterwards: a real token is exchanged.
    assert service.token()


def test_a_token_longer_than_the_configured_lifetime_is_a_bad_jwt(
    service_factory: ServiceFactory,
) -> None:
    service = service_factory(max_jwt_lifetime=600)
    now = int(time.time())
    assert "lifetime" in assert_bad_jwt(service, iat=now, exp=now + 601)
    assert service.token(iat=now, exp=now + 600)


def test_a_month_long_gitlab_token_is_exchanged(service_factory: ServiceFactory) -> None:

    service = service_factory(GITLAB_POLICY)
    now = int(time.time())
    response = service.exchange(service.gitlab_jwt(iat=now, nbf=now, exp=now + 2_629_746))
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("name", ["environment", "jti", "repository"])
def test_a_lone_surrogate_in_a_signed_claim_is_a_bad_jwt(service: Service, name: str) -> None:
    detail = assert_bad_jwt(service, **{name: "x\ud800"})
    assert "\\ud800" in detail
