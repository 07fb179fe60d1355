"""JWT lifetime and NumericDate magnitudes, and text that is not valid Unicode."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import AUDIENCE, github_claims, gitlab_claims, make_signing_key
from tests.oidc.conftest import GITHUB, GITLAB, NOW, OIDCEnv
from trustpub.config import load_settings
from trustpub.errors import ConfigurationError, InvalidJWT
from trustpub.oidc.verify import DEFAULT_MAX_LIFETIME, MAX_NUMERIC_DATE, Verifier

pytestmark = pytest.mark.anyio

ONE_MONTH = 2_629_746  # GitLab's cap on a job timeout (one month, as Rails counts it)


def claims(**overrides: Any) -> dict[str, Any]:
    base = github_claims(iat=NOW, nbf=NOW - 300, exp=NOW + 300)
    base.update(overrides)
    return base


async def refusal(env: OIDCEnv, payload: dict[str, Any]) -> str:
    with pytest.raises(InvalidJWT) as exc:
        await env.verifier.verify(env.signing_key.sign(payload))
    detail = exc.value.detail
    assert detail.startswith("Failed to decode JWT")
    detail.encode("utf-8")
    return detail


async def test_a_github_token_of_300_seconds_passes(env: OIDCEnv) -> None:
    await env.verifier.verify(env.signing_key.sign(claims()))


async def test_a_gitlab_token_living_for_gitlabs_longest_job_timeout_passes(env: OIDCEnv) -> None:
    gitlab_key = make_signing_key("gitlab-key-1")
    token = gitlab_key.sign(gitlab_claims(iat=NOW, nbf=NOW, exp=NOW + ONE_MONTH + 300))
    verified = await env.verifier.verify(token)
    assert verified.expires_at - verified.issued_at <= DEFAULT_MAX_LIFETIME


async def test_a_token_living_longer_than_the_maximum_is_refused(env: OIDCEnv) -> None:
    detail = await refusal(env, claims(exp=NOW + DEFAULT_MAX_LIFETIME + 1))
    assert "lifetime" in detail
    # Exactly the maximum is still accepted.
    await env.verifier.verify(env.signing_key.sign(claims(exp=NOW + DEFAULT_MAX_LIFETIME)))


async def test_the_maximum_lifetime_is_configurable(env: OIDCEnv) -> None:
    strict = Verifier([GITHUB, GITLAB], AUDIENCE, env.keys, max_lifetime=120, clock=env.wall_clock)
    with pytest.raises(InvalidJWT) as exc:
        await strict.verify(env.signing_key.sign(claims()))
    assert "token lifetime (`exp` - `iat`) of 300 s exceeds the maximum of 120 s" in (
        exc.value.detail
    )


async def test_exp_not_after_iat_is_refused(env: OIDCEnv) -> None:
    assert "after `iat`" in await refusal(env, claims(exp=NOW, iat=NOW))
    assert "after `iat`" in await refusal(env, claims(exp=NOW - 10, iat=NOW))


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("exp", 10**20),
        ("exp", 2**63),
        ("exp", -1),
        ("iat", 10**20),
        ("iat", -(10**20)),
        ("iat", -1),
        ("nbf", 10**20),
        ("nbf", -(10**20)),
        ("exp", 1.7e9 + 300.5),
        ("iat", float(NOW)),
        ("nbf", float(NOW)),
        ("exp", True),
        ("iat", False),
        ("nbf", True),
        ("exp", "1700000300"),
        ("iat", [NOW]),
    ],
)
async def test_absurd_numeric_dates_are_a_bad_jwt(env: OIDCEnv, name: str, value: Any) -> None:
    detail = await refusal(env, claims(**{name: value}))
    assert f"`{name}`" in detail


@pytest.mark.parametrize("name", ["environment", "jti", "repository", "ref", "sub"])
async def test_a_lone_surrogate_in_a_signed_claim_is_a_bad_jwt(env: OIDCEnv, name: str) -> None:
    detail = await refusal(env, claims(**{name: "prod\ud800"}))
    assert "\\ud800" in detail


async def test_a_lone_surrogate_in_a_nested_claim_or_a_key_is_a_bad_jwt(env: OIDCEnv) -> None:
    await refusal(env, claims(extra={"a": ["x", "\udfff"]}))
    await refusal(env, claims(**{"k\ud800": "v"}))


def test_max_jwt_lifetime_setting() -> None:
    assert load_settings(environ={}).max_jwt_lifetime == DEFAULT_MAX_LIFETIME
    assert load_settings(environ={"TRUSTPUB_MAX_JWT_LIFETIME": "3600"}).max_jwt_lifetime == 3600
    assert load_settings(environ={"TRUSTPUB_MAX_JWT_LIFETIME": "2d"}).max_jwt_lifetime == 172800
    with pytest.raises(ConfigurationError):
        load_settings(environ={"TRUSTPUB_MAX_JWT_LIFETIME": "0"})


def test_max_lifetime_must_be_positive(env: OIDCEnv) -> None:
    for bad in (0, -1):
        with pytest.raises(
            ConfigurationError, match=r"^the maximum JWT lifetime must be positive$"
        ):
            Verifier([GITHUB], AUDIENCE, env.keys, max_lifetime=bad)
    Verifier([GITHUB], AUDIENCE, env.keys, max_lifetime=1)


async def test_numeric_dates_range_from_zero_to_the_year_9999(env: OIDCEnv) -> None:
    # The range itself, at both ends: 0 and MAX_NUMERIC_DATE are NumericDates.
    await env.verifier.verify(env.signing_key.sign(claims(nbf=0)))
    assert "token is not yet valid (nbf)" in await refusal(env, claims(nbf=MAX_NUMERIC_DATE))
    for name, value in (("nbf", -1), ("iat", -1), ("nbf", MAX_NUMERIC_DATE + 1)):
        assert f"claim `{name}` is out of range" in await refusal(env, claims(**{name: value}))
