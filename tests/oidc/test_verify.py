"""Verifier: algorithm, issuer, key ID, signature and claim checks, with real pyjwt."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from tests.conftest import AUDIENCE, SigningKey, github_claims, gitlab_claims, make_signing_key
from tests.oidc.conftest import GITHUB, GITLAB, NOW, OIDCEnv
from trustpub.errors import (
    ConfigurationError,
    ExchangeRefused,
    InvalidJWT,
    KeySetUnavailable,
    UnsupportedIssuer,
)
from trustpub.oidc.verify import MAX_TOKEN_LENGTH, Verifier

pytestmark = pytest.mark.anyio


def claims(**overrides: Any) -> dict[str, Any]:
    """GitHub claims issued at NOW, the verifier's clock time."""
    base = github_claims(iat=NOW, nbf=NOW - 300, exp=NOW + 300)
    base.update(overrides)
    return base


def without(name: str) -> dict[str, Any]:
    data = claims()
    del data[name]
    return data


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_made_token(
    header: dict[str, Any], payload: dict[str, Any], sign: Any = None, signature: bytes = b""
) -> str:
    """A JWT built by hand, for the tokens pyjwt would refuse to produce."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    if sign is not None:
        signature = sign(signing_input.encode())
    return f"{signing_input}.{b64(signature)}"


def signed_raw(key: SigningKey, payload: dict[str, Any]) -> str:
    """RS256-signed without pyjwt's claim checks, which refuse e.g. a non-string ``iss``."""
    return jwt.PyJWS().encode(
        json.dumps(payload).encode(), key.private, algorithm="RS256", headers={"kid": key.kid}
    )


def public_pem(key: SigningKey) -> bytes:
    return key.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


async def refused(env: OIDCEnv, token: str) -> ExchangeRefused:
    with pytest.raises(ExchangeRefused) as exc:
        await env.verifier.verify(token)
    # Whatever went wrong, the token never appears in what the client or the logs see.
    if token:
        assert token not in exc.value.detail
    for segment in token.split("."):
        if len(segment) > 16:
            assert segment not in exc.value.detail
    return exc.value


# -- the happy path ------------------------------------------------------------------


async def test_valid_github_token_is_verified(env: OIDCEnv) -> None:
    sent = claims()
    verified = await env.verifier.verify(env.signing_key.sign(sent))
    assert verified.issuer == GITHUB
    assert verified.jti == sent["jti"]
    assert verified.issued_at == NOW
    assert verified.expires_at == NOW + 300
    assert dict(verified.claims) == sent
    assert verified.required_str("repository") == "octo-org/octo-lib"


async def test_verified_claims_are_read_only(env: OIDCEnv) -> None:
    verified = await env.verifier.verify(env.signing_key.sign(claims()))
    with pytest.raises(TypeError):
        verified.claims["repository"] = "evil/repo"  # type: ignore[index]


async def test_valid_gitlab_token_is_verified_with_gitlab_keys(env: OIDCEnv) -> None:
    gitlab_key = make_signing_key("gitlab-key-1")
    token = gitlab_key.sign(gitlab_claims(iat=NOW, nbf=NOW, exp=NOW + 300))
    verified = await env.verifier.verify(token)
    assert verified.issuer == GITLAB
    assert env.fake.requests[0].url.host == "gitlab.com"


async def test_token_of_one_issuer_signed_with_another_issuers_key_is_refused(
    env: OIDCEnv,
) -> None:
    # The GitHub key's kid is looked up in GitLab's key set only.
    token = env.signing_key.sign(gitlab_claims(iat=NOW, nbf=NOW, exp=NOW + 300))
    error = await refused(env, token)
    assert error.detail == "Invalid JWT key ID"


async def test_concurrent_verifications_share_one_key_fetch(env: OIDCEnv) -> None:
    tokens = [env.signing_key.sign(claims()) for _ in range(20)]
    results = await asyncio.gather(*(env.verifier.verify(t) for t in tokens))
    assert len({r.jti for r in results}) == 20
    assert env.fake.discoveries == 1
    assert env.fake.jwks_fetches == 1


# -- malformed tokens and algorithms -------------------------------------------------


@pytest.mark.parametrize(
    "token",
    ["", "not-a-jwt", "a.b.c", "a.b", "....", "eyJhbGciOiJSUzI1NiJ9.%%%.abc"],
)
async def test_undecodable_token_is_refused(env: OIDCEnv, token: str) -> None:
    error = await refused(env, token)
    assert isinstance(error, InvalidJWT)
    assert error.detail == "Failed to decode JWT"
    assert env.fake.requests == []


async def test_header_that_is_not_an_object_is_refused(env: OIDCEnv) -> None:
    token = f"{b64(b'[1]')}.{b64(json.dumps(claims()).encode())}.{b64(b'sig')}"
    error = await refused(env, token)
    assert error.detail == "Failed to decode JWT"


async def test_payload_that_is_not_an_object_is_refused(env: OIDCEnv) -> None:
    header = {"alg": "RS256", "kid": env.signing_key.kid}
    token = f"{b64(json.dumps(header).encode())}.{b64(b'[1, 2]')}.{b64(b'sig')}"
    error = await refused(env, token)
    assert error.detail == "Failed to decode JWT"


async def test_unsigned_alg_none_token_is_refused(env: OIDCEnv) -> None:
    token = hand_made_token({"alg": "none", "kid": env.signing_key.kid}, claims())
    error = await refused(env, token)
    assert error.detail == "Failed to decode JWT: unsupported algorithm (expected RS256)"
    assert env.fake.requests == []


@pytest.mark.parametrize("alg", ["None", "NONE", "HS256", "RS512", "PS256", "ES256", None])
async def test_any_algorithm_but_rs256_is_refused(env: OIDCEnv, alg: str | None) -> None:
    token = hand_made_token({"alg": alg, "kid": env.signing_key.kid}, claims(), signature=b"x")
    error = await refused(env, token)
    assert error.detail.startswith("Failed to decode JWT")


async def test_hs256_token_signed_with_the_public_key_pem_is_refused(env: OIDCEnv) -> None:
    # The classic confusion attack: the issuer's public key used as an HMAC secret.
    pem = public_pem(env.signing_key)
    token = hand_made_token(
        {"alg": "HS256", "kid": env.signing_key.kid, "typ": "JWT"},
        claims(),
        sign=lambda data: hmac.new(pem, data, hashlib.sha256).digest(),
    )
    error = await refused(env, token)
    assert error.detail.startswith("Failed to decode JWT")


async def test_rs256_header_with_hmac_signature_over_public_key_is_refused(env: OIDCEnv) -> None:
    # Same attack, but lying about the algorithm in the header: the signature must fail.
    pem = public_pem(env.signing_key)
    token = hand_made_token(
        {"alg": "RS256", "kid": env.signing_key.kid},
        claims(),
        sign=lambda data: hmac.new(pem, data, hashlib.sha256).digest(),
    )
    error = await refused(env, token)
    assert error.detail == "Failed to decode JWT: invalid signature"


async def test_token_signed_by_another_key_under_a_known_kid_is_refused(env: OIDCEnv) -> None:
    forged = SigningKey(env.signing_key.kid, env.other_key.private)
    error = await refused(env, forged.sign(claims()))
    assert error.detail == "Failed to decode JWT: invalid signature"


async def test_tampered_payload_is_refused(env: OIDCEnv) -> None:
    header, _, signature = env.signing_key.sign(claims()).split(".")
    payload = b64(json.dumps(claims(repository="evil/repo")).encode())
    error = await refused(env, f"{header}.{payload}.{signature}")
    assert error.detail == "Failed to decode JWT: invalid signature"


async def test_oversized_token_is_refused_before_decoding(env: OIDCEnv) -> None:
    token = env.signing_key.sign(claims(padding="x" * MAX_TOKEN_LENGTH))
    error = await refused(env, token)
    assert error.detail == "Failed to decode JWT: token is too large"
    assert env.fake.requests == []


async def test_token_of_exactly_the_size_cap_is_accepted(env: OIDCEnv) -> None:
    # Lengths move in base64 steps: vary the padding and the key id's header length
    # until the token is exactly MAX_TOKEN_LENGTH characters.
    base = len(env.signing_key.sign(claims(padding="")))
    start = (MAX_TOKEN_LENGTH - base) * 3 // 4 - 6
    exact = next(
        token
        for size in range(start, start + 12)
        for extra in range(4)
        if len(
            token := env.signing_key.sign(
                claims(padding="x" * size), headers={"typ": "JWT" + "x" * extra}
            )
        )
        == MAX_TOKEN_LENGTH
    )
    await env.verifier.verify(exact)


@pytest.mark.parametrize("token", ["", b"a.b.c", 5, None])
async def test_token_that_is_not_a_non_empty_string_is_refused(env: OIDCEnv, token: object) -> None:
    with pytest.raises(InvalidJWT) as info:
        await env.verifier.verify(token)  # type: ignore[arg-type]
    assert info.value.detail == "Failed to decode JWT"


async def test_token_just_under_the_size_cap_is_accepted(env: OIDCEnv) -> None:
    base = len(env.signing_key.sign(claims(padding="")))
    # base64 turns 3 bytes into 4 characters.
    token = env.signing_key.sign(claims(padding="x" * ((MAX_TOKEN_LENGTH - base) * 3 // 4 - 3)))
    assert MAX_TOKEN_LENGTH - 8 <= len(token) <= MAX_TOKEN_LENGTH
    await env.verifier.verify(token)


# -- issuer and key ID ---------------------------------------------------------------


async def test_unknown_issuer_is_refused_without_fetching_keys(env: OIDCEnv) -> None:
    error = await refused(env, env.signing_key.sign(claims(iss="https://evil.example")))
    assert isinstance(error, UnsupportedIssuer)
    assert error.detail == "Unsupported JWT issuer: https://evil.example"
    assert env.fake.requests == []


async def test_issuer_is_compared_byte_for_byte(env: OIDCEnv) -> None:
    error = await refused(env, env.signing_key.sign(claims(iss=GITHUB.url + "/")))
    assert isinstance(error, UnsupportedIssuer)


async def test_echoed_issuer_is_bounded_and_printable(env: OIDCEnv) -> None:
    iss = "https://evil.example/\n" + "a" * 5000
    error = await refused(env, env.signing_key.sign(claims(iss=iss)))
    assert isinstance(error, UnsupportedIssuer)
    assert error.detail == "Unsupported JWT issuer: https://evil.example/?" + "a" * 178 + "…"


@pytest.mark.parametrize(
    ("iss", "reason"),
    [
        (["https://token.actions.githubusercontent.com"], "claim `iss` must be a non-empty string"),
        (42, "claim `iss` must be a non-empty string"),
        (True, "claim `iss` must be a non-empty string"),
        ("", "claim `iss` must be a non-empty string"),
        (None, "missing required claim `iss`"),
    ],
)
async def test_issuer_of_wrong_type_is_refused_without_echo(
    env: OIDCEnv, iss: object, reason: str
) -> None:
    error = await refused(env, signed_raw(env.signing_key, claims(iss=iss)))
    assert isinstance(error, InvalidJWT)
    assert error.detail == f"Failed to decode JWT: {reason}"


async def test_echoed_issuer_at_the_bound_is_shown_whole(env: OIDCEnv) -> None:
    iss = "https://evil.example/" + "a" * (200 - len("https://evil.example/"))
    error = await refused(env, env.signing_key.sign(claims(iss=iss)))
    assert error.detail == f"Unsupported JWT issuer: {iss}"
    error = await refused(env, env.signing_key.sign(claims(iss=iss + "b")))
    assert error.detail == f"Unsupported JWT issuer: {iss}…"


async def test_empty_kid_is_missing(env: OIDCEnv) -> None:
    token = env.signing_key.sign(claims(), headers={"kid": ""})
    error = await refused(env, token)
    assert error.detail == "Missing JWT key ID"
    assert env.fake.requests == []


async def test_missing_kid_is_refused(env: OIDCEnv) -> None:
    token = jwt.encode(claims(), env.signing_key.private, algorithm="RS256")
    error = await refused(env, token)
    assert error.detail == "Missing JWT key ID"
    assert env.fake.requests == []


@pytest.mark.parametrize("kid", [5, ["test-key-1"], {"kid": "test-key-1"}])
async def test_kid_that_is_not_a_string_is_refused(env: OIDCEnv, kid: object) -> None:
    token = hand_made_token({"alg": "RS256", "kid": kid}, claims(), signature=b"x")
    error = await refused(env, token)
    assert error.detail in ("Failed to decode JWT", "Invalid JWT key ID")
    assert env.fake.requests == []


async def test_unknown_kid_refreshes_once_then_is_refused(env: OIDCEnv) -> None:
    await env.verifier.verify(env.signing_key.sign(claims()))
    env.key_clock.advance(61)
    error = await refused(env, env.other_key.sign(claims()))
    assert error.detail == "Invalid JWT key ID"
    assert env.fake.jwks_fetches == 2


async def test_rotated_key_is_accepted_after_refresh(env: OIDCEnv) -> None:
    await env.verifier.verify(env.signing_key.sign(claims()))
    env.fake.set_keys(GITHUB, env.signing_key, env.other_key)
    env.key_clock.advance(61)
    verified = await env.verifier.verify(env.other_key.sign(claims()))
    assert verified.issuer == GITHUB


async def test_second_unknown_kid_within_cooldown_does_not_refetch(env: OIDCEnv) -> None:
    await env.verifier.verify(env.signing_key.sign(claims()))
    env.key_clock.advance(61)
    await refused(env, env.other_key.sign(claims()))
    assert env.fake.jwks_fetches == 2
    env.fake.set_keys(GITHUB, env.other_key)
    env.key_clock.advance(59)
    await refused(env, env.other_key.sign(claims()))
    assert env.fake.jwks_fetches == 2
    env.key_clock.advance(1)
    await env.verifier.verify(env.other_key.sign(claims()))
    assert env.fake.jwks_fetches == 3


async def test_key_set_unavailable_propagates(env: OIDCEnv) -> None:
    env.fake.status = 500
    with pytest.raises(KeySetUnavailable) as exc:
        await env.verifier.verify(env.signing_key.sign(claims()))
    assert exc.value.detail == "Failed to load OIDC key set"
    assert exc.value.status_code == 503  # retryable: the issuer is down for now


# -- audience ------------------------------------------------------------------------


async def test_wrong_audience_is_refused(env: OIDCEnv) -> None:
    error = await refused(env, env.signing_key.sign(claims(aud="other.example")))
    assert error.detail == (
        f"Failed to decode JWT: audience does not match (expected `{AUDIENCE}`)"
    )


@pytest.mark.parametrize(
    "aud", [[AUDIENCE], [AUDIENCE, "other.example"], ["other.example", AUDIENCE], 7, {}]
)
async def test_audience_must_be_exactly_one_string(env: OIDCEnv, aud: object) -> None:
    error = await refused(env, env.signing_key.sign(claims(aud=aud)))
    assert error.detail == "Failed to decode JWT: claim `aud` must be a single string"


# -- time ----------------------------------------------------------------------------


async def test_expired_token_within_leeway_is_accepted(env: OIDCEnv) -> None:
    env.wall_clock.now = NOW + 300 + 59
    await env.verifier.verify(env.signing_key.sign(claims()))


async def test_expired_token_beyond_leeway_is_refused(env: OIDCEnv) -> None:
    env.wall_clock.now = NOW + 300 + 60
    error = await refused(env, env.signing_key.sign(claims()))
    assert error.detail == "Failed to decode JWT: token has expired"


async def test_iat_in_the_future_within_leeway_is_accepted(env: OIDCEnv) -> None:
    await env.verifier.verify(env.signing_key.sign(claims(iat=NOW + 60)))


async def test_iat_in_the_future_beyond_leeway_is_refused(env: OIDCEnv) -> None:
    error = await refused(env, env.signing_key.sign(claims(iat=NOW + 61)))
    assert error.detail == "Failed to decode JWT: token was issued in the future (iat)"


async def test_nbf_in_the_future_within_leeway_is_accepted(env: OIDCEnv) -> None:
    await env.verifier.verify(env.signing_key.sign(claims(nbf=NOW + 60)))


async def test_nbf_in_the_future_beyond_leeway_is_refused(env: OIDCEnv) -> None:
    error = await refused(env, env.signing_key.sign(claims(nbf=NOW + 61)))
    assert error.detail == "Failed to decode JWT: token is not yet valid (nbf)"


async def test_token_without_nbf_is_accepted(env: OIDCEnv) -> None:
    await env.verifier.verify(env.signing_key.sign(without("nbf")))


async def test_leeway_is_configurable(env: OIDCEnv) -> None:
    strict = Verifier([GITHUB], AUDIENCE, env.keys, leeway=0, clock=env.wall_clock)
    env.wall_clock.now = NOW + 300
    with pytest.raises(InvalidJWT, match="token has expired"):
        await strict.verify(env.signing_key.sign(claims()))


# -- required claims and their types -------------------------------------------------


@pytest.mark.parametrize("name", ["iss", "exp", "iat", "aud", "jti"])
async def test_missing_required_claim_is_refused(env: OIDCEnv, name: str) -> None:
    error = await refused(env, env.signing_key.sign(without(name)))
    assert isinstance(error, InvalidJWT)
    assert error.detail == f"Failed to decode JWT: missing required claim `{name}`"


@pytest.mark.parametrize("name", ["exp", "iat", "jti", "aud"])
async def test_null_required_claim_is_refused(env: OIDCEnv, name: str) -> None:
    error = await refused(env, env.signing_key.sign(claims(**{name: None})))
    assert error.detail == f"Failed to decode JWT: missing required claim `{name}`"


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("exp", str(NOW + 300), "claim `exp` must be an integer"),
        ("exp", float(NOW + 300), "claim `exp` must be an integer"),
        ("exp", NOW + 300.5, "claim `exp` must be an integer"),
        ("exp", True, "claim `exp` must be an integer"),
        ("exp", [NOW + 300], "claim `exp` must be an integer"),
        ("iat", str(NOW), "claim `iat` must be an integer"),
        ("iat", float(NOW), "claim `iat` must be an integer"),
        ("iat", False, "claim `iat` must be an integer"),
        ("nbf", float(NOW), "claim `nbf` must be an integer"),
        ("nbf", "0", "claim `nbf` must be an integer"),
        ("jti", 12345, "claim `jti` must be a non-empty string"),
        ("jti", "", "claim `jti` must be a non-empty string"),
        ("jti", ["a"], "claim `jti` must be a non-empty string"),
        ("iss", [GITHUB.url], "claim `iss` must be a non-empty string"),
        ("iss", {"url": GITHUB.url}, "claim `iss` must be a non-empty string"),
        ("aud", "", "audience does not match (expected `registry.example`)"),
    ],
)
async def test_claim_of_wrong_type_is_refused(
    env: OIDCEnv, name: str, value: object, reason: str
) -> None:
    error = await refused(env, signed_raw(env.signing_key, claims(**{name: value})))
    assert isinstance(error, InvalidJWT)
    assert error.detail == f"Failed to decode JWT: {reason}"


# -- text that is not valid Unicode, however the payload's JSON spells it -------------
#
# jws.parse lets the verifier skip its walk over the claims' strings only when the
# payload's JSON text cannot produce a lone surrogate; every other spelling is walked.


def signed_json(key: SigningKey, text: bytes) -> str:
    """RS256-signed with ``text`` as the payload, byte for byte."""
    return jwt.PyJWS().encode(text, key.private, algorithm="RS256", headers={"kid": key.kid})


LONE_SURROGATE_PAYLOADS = {
    "escape": lambda data: json.dumps(data).encode(),
    "upper-case escape": lambda data: json.dumps(data).replace("\\ud800", "\\uD800").encode(),
    "utf-8 bytes": lambda data: json.dumps(data, ensure_ascii=False).encode(
        "utf-8", "surrogatepass"
    ),
    "utf-16 escape": lambda data: json.dumps(data).encode("utf-16-le"),
    "utf-16 bytes": lambda data: json.dumps(data, ensure_ascii=False).encode(
        "utf-16-le", "surrogatepass"
    ),
    "utf-32 escape": lambda data: json.dumps(data).encode("utf-32"),
}


@pytest.mark.parametrize("spelling", sorted(LONE_SURROGATE_PAYLOADS))
async def test_a_lone_surrogate_is_refused_however_the_json_spells_it(
    env: OIDCEnv, spelling: str
) -> None:
    text = LONE_SURROGATE_PAYLOADS[spelling](claims(environment="prod\ud800"))
    error = await refused(env, signed_json(env.signing_key, text))
    assert isinstance(error, InvalidJWT)
    assert error.detail == (
        "Failed to decode JWT: a claim holds invalid Unicode text: `prod\\ud800`"
    )


async def test_a_lone_low_surrogate_escape_is_refused(env: OIDCEnv) -> None:
    text = json.dumps(claims(extra=["\udfff"])).encode()
    assert b"\\udfff" in text
    error = await refused(env, signed_json(env.signing_key, text))
    assert error.detail == "Failed to decode JWT: a claim holds invalid Unicode text: `\\udfff`"


@pytest.mark.parametrize(
    ("escaped", "value"),
    [
        ("\\u00e9t\\u00e9", "\u00e9t\u00e9"),
        ("\\ud83d\\ude80", "\U0001f680"),
        ("\\uD83D\\uDE80", "\U0001f680"),
        ("\\\\ud800", "\\ud800"),
        ("\\u0064800", "d800"),
    ],
)
async def test_escapes_that_write_valid_text_are_accepted(
    env: OIDCEnv, escaped: str, value: str
) -> None:
    text = json.dumps(claims(environment="@")).replace('"@"', f'"{escaped}"').encode()
    verified = await env.verifier.verify(signed_json(env.signing_key, text))
    assert verified.claims["environment"] == value


async def test_valid_non_ascii_text_is_accepted_in_every_encoding(env: OIDCEnv) -> None:
    data = claims(environment="d\u00e9ploiement-\U0001f680")
    for text in (
        json.dumps(data, ensure_ascii=False).encode(),
        json.dumps(data, ensure_ascii=False).encode("utf-16"),
        json.dumps(data).encode("utf-16-be"),
    ):
        verified = await env.verifier.verify(signed_json(env.signing_key, text))
        assert verified.claims["environment"] == "d\u00e9ploiement-\U0001f680"


# -- configuration -------------------------------------------------------------------


def test_issuer_configured_twice_is_refused(env: OIDCEnv) -> None:
    with pytest.raises(ConfigurationError):
        Verifier([GITHUB, GITHUB], AUDIENCE, env.keys)


def test_empty_audience_is_refused(env: OIDCEnv) -> None:
    with pytest.raises(ConfigurationError):
        Verifier([GITHUB], "", env.keys)


def test_negative_leeway_is_refused(env: OIDCEnv) -> None:
    with pytest.raises(ConfigurationError) as info:
        Verifier([GITHUB], AUDIENCE, env.keys, leeway=-1)
    assert str(info.value) == "the JWT leeway must not be negative"
    Verifier([GITHUB], AUDIENCE, env.keys, leeway=0)


async def test_verifier_without_issuers_refuses_everything(env: OIDCEnv) -> None:
    empty = Verifier([], AUDIENCE, env.keys, clock=env.wall_clock)
    with pytest.raises(UnsupportedIssuer):
        await empty.verify(env.signing_key.sign(claims()))
