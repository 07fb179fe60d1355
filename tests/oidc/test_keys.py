"""KeySets: discovery, capped fetch, cache age, cooldown, staleness, shared fetches."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import gzip
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.conftest import SigningKey, make_signing_key
from tests.oidc.conftest import GITHUB, FakeClock, FakeIssuers, KeySetsFactory
from trustpub.errors import ConfigurationError, InvalidJWT, KeySetUnavailable
from trustpub.oidc.issuers import Issuer
from trustpub.oidc.keys import KeySets, KeySetStatus, parse_jwks

pytestmark = pytest.mark.anyio

KID = "test-key-1"


def b64url_uint(number: int) -> str:
    raw = number.to_bytes((number.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


# -- loading and caching -------------------------------------------------------------


async def test_key_is_loaded_through_discovery_then_jwks_uri(
    make_key_sets: KeySetsFactory, fake_issuers: FakeIssuers, signing_key: SigningKey
) -> None:
    keys = make_key_sets()
    key = await keys.get_key(GITHUB, KID)
    assert key.public_numbers() == signing_key.private.public_key().public_numbers()
    assert [str(r.url) for r in fake_issuers.requests] == [
        "https://token.actions.githubusercontent.com/.well-known/openid-configuration",
        "https://token.actions.githubusercontent.com/.well-known/jwks",
    ]
    # Uncompressed only, so the size cap bounds what is held in memory.
    assert all(r.headers["accept-encoding"] == "identity" for r in fake_issuers.requests)
    assert keys.fetch_outcomes == {(GITHUB.url, "ok"): 1}


async def test_cached_set_is_reused_until_max_age(
    make_key_sets: KeySetsFactory, fake_issuers: FakeIssuers, key_clock: FakeClock
) -> None:
    keys = make_key_sets(max_age=3600)
    await keys.get_key(GITHUB, KID)
    key_clock.advance(3599)
    await keys.get_key(GITHUB, KID)
    assert fake_issuers.jwks_fetches == 1
    key_clock.advance(1)
    # Expired: served as it is while a refresh runs in the background.
    await keys.get_key(GITHUB, KID)
    await keys.settle()
    assert fake_issuers.jwks_fetches == 2


async def test_unknown_kid_refreshes_then_is_refused(
    make_key_sets: KeySetsFactory, fake_issuers: FakeIssuers, key_clock: FakeClock
) -> None:
    keys = make_key_sets()
    await keys.get_key(GITHUB, KID)
    key_clock.advance(61)
    with pytest.raises(InvalidJWT) as exc:
        await keys.get_key(GITHUB, "no-such-kid")
    assert exc.value.detail == "Invalid JWT key ID"
    assert fake_issuers.jwks_fetches == 2


async def test_rotated_key_is_found_after_refresh(
    make_key_sets: KeySetsFactory, fake_issuers: FakeIssuers, key_clock: FakeClock
) -> None:
    keys = make_key_sets()
    await keys.get_key(GITHUB, KID)
    rotated = make_signing_key("rotated-key")
    fake_issuers.set_keys(GITHUB, rotated)
    key_clock.advance(61)
    key = await keys.get_key(GITHUB, "rotated-key")
    assert key.public_numbers() == rotated.private.public_key().public_numbers()
    # The old key is gone with the old set.
    key_clock.advance(61)
    with pytest.raises(InvalidJWT):
        await keys.get_key(GITHUB, KID)


async def test_unknown_kid_refreshes_at_most_once_per_cooldown(
    make_key_sets: KeySetsFactory, fake_issuers: FakeIssuers, key_clock: FakeClock
) -> None:
    keys = make_key_sets(refresh_cooldown=60)
    await keys.get_key(GITHUB, KID)  # fetch at t
    fake_issuers.set_keys(GITHUB, make_signing_key("test-key-1"), make_signing_key("new-key"))
    for step in (10, 20, 29):  # t+10, t+30, t+59: still in the cooldown
        key_clock.advance(step)
        with pytest.raises(InvalidJWT, match="Invalid JWT key ID"):
            await keys.get_key(GITHUB, "new-key")
    assert fake_issuers.jwks_fetches == 1
    key_clock.advance(1)  # t+60
    await keys.get_key(GITHUB, "new-key")
    assert fake_issuers.jwks_fetches == 2


async def test_unknown_kid_right_after_first_load_does_not_fetch_twice(
    make_key_sets: KeySetsFactory, fake_issuers: FakeIssuers
) -> None:
    keys = make_key_sets()
    with pytest.raises(InvalidJWT, match="Invalid JWT key ID"):
        await keys.get_key(GITHUB, "no-such-kid")
    assert fake_issuers.jwks_fetches == 1


async def test_concurrent_misses_share_one_fetch(
    make_key_sets: KeySetsFactory, fake_issuers: FakeIssuers
) -> None:
    keys = make_key_sets()
    results = await asyncio.gather(*(keys.get_key(GITHUB, KID) for _ in range(20)))
    assert len({id(key) for key in results}) == 1
    assert fake_issuers.discoveries == 1
    assert fake_issuers.jwks_fetches == 1


async def test_concurrent_unknown_kids_share_one_refresh(
    make_key_sets: KeySetsFactory, fake_issuers: FakeIssuers, key_clock: FakeClock
) -> None:
    keys = make_key_sets()
    await keys.get_key(GITHUB, KID)
    key_clock.advance(61)
    results = await asyncio.gather(
        *(keys.get_key(GITHUB, f"unknown-{i}") for i in range(20)), return_exceptions=True
    )
    assert all(isinstance(r, InvalidJWT) for r in results)
    assert fake_issuers.jwks_fetches == 2


async def test_cancelled_waiter_does_not_cancel_the_shared_fetch(
    make_key_sets: KeySetsFactory, fake_issuers: FakeIssuers
) -> None:
    keys = make_key_sets()
    first = asyncio.ensure_future(keys.get_key(GITHUB, KID))
    second = asyncio.ensure_future(keys.get_key(GITHUB, KID))
    await asyncio.sleep(0)
    first.cancel()
    assert (await second) is not None
    assert keys.status(GITHUB).loaded
    with pytest.raises(asyncio.CancelledError):
        await first


async def test_issuers_have_separate_key_sets(
    make_key_sets: KeySetsFactory, fake_issuers: FakeIssuers
) -> None:
    keys = make_key_sets()
    gitlab = Issuer("https://gitlab.com", "gitlab")
    await keys.get_key(GITHUB, KID)
    # GitHub's kid is not a GitLab key, whatever the token claims.
    with pytest.raises(InvalidJWT, match="Invalid JWT key ID"):
        await keys.get_key(gitlab, KID)
    assert keys.status(GITHUB).key_count == 1
    assert keys.status(gitlab).key_count == 1


# -- failures and staleness ----------------------------------------------------------


async def test_failed_fetch_without_cached_set_is_unavailable(
    make_key_sets: KeySetsFactory, fake_issuers: FakeIssuers, key_clock: FakeClock
) -> None:
    fake_issuers.status = 503
    keys = make_key_sets()
    with pytest.raises(KeySetUnavailable) as exc:
        await keys.get_key(GITHUB, KID)
    assert exc.value.detail == "Failed to load OIDC key set"
    assert keys.status(GITHUB) == KeySetStatus(
        issuer=GITHUB.url,
        loaded=False,
        key_count=0,
        age=None,
        last_error="discovery document returned HTTP 503",
        failures=1,
    )
    assert keys.fetch_outcomes[(GITHUB.url, "http_error")] == 1
    # During the back-off (1 s after a first failure) requests are refused at once.
    fake_issuers.status = 200
    key_clock.advance(0.5)
    with pytest.raises(KeySetUnavailable):
        await keys.get_key(GITHUB, KID)
    assert fake_issuers.discoveries == 1
    # Then the next request fetches again (and recovers).
    key_clock.advance(0.5)
    await keys.get_key(GITHUB, KID)
    assert keys.status(GITHUB).last_error is None
    assert keys.status(GITHUB).failures == 0


async def test_stale_set_serves_while_fetches_fail_until_staleness_limit(
    make_key_sets: KeySetsFactory, fake_issuers: FakeIssuers, key_clock: FakeClock
) -> None:
    keys = make_key_sets(max_age=3600, max_stale=86400, backoff_base=10, backoff_max=40)
    await keys.get_key(GITHUB, KID)
    fake_issuers.status = 500
    key_clock.advance(3600)
    await keys.get_key(GITHUB, KID)  # old set serves; its refresh fails in the background
    await keys.settle()
    assert fake_issuers.discoveries == 2
    # The back-off doubles after each failure (10 s, 20 s, 40 s) and stays capped.
    for delay in (10, 20, 40, 40):
        key_clock.advance(delay - 1)
        await keys.get_key(GITHUB, KID)  # within the back-off: no new attempt
        await keys.settle()
        attempts = fake_issuers.discoveries
        key_clock.advance(1)
        await keys.get_key(GITHUB, KID)  # back-off over: one more attempt
        await keys.settle()
        assert fake_issuers.discoveries == attempts + 1
    status = keys.status(GITHUB)
    assert status.loaded
    assert status.failures == 5
    assert status.last_error == "discovery document returned HTTP 500"
    key_clock.now = 1000.0 + 86400
    await keys.get_key(GITHUB, KID)  # exactly at the limit: still served
    await keys.settle()
    key_clock.advance(1)
    with pytest.raises(KeySetUnavailable):
        await keys.get_key(GITHUB, KID)
    assert not keys.status(GITHUB).loaded


async def test_empty_key_set_is_never_cached_nor_used(
    make_key_sets: KeySetsFactory, fake_issuers: FakeIssuers, key_clock: FakeClock
) -> None:
    fake_issuers.set_keys(GITHUB)
    keys = make_key_sets()
    with pytest.raises(KeySetUnavailable):
        await keys.get_key(GITHUB, KID)
    assert keys.fetch_outcomes[(GITHUB.url, "empty")] == 1
    assert not keys.status(GITHUB).loaded

    fake_issuers.set_keys(GITHUB, make_signing_key(KID))
    key_clock.advance(1)  # after the back-off
    await keys.get_key(GITHUB, KID)
    # An empty set later does not replace the good one.
    fake_issuers.set_keys(GITHUB)
    key_clock.advance(3600)
    await keys.get_key(GITHUB, KID)
    await keys.settle()
    assert keys.fetch_outcomes[(GITHUB.url, "empty")] == 2
    assert keys.status(GITHUB).key_count == 1


async def test_set_of_only_unusable_keys_counts_as_empty(
    make_key_sets: KeySetsFactory, fake_issuers: FakeIssuers
) -> None:
    jwk = make_signing_key(KID).jwk()
    jwk["use"] = "enc"
    fake_issuers.jwks["https://token.actions.githubusercontent.com/.well-known/jwks"] = {
        "keys": [jwk]
    }
    keys = make_key_sets()
    with pytest.raises(KeySetUnavailable):
        await keys.get_key(GITHUB, KID)
    assert keys.fetch_outcomes[(GITHUB.url, "empty")] == 1


@pytest.mark.parametrize(
    ("jwks_uri", "issuer"),
    [
        pytest.param("https://evil.example/.well-known/jwks", GITHUB, id="other-host"),
        pytest.param(
            "https://token.actions.githubusercontent.com.evil.example/jwks", GITHUB, id="suffix"
        ),
        pytest.param(
            "https://token.actions.githubusercontent.com:8443/jwks", GITHUB, id="other-port"
        ),
        pytest.param("http://token.actions.githubusercontent.com/jwks", GITHUB, id="http"),
        pytest.param(
            "https://user@token.actions.githubusercontent.com/jwks", GITHUB, id="userinfo"
        ),
        pytest.param("/.well-known/jwks", GITHUB, id="relative"),
        pytest.param("https://[token.actions.githubusercontent.com/jwks", GITHUB, id="unparsable"),
        pytest.param(
            "http://127.0.0.1:8080/jwks",
            Issuer("https://127.0.0.1:8080", "github", development=True),
            id="http-for-https-dev-issuer",
        ),
    ],
)
async def test_jwks_uri_off_the_issuer_host_or_not_https_is_refused(
    make_key_sets: KeySetsFactory, fake_issuers: FakeIssuers, jwks_uri: str, issuer: Issuer
) -> None:
    fake_issuers.publish(issuer, make_signing_key(KID))
    fake_issuers.discovery[issuer.url]["jwks_uri"] = jwks_uri
    keys = make_key_sets()
    with pytest.raises(KeySetUnavailable):
        await keys.get_key(issuer, KID)
    assert keys.fetch_outcomes == {(issuer.url, "refused_uri"): 1}
    assert fake_issuers.jwks_fetches == 0
    assert fake_issuers.requests[-1].url.path == "/.well-known/openid-configuration"


async def test_http_jwks_uri_is_allowed_for_loopback_development_issuer(
    make_key_sets: KeySetsFactory, fake_issuers: FakeIssuers
) -> None:
    issuer = Issuer("http://127.0.0.1:8080", "github", development=True)
    fake_issuers.publish(issuer, make_signing_key(KID))
    keys = make_key_sets()
    await keys.get_key(issuer, KID)
    assert keys.fetch_outcomes == {(issuer.url, "ok"): 1}


@pytest.mark.parametrize("jwks_uri", [None, 42, ["https://token.actions.githubusercontent.com"]])
async def test_discovery_document_without_jwks_uri_is_refused(
    make_key_sets: KeySetsFactory, fake_issuers: FakeIssuers, jwks_uri: object
) -> None:
    fake_issuers.discovery[GITHUB.url]["jwks_uri"] = jwks_uri
    keys = make_key_sets()
    with pytest.raises(KeySetUnavailable):
        await keys.get_key(GITHUB, KID)
    assert keys.fetch_outcomes == {(GITHUB.url, "invalid"): 1}


async def test_discovery_document_naming_another_issuer_is_refused(
    make_key_sets: KeySetsFactory, fake_issuers: FakeIssuers
) -> None:
    fake_issuers.discovery[GITHUB.url]["issuer"] = "https://evil.example"
    keys = make_key_sets()
    with pytest.raises(KeySetUnavailable):
        await keys.get_key(GITHUB, KID)
    assert keys.fetch_outcomes == {(GITHUB.url, "invalid"): 1}


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[1, 2]", b"[" * 100_000, b'{"issuer": 1e99999}'],
    ids=["garbage", "array", "deep-nesting", "huge-number"],
)
async def test_undecodable_discovery_document_is_refused(
    make_key_sets: KeySetsFactory, fake_issuers: FakeIssuers, body: bytes
) -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        keys = KeySets(client)
        with pytest.raises(KeySetUnavailable):
            await keys.get_key(GITHUB, KID)
    assert keys.fetch_outcomes == {(GITHUB.url, "invalid"): 1}


async def test_redirect_is_not_followed(
    make_key_sets: KeySetsFactory, fake_issuers: FakeIssuers
) -> None:
    fake_issuers.status = 302
    fake_issuers.headers = {"location": "https://evil.example/jwks"}
    keys = make_key_sets()
    with pytest.raises(KeySetUnavailable):
        await keys.get_key(GITHUB, KID)
    assert len(fake_issuers.requests) == 1
    assert keys.fetch_outcomes == {(GITHUB.url, "http_error"): 1}


async def test_content_encoded_response_is_refused() -> None:
    # A small compressed body can inflate past any cap: we ask for identity and refuse
    # anything else.
    body = gzip.compress(json.dumps({"issuer": GITHUB.url}).encode())

    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body, headers={"content-encoding": "gzip"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        keys = KeySets(client)
        with pytest.raises(KeySetUnavailable):
            await keys.get_key(GITHUB, KID)
    assert keys.fetch_outcomes == {(GITHUB.url, "invalid"): 1}


async def test_transport_timeout_is_reported_as_timeout(
    make_key_sets: KeySetsFactory, fake_issuers: FakeIssuers
) -> None:
    fake_issuers.error = httpx.ReadTimeout("slow")
    keys = make_key_sets()
    with pytest.raises(KeySetUnavailable):
        await keys.get_key(GITHUB, KID)
    assert keys.fetch_outcomes == {(GITHUB.url, "timeout"): 1}


async def test_whole_request_is_bounded_by_the_timeout() -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(30)
        return httpx.Response(200)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        keys = KeySets(client, timeout=0.05)
        with pytest.raises(KeySetUnavailable):
            await keys.get_key(GITHUB, KID)
    assert keys.fetch_outcomes == {(GITHUB.url, "timeout"): 1}


async def test_connection_error_is_reported_as_http_error(
    make_key_sets: KeySetsFactory, fake_issuers: FakeIssuers
) -> None:
    fake_issuers.error = httpx.ConnectError("refused")
    keys = make_key_sets()
    with pytest.raises(KeySetUnavailable):
        await keys.get_key(GITHUB, KID)
    assert keys.fetch_outcomes == {(GITHUB.url, "http_error"): 1}
    assert keys.status(GITHUB).last_error == "discovery document request failed: ConnectError"


async def test_fetch_failure_is_logged_with_issuer_and_reason_only(
    make_key_sets: KeySetsFactory, fake_issuers: FakeIssuers, caplog: pytest.LogCaptureFixture
) -> None:
    fake_issuers.discovery[GITHUB.url]["jwks_uri"] = "https://evil.example/secret-path"
    keys = make_key_sets()
    with (
        caplog.at_level(logging.WARNING, logger="trustpub.oidc"),
        pytest.raises(KeySetUnavailable),
    ):
        await keys.get_key(GITHUB, KID)
    assert [(r.name, r.getMessage()) for r in caplog.records] == [
        (
            "trustpub.oidc",
            "OIDC key set fetch failed for https://token.actions.githubusercontent.com: "
            "jwks_uri is not on the issuer's host (next attempt in 1 s at the earliest)",
        )
    ]


# -- size cap ------------------------------------------------------------------------


async def test_declared_oversized_key_set_is_refused(
    make_key_sets: KeySetsFactory, fake_issuers: FakeIssuers
) -> None:
    fake_issuers.set_keys(GITHUB, *(make_signing_key(KID) for _ in range(300)))
    keys = make_key_sets(max_bytes=64 * 1024)
    with pytest.raises(KeySetUnavailable):
        await keys.get_key(GITHUB, KID)
    assert keys.fetch_outcomes == {(GITHUB.url, "too_large"): 1}


class EndlessStream(httpx.AsyncByteStream):
    """A body without Content-Length that never ends; counts the chunks read."""

    def __init__(self) -> None:
        self.chunks_read = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            self.chunks_read += 1
            yield b" " * 4096


async def test_size_cap_is_enforced_while_streaming() -> None:
    stream = EndlessStream()

    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=stream)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        keys = KeySets(client, max_bytes=256 * 1024)
        with pytest.raises(KeySetUnavailable):
            await keys.get_key(GITHUB, KID)
    assert keys.fetch_outcomes == {(GITHUB.url, "too_large"): 1}
    # Stopped just past the cap: 64 chunks fill it, the 65th passes it.
    assert stream.chunks_read == 65


# -- which keys are usable -----------------------------------------------------------


def rsa_jwk(kid: object = KID, bits: int = 2048, **overrides: Any) -> dict[str, Any]:
    if bits == 2048:
        jwk = make_signing_key("jwk-test-key").jwk()
    else:
        private = rsa.generate_private_key(public_exponent=65537, key_size=bits)
        jwk = SigningKey("jwk-test-key", private).jwk()
    jwk.update(overrides, kid=kid)
    return {k: v for k, v in jwk.items() if v is not None}


def ec_jwk() -> dict[str, Any]:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    data: dict[str, Any] = jwt.algorithms.ECAlgorithm.to_jwk(key, as_dict=True)
    data["kid"] = "ec-key"
    return data


def test_usable_rsa_signing_key_is_kept() -> None:
    assert list(parse_jwks({"keys": [rsa_jwk()]})) == [KID]


def test_rsa_key_without_use_and_alg_is_kept() -> None:
    assert list(parse_jwks({"keys": [rsa_jwk(use=None, alg=None)]})) == [KID]


@pytest.mark.parametrize(
    "jwk",
    [
        pytest.param(rsa_jwk(kid=None), id="no-kid"),
        pytest.param(rsa_jwk(kid=""), id="empty-kid"),
        pytest.param(rsa_jwk(kid=7), id="kid-not-string"),
        pytest.param(rsa_jwk(use="enc"), id="use-enc"),
        pytest.param(rsa_jwk(alg="RS512"), id="alg-rs512"),
        pytest.param(rsa_jwk(alg="HS256"), id="alg-hs256"),
        pytest.param(rsa_jwk(key_ops=["encrypt"]), id="key-ops-without-verify"),
        pytest.param(rsa_jwk(kty="oct"), id="kty-oct"),
        pytest.param(ec_jwk(), id="ec-key"),
        pytest.param(rsa_jwk(bits=1024), id="1024-bit"),
        pytest.param(rsa_jwk(n=b64url_uint(2**2047 + 1), e=b64url_uint(65536)), id="even-e"),
        pytest.param(rsa_jwk(e=b64url_uint(2**65 + 1)), id="huge-e"),
        pytest.param(rsa_jwk(n=b64url_uint(2**9000 + 1)), id="huge-n"),
        pytest.param(rsa_jwk(n="not+base64/"), id="n-not-base64url"),
        pytest.param(rsa_jwk(n="A"), id="n-bad-length"),
        pytest.param(rsa_jwk(n=""), id="n-empty"),
        pytest.param(rsa_jwk(n=12345), id="n-not-string"),
        pytest.param(rsa_jwk(e=None), id="no-e"),
        pytest.param(rsa_jwk(e="AAAA"), id="zero-e"),
        pytest.param(rsa_jwk(d="AQAB"), id="private-key"),
        pytest.param("not an object", id="not-an-object"),
    ],
)
def test_unusable_key_is_skipped_and_others_kept(jwk: object) -> None:
    good = rsa_jwk(kid="good")
    assert list(parse_jwks({"keys": [jwk, good]})) == ["good"]


def test_duplicated_kid_is_dropped() -> None:
    other = rsa_jwk(kid="other")
    twice = [rsa_jwk(kid="dup"), rsa_jwk(kid="dup"), other]
    assert list(parse_jwks({"keys": twice})) == ["other"]


@pytest.mark.parametrize("jwks", [{}, {"keys": "x"}, {"keys": {"kid": KID}}])
def test_jwks_without_key_list_has_no_keys(jwks: dict[str, Any]) -> None:
    assert dict(parse_jwks(jwks)) == {}


# -- warm, status, configuration -----------------------------------------------------


async def test_warm_loads_and_reports_readiness(
    make_key_sets: KeySetsFactory, fake_issuers: FakeIssuers
) -> None:
    keys = make_key_sets()
    assert await keys.warm(GITHUB) is True
    assert await keys.warm(GITHUB) is True
    assert fake_issuers.jwks_fetches == 1
    status = keys.status(GITHUB)
    assert (status.loaded, status.key_count, status.age) == (True, 1, 0.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        status.loaded = False  # type: ignore[misc]


async def test_warm_never_raises(make_key_sets: KeySetsFactory, fake_issuers: FakeIssuers) -> None:
    fake_issuers.error = RuntimeError("boom")
    keys = make_key_sets()
    assert await keys.warm(GITHUB) is False
    assert keys.fetch_outcomes == {(GITHUB.url, "error"): 1}


def test_status_of_unseen_issuer_is_not_loaded(make_key_sets: KeySetsFactory) -> None:
    status = make_key_sets().status(GITHUB)
    assert status == KeySetStatus(GITHUB.url, loaded=False, key_count=0, age=None, last_error=None)


@pytest.mark.parametrize(
    "options",
    [
        {"max_age": 0},
        {"max_age": 100, "max_stale": 50},
        {"timeout": 0},
        {"max_bytes": 0},
        {"backoff_base": 10, "backoff_max": 5},
        {"backoff_base": -1},
    ],
)
def test_nonsensical_configuration_is_refused(
    make_key_sets: KeySetsFactory, options: dict[str, Any]
) -> None:
    with pytest.raises(ConfigurationError):
        make_key_sets(**options)


def test_fetch_left_pending_by_another_event_loop_is_not_joined(signing_key: SigningKey) -> None:
    fake = FakeIssuers()
    fake.publish(GITHUB, signing_key)
    first_call = True

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal first_call
        if first_call:
            first_call = False
            await asyncio.sleep(3600)  # never answers on the first loop
        return await fake(request)

    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    keys = KeySets(client)
    abandoned = asyncio.new_event_loop()
    try:
        waiter = abandoned.create_task(keys.get_key(GITHUB, KID))
        abandoned.run_until_complete(asyncio.sleep(0.01))
        assert not waiter.done()
        # Another loop must not wait for a task that only the first loop could finish.
        key = asyncio.run(keys.get_key(GITHUB, KID))
        assert key.public_numbers() == signing_key.private.public_key().public_numbers()
    finally:
        pending = asyncio.all_tasks(abandoned)
        for task in pending:
            task.cancel()
        abandoned.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        abandoned.run_until_complete(client.aclose())
        abandoned.close()


# -- edges the mutation run found untested ---------------------------------------------


@pytest.mark.parametrize(
    ("jwks_uri", "reason"),
    [
        ("/.well-known/jwks", "jwks_uri is not an absolute URL"),
        ("https:///.well-known/jwks", "jwks_uri is not an absolute URL"),
        (
            "https://user@token.actions.githubusercontent.com/.well-known/jwks",
            "jwks_uri is not an absolute URL",
        ),
        (
            "https://:pw@token.actions.githubusercontent.com/.well-known/jwks",
            "jwks_uri is not an absolute URL",
        ),
        ("https://evil.example/.well-known/jwks", "jwks_uri is not on the issuer's host"),
        ("ftp://token.actions.githubusercontent.com/jwks", "jwks_uri does not use https"),
    ],
)
async def test_refused_jwks_uri_says_why(
    make_key_sets: KeySetsFactory, fake_issuers: FakeIssuers, jwks_uri: str, reason: str
) -> None:
    fake_issuers.discovery[GITHUB.url]["jwks_uri"] = jwks_uri
    keys = make_key_sets()
    with pytest.raises(KeySetUnavailable):
        await keys.get_key(GITHUB, KID)
    assert keys.status(GITHUB).last_error == reason
    assert keys.fetch_outcomes == {(GITHUB.url, "refused_uri"): 1}


async def test_jwks_uri_host_is_compared_case_insensitively(
    make_key_sets: KeySetsFactory, fake_issuers: FakeIssuers
) -> None:
    uri = "https://Token.Actions.GithubUserContent.com/.well-known/jwks"
    fake_issuers.discovery[GITHUB.url]["jwks_uri"] = uri
    keys = make_key_sets()
    await keys.get_key(GITHUB, KID)
    assert keys.fetch_outcomes == {(GITHUB.url, "ok"): 1}


async def test_non_http_jwks_uri_of_a_local_development_issuer_is_refused(
    make_key_sets: KeySetsFactory, fake_issuers: FakeIssuers
) -> None:
    issuer = Issuer("http://127.0.0.1:8080", "github", development=True)
    fake_issuers.publish(issuer, make_signing_key(KID))
    fake_issuers.discovery[issuer.url]["jwks_uri"] = "ftp://127.0.0.1:8080/.well-known/jwks"
    keys = make_key_sets()
    with pytest.raises(KeySetUnavailable):
        await keys.get_key(issuer, KID)
    assert keys.status(issuer).last_error == "jwks_uri does not use https"


@pytest.mark.parametrize("encoding", ["gzip", "GZIP", "br"])
async def test_content_encoding_is_refused_by_name(encoding: str) -> None:
    body = json.dumps({"issuer": GITHUB.url}).encode()

    async def handler(request: httpx.Request) -> httpx.Response:
        content = gzip.compress(body) if encoding.lower() == "gzip" else body
        return httpx.Response(200, content=content, headers={"content-encoding": encoding})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        keys = KeySets(client)
        with pytest.raises(KeySetUnavailable):
            await keys.get_key(GITHUB, KID)
    assert keys.status(GITHUB).last_error == "discovery document is content-encoded"


def sized_issuer(signing_key: SigningKey, size: int, declared: int) -> httpx.MockTransport:
    """Discovery padded to ``size`` bytes, declaring ``declared``; a small key set."""
    discovery = json.dumps({"issuer": GITHUB.url, "jwks_uri": f"{GITHUB.url}/.well-known/jwks"})
    padded = discovery.encode().ljust(size)
    jwks = json.dumps({"keys": [signing_key.jwk()]}).encode()
    assert len(jwks) < size

    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/jwks"):
            return httpx.Response(200, content=jwks)
        return httpx.Response(200, content=padded, headers={"content-length": str(declared)})

    return httpx.MockTransport(handler)


async def test_body_of_exactly_the_cap_is_accepted(signing_key: SigningKey) -> None:
    async with httpx.AsyncClient(transport=sized_issuer(signing_key, 2000, 2000)) as client:
        keys = KeySets(client, max_bytes=2000)
        await keys.get_key(GITHUB, KID)
    assert keys.fetch_outcomes == {(GITHUB.url, "ok"): 1}


async def test_declared_length_over_the_cap_is_refused_before_reading(
    signing_key: SigningKey,
) -> None:
    # The body itself would fit: the declared length alone refuses it.
    async with httpx.AsyncClient(transport=sized_issuer(signing_key, 1000, 2001)) as client:
        keys = KeySets(client, max_bytes=2000)
        with pytest.raises(KeySetUnavailable):
            await keys.get_key(GITHUB, KID)
    assert keys.fetch_outcomes == {(GITHUB.url, "too_large"): 1}


@pytest.mark.parametrize(
    "options",
    [
        {"refresh_cooldown": 0},
        {"max_age": 0.5},
        {"max_age": 100, "max_stale": 100},
        {"max_bytes": 1},
        {"backoff_base": 0},
        {"backoff_base": 5, "backoff_max": 5},
    ],
)
def test_edge_configurations_are_accepted(
    make_key_sets: KeySetsFactory, options: dict[str, Any]
) -> None:
    make_key_sets(**options)


@pytest.mark.parametrize("cooldown", [-1, -0.5])
def test_negative_cooldown_is_refused(make_key_sets: KeySetsFactory, cooldown: float) -> None:
    with pytest.raises(ConfigurationError, match="refresh_cooldown >= 0"):
        make_key_sets(refresh_cooldown=cooldown)


def n_with_extra(char: str) -> str:
    n = rsa_jwk()["n"]
    assert isinstance(n, str)
    return n[:10] + char + n[10:]


@pytest.mark.parametrize(
    "jwk",
    [
        # base64url only: characters the lenient decoder would skip are refused.
        pytest.param(rsa_jwk(n=n_with_extra(".")), id="n-with-dot"),
        pytest.param(rsa_jwk(n=n_with_extra("+")), id="n-with-plus"),
        pytest.param(rsa_jwk(n=rsa_jwk()["n"] + "=="), id="n-padded"),
        pytest.param(rsa_jwk(key_ops="verify"), id="key-ops-string"),
    ],
)
def test_malformed_key_fields_are_skipped(jwk: object) -> None:
    assert list(parse_jwks({"keys": [jwk, rsa_jwk(kid="good")]})) == ["good"]


@pytest.mark.parametrize(
    "jwk",
    [
        pytest.param(rsa_jwk(key_ops=None), id="no-key-ops"),
        pytest.param(rsa_jwk(key_ops=["verify", "encrypt"]), id="key-ops-with-verify"),
        # 265 bytes: 354 base64url characters, which need two `=` of padding.
        pytest.param(rsa_jwk(n=b64url_uint(2**2119 + 1)), id="n-2120-bits"),
        pytest.param(rsa_jwk(n=b64url_uint(2**8191 + 1)), id="n-8192-bits"),
        pytest.param(rsa_jwk(e=b64url_uint(2**63 + 1)), id="e-64-bits"),
    ],
)
def test_keys_at_the_edges_are_kept(jwk: dict[str, Any]) -> None:
    assert list(parse_jwks({"keys": [jwk]})) == [KID]


async def test_set_going_stale_during_a_failed_refresh_is_unavailable(
    fake_issuers: FakeIssuers, key_clock: FakeClock
) -> None:
    failing = False

    async def handler(request: httpx.Request) -> httpx.Response:
        if failing:
            key_clock.advance(10_000)  # the fetch outlasts the staleness limit, then fails
            return httpx.Response(500)
        return await fake_issuers(request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        keys = KeySets(client, max_age=3600, max_stale=7200, clock=key_clock)
        await keys.get_key(GITHUB, KID)
        key_clock.advance(100)
        failing = True
        with pytest.raises(KeySetUnavailable):
            await keys.get_key(GITHUB, "rotated-key")


async def test_a_request_during_a_refresh_is_answered_by_the_stale_set_then_the_new_one(
    fake_issuers: FakeIssuers, key_clock: FakeClock
) -> None:
    # The set has expired but is still usable; a refresh is under way. Requests for a
    # known kid are answered from the stale set without waiting for it; once it is done,
    # the key is as the new set has it (re-keyed, same kid).
    release = asyncio.Event()
    started = asyncio.Event()
    block = False

    async def handler(request: httpx.Request) -> httpx.Response:
        if block and request.url.path.endswith("/jwks"):
            started.set()
            await release.wait()
        return await fake_issuers(request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        keys = KeySets(client, max_age=3600, clock=key_clock)
        old = await keys.get_key(GITHUB, KID)
        rekeyed = SigningKey(KID, rsa.generate_private_key(public_exponent=65537, key_size=2048))
        fake_issuers.set_keys(GITHUB, rekeyed)
        key_clock.advance(3600)
        block = True
        assert (await keys.get_key(GITHUB, KID)).public_numbers() == old.public_numbers()
        await started.wait()
        assert (await keys.get_key(GITHUB, KID)).public_numbers() == old.public_numbers()
        release.set()
        await keys.settle()
        new = rekeyed.private.public_key().public_numbers()
        assert (await keys.get_key(GITHUB, KID)).public_numbers() == new
        assert old.public_numbers() != new
        await keys.aclose()


@pytest.mark.parametrize("encoding", ["identity", "Identity", ""])
async def test_identity_encoding_in_any_case_is_accepted(
    fake_issuers: FakeIssuers, encoding: str
) -> None:
    fake_issuers.headers = {"content-encoding": encoding}
    async with httpx.AsyncClient(transport=httpx.MockTransport(fake_issuers)) as client:
        keys = KeySets(client)
        await keys.get_key(GITHUB, KID)
    assert keys.fetch_outcomes == {(GITHUB.url, "ok"): 1}


# -- readiness, fetch notifications, the back-off's growth ---------------------------


async def test_ready_fetches_in_the_background_when_missing_or_expired_only(
    make_key_sets: KeySetsFactory, fake_issuers: FakeIssuers, key_clock: FakeClock
) -> None:
    keys = make_key_sets(max_age=3600)
    assert keys.ready(GITHUB) is False  # nothing yet: a fetch starts, not awaited
    await keys.settle()
    assert fake_issuers.jwks_fetches == 1
    assert keys.ready(GITHUB) is True
    await keys.settle()
    assert fake_issuers.jwks_fetches == 1  # a fresh set is not fetched again
    key_clock.advance(3600)
    assert keys.ready(GITHUB) is True  # expired but usable: served, refreshed behind
    await keys.settle()
    assert fake_issuers.jwks_fetches == 2


async def test_every_fetch_outcome_is_reported(
    make_key_sets: KeySetsFactory, fake_issuers: FakeIssuers, key_clock: FakeClock
) -> None:
    seen: list[tuple[str, str]] = []
    keys = make_key_sets(on_fetch=lambda issuer, outcome: seen.append((issuer, outcome)))
    fake_issuers.status = 503
    assert await keys.warm(GITHUB) is False
    fake_issuers.status = 200
    key_clock.advance(1)
    assert await keys.warm(GITHUB) is True
    assert seen == [(GITHUB.url, "http_error"), (GITHUB.url, "ok")]


async def test_the_back_off_doubles_up_to_two_to_the_32nd_times_its_base(
    make_key_sets: KeySetsFactory, fake_issuers: FakeIssuers, key_clock: FakeClock
) -> None:
    keys = make_key_sets(backoff_base=1, backoff_max=2**40)
    fake_issuers.status = 503
    for failures in range(1, 36):
        with pytest.raises(KeySetUnavailable):
            await keys.get_key(GITHUB, KID)
        assert fake_issuers.discoveries == failures
        delay = 2 ** min(failures - 1, 32)
        key_clock.advance(delay - 1)
        with pytest.raises(KeySetUnavailable):
            await keys.get_key(GITHUB, KID)  # within the back-off: no attempt
        assert fake_issuers.discoveries == failures
        key_clock.advance(1)


async def test_warm_during_the_back_off_does_not_fetch(
    make_key_sets: KeySetsFactory, fake_issuers: FakeIssuers
) -> None:
    keys = make_key_sets(backoff_base=10, backoff_max=10)
    fake_issuers.status = 503
    assert await keys.warm(GITHUB) is False
    assert await keys.warm(GITHUB) is False
    assert fake_issuers.discoveries == 1


async def test_an_unknown_kid_waits_for_the_back_off_as_well_as_the_cooldown(
    make_key_sets: KeySetsFactory, fake_issuers: FakeIssuers, key_clock: FakeClock
) -> None:
    keys = make_key_sets(max_age=3600, refresh_cooldown=60, backoff_base=1000, backoff_max=1000)
    await keys.get_key(GITHUB, KID)
    fake_issuers.status = 500
    key_clock.advance(61)
    with pytest.raises(InvalidJWT):
        await keys.get_key(GITHUB, "no-such-kid")  # cooldown over: one refresh, it fails
    assert fake_issuers.discoveries == 2
    key_clock.advance(61)
    with pytest.raises(InvalidJWT):
        await keys.get_key(GITHUB, "no-such-kid")  # cooldown over, back-off not: none
    assert fake_issuers.discoveries == 2


async def test_an_unknown_kid_during_a_refresh_joins_it_even_within_the_cooldown(
    fake_issuers: FakeIssuers, key_clock: FakeClock
) -> None:
    # The stale set is being refreshed; a request for a kid only the new set has waits
    # for that fetch (free to join) instead of being refused by the cooldown.
    release = asyncio.Event()
    started = asyncio.Event()
    block = False

    async def handler(request: httpx.Request) -> httpx.Response:
        if block and request.url.path.endswith("/jwks"):
            started.set()
            await release.wait()
        return await fake_issuers(request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        keys = KeySets(client, max_age=3600, refresh_cooldown=60, clock=key_clock)
        await keys.get_key(GITHUB, KID)
        rotated = make_signing_key("rotated-key")
        fake_issuers.set_keys(GITHUB, rotated)
        key_clock.advance(3600)
        block = True
        await keys.get_key(GITHUB, KID)  # stale: served, a refresh starts behind
        await started.wait()
        waiting = asyncio.create_task(keys.get_key(GITHUB, "rotated-key"))
        for _ in range(5):
            await asyncio.sleep(0)
        assert not waiting.done()
        release.set()
        key = await waiting
        assert key.public_numbers() == rotated.private.public_key().public_numbers()
        await keys.aclose()


async def test_a_finished_fetch_does_not_forget_the_fetch_started_after_it(
    fake_issuers: FakeIssuers,
) -> None:
    # A failed fetch's last step reports its outcome; a readiness probe run right then
    # (before the finished fetch's own bookkeeping) starts the next fetch (no back-off
    # here). The finished fetch must not then drop that newer fetch from view, or a
    # third fetch would run beside it.
    release = asyncio.Event()
    discoveries = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal discoveries
        if request.url.path.endswith("/openid-configuration"):
            discoveries += 1
            if discoveries > 1:
                await release.wait()
        return httpx.Response(503)

    probes: list[str] = []

    def on_fetch(issuer: str, outcome: str) -> None:
        if not probes:
            probes.append(outcome)
            asyncio.get_running_loop().call_soon(keys.ready, GITHUB)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        keys = KeySets(client, backoff_base=0, backoff_max=0, on_fetch=on_fetch)
        assert keys.ready(GITHUB) is False  # first fetch, in the background
        for _ in range(20):
            await asyncio.sleep(0)
        assert probes == ["http_error"]
        assert discoveries == 2  # the probe's fetch, now waiting
        assert keys.ready(GITHUB) is False  # joins nothing new: that fetch is under way
        for _ in range(20):
            await asyncio.sleep(0)
        assert discoveries == 2
        release.set()
        await keys.settle()
        await keys.aclose()
