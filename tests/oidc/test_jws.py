"""Our one-pass RS256 JWS check, compared with pyjwt (the reference) on the same tokens."""

from __future__ import annotations

import base64
import json
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.padding import MGF1, PSS, PKCS1v15
from cryptography.hazmat.primitives.hashes import SHA256, SHA512
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import SigningKey, github_claims, make_signing_key
from trustpub.errors import InvalidJWT
from trustpub.oidc import jws

KEY = make_signing_key("jws-key")
OTHER = make_signing_key("jws-other")


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def pyjwt_accepts(token: str, key: SigningKey) -> dict[str, Any] | None:
    try:
        payload: dict[str, Any] = jwt.decode(
            token,
            key.private.public_key(),
            algorithms=["RS256"],
            options={
                "verify_signature": True,
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
                "verify_aud": False,
                "verify_iss": False,
                "verify_sub": False,
                "verify_jti": False,
                "require": [],
            },
        )
    except jwt.PyJWTError:
        return None
    return payload


def ours_accepts(token: str, key: SigningKey) -> dict[str, Any] | None:
    try:
        signed = jws.parse(token)
        if signed.header.get("alg") != "RS256":
            return None
        signed.verify_rs256(key.private.public_key())
    except InvalidJWT:
        return None
    return signed.payload


def test_a_valid_token_is_accepted_by_both_with_the_same_payload() -> None:
    claims = github_claims()
    token = KEY.sign(claims)
    assert ours_accepts(token, KEY) == pyjwt_accepts(token, KEY) == claims
    signed = jws.parse(token)
    assert signed.header == {"alg": "RS256", "kid": "jws-key", "typ": "JWT"}


def test_a_token_signed_by_another_key_is_refused_by_both() -> None:
    token = OTHER.sign(github_claims(), headers={"kid": KEY.kid})
    assert pyjwt_accepts(token, KEY) is None
    with pytest.raises(InvalidJWT, match="invalid signature"):
        jws.parse(token).verify_rs256(KEY.private.public_key())


@settings(max_examples=200, deadline=None)
@given(position=st.integers(min_value=0), replacement=st.sampled_from("AQgw_-.=+/ x0"))
def test_any_single_character_change_is_refused_by_both_or_accepted_by_both(
    position: int, replacement: str
) -> None:
    token = KEY.sign({"iss": "https://issuer.example", "jti": "1", "n": 1})
    index = position % len(token)
    tampered = token[:index] + replacement + token[index + 1 :]
    ours, reference = ours_accepts(tampered, KEY), pyjwt_accepts(tampered, KEY)
    assert ours == reference
    if tampered != token:
        assert ours is None


def test_a_non_canonical_last_character_is_refused_by_both() -> None:
    # A 256-byte signature is 342 base64url characters: the last one carries 2 bits and
    # 4 unused ones. Setting an unused bit decodes to the same bytes; both refuse it.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    token = KEY.sign({"iss": "https://issuer.example", "jti": "1"})
    last = alphabet.index(token[-1])
    assert last & 0b1111 == 0
    tampered = token[:-1] + alphabet[last | 0b0001]
    assert base64.urlsafe_b64decode(token.split(".")[2] + "==") == base64.urlsafe_b64decode(
        tampered.split(".")[2] + "=="
    )
    assert pyjwt_accepts(tampered, KEY) is None
    assert ours_accepts(tampered, KEY) is None
    with pytest.raises(InvalidJWT) as exc:
        jws.parse(tampered)
    assert exc.value.detail == "Failed to decode JWT"


@pytest.mark.parametrize(
    "token",
    [
        "",
        "a",
        "a.b",
        "a.b.c.d",
        ".b.c",
        "a..c",
        "a.b.c d",
        "YQ==.YQ.YQ",
        "a!.b.c",
        "\u00e9.b.c",
    ],
)
def test_malformed_compact_serialisations_are_refused(token: str) -> None:
    with pytest.raises(InvalidJWT) as exc:
        jws.parse(token)
    assert exc.value.detail == "Failed to decode JWT"


@pytest.mark.parametrize("extra", [".e30", ".", ".e30.e30", "." + "A" * 342])
def test_a_correctly_signed_token_with_more_segments_is_refused(extra: str) -> None:
    # The signature covers only the first two segments: whatever follows the third must
    # not ride along on a valid signature.
    token = KEY.sign(github_claims())
    assert ours_accepts(token, KEY) is not None
    with pytest.raises(InvalidJWT) as exc:
        jws.parse(token + extra)
    assert exc.value.detail == "Failed to decode JWT"
    assert pyjwt_accepts(token + extra, KEY) is None


@pytest.mark.parametrize(
    ("header", "payload"),
    [
        (b"[]", b"{}"),
        (b"{}", b"[1]"),
        (b"not json", b"{}"),
        (b"{}", b'"string"'),
        (b"{}", b"\xff\xfe"),
        (b"{}", b"[" * 100_000),
    ],
)
def test_header_and_payload_must_be_json_objects(header: bytes, payload: bytes) -> None:
    with pytest.raises(InvalidJWT):
        jws.parse(f"{b64(header)}.{b64(payload)}.{b64(b'sig')}")


def test_a_critical_header_extension_is_refused() -> None:
    header = b64(json.dumps({"alg": "RS256", "crit": ["exp"], "exp": 1}).encode())
    payload = b64(json.dumps(github_claims()).encode())
    with pytest.raises(InvalidJWT, match="critical header"):
        jws.parse(f"{header}.{payload}.{b64(b'sig')}")


def test_an_empty_signature_parses_but_never_verifies() -> None:
    header = b64(json.dumps({"alg": "RS256"}).encode())
    payload = b64(json.dumps({"iss": "x"}).encode())
    signed = jws.parse(f"{header}.{payload}.")
    assert signed.signature == b""
    with pytest.raises(InvalidJWT, match="invalid signature"):
        signed.verify_rs256(KEY.private.public_key())


class TestCryptographyBackstop:
    """The signature check is delegated to ``cryptography``; if an upgrade changes any of
    these, ``trustpub.oidc.jws`` needs another look."""

    def test_a_signature_over_another_hash_is_refused(self) -> None:
        header = b64(json.dumps({"alg": "RS256"}).encode())
        payload = b64(json.dumps({"iss": "x"}).encode())
        signing_input = f"{header}.{payload}".encode()
        signature = KEY.private.sign(signing_input, PKCS1v15(), SHA512())
        with pytest.raises(InvalidJWT, match="invalid signature"):
            jws.parse(f"{header}.{payload}.{b64(signature)}").verify_rs256(KEY.private.public_key())

    def test_a_pss_signature_is_refused(self) -> None:
        header = b64(json.dumps({"alg": "RS256"}).encode())
        payload = b64(json.dumps({"iss": "x"}).encode())
        signing_input = f"{header}.{payload}".encode()
        pss = PSS(mgf=MGF1(SHA256()), salt_length=PSS.MAX_LENGTH)
        signature = KEY.private.sign(signing_input, pss, SHA256())
        with pytest.raises(InvalidJWT, match="invalid signature"):
            jws.parse(f"{header}.{payload}.{b64(signature)}").verify_rs256(KEY.private.public_key())

    def test_a_truncated_signature_is_refused(self) -> None:
        token = KEY.sign({"iss": "x"})
        head, body, signature = token.split(".")
        raw = base64.urlsafe_b64decode(signature + "==")
        with pytest.raises(InvalidJWT, match="invalid signature"):
            jws.parse(f"{head}.{body}.{b64(raw[:-3])}").verify_rs256(KEY.private.public_key())


def test_every_character_at_the_end_of_every_segment_is_judged_like_pyjwt() -> None:
    # Segment ends are where base64url's unused bits live: try every alphabet character
    # in the last two places of each segment.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_="
    token = KEY.sign({"iss": "https://issuer.example", "jti": "1", "n": 1})
    ends: list[int] = []
    start = 0
    for part in token.split("."):
        end = start + len(part)
        ends += [end - 2, end - 1]
        start = end + 1
    for index in ends:
        for replacement in alphabet:
            tampered = token[:index] + replacement + token[index + 1 :]
            ours, reference = ours_accepts(tampered, KEY), pyjwt_accepts(tampered, KEY)
            assert ours == reference, (index, replacement)
            if tampered != token:
                assert ours is None, (index, replacement)


@pytest.mark.parametrize(
    ("payload", "plain"),
    [
        (b'{"a":"b"}', True),
        # Escapes that cannot write a surrogate keep the fast path.
        (b'{"a":"\\u00e9\\u0064800\\\\"}', True),
        (b'{"a":"\\ud800"}', False),
        (b'{"a":"\\uDFFF"}', False),
        # A valid pair is walked too (it is text, and the walk accepts it).
        (b'{"a":"\\ud83d\\ude80"}', False),
        ('{"a":"\u00e9"}'.encode(), False),
        # ASCII bytes, but NUL bytes make json read them as UTF-16, where `\\ud800`
        # is spelt with NULs between its characters.
        ('{"a":"b"}'.encode("utf-16-le"), False),
    ],
)
def test_only_a_payload_that_cannot_hold_a_lone_surrogate_is_plain(
    payload: bytes, plain: bool
) -> None:
    # `plain_payload` lets the verifier skip its walk over the claims' strings.
    header = b64(json.dumps({"alg": "RS256"}).encode())
    assert jws.parse(f"{header}.{b64(payload)}.").plain_payload is plain
