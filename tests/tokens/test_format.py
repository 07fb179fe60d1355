"""Token format: prefix, entropy, alphabet, checksum, hashing."""

from __future__ import annotations

import hashlib
import math
import secrets

import pytest

from trustpub.tokens import (
    PREFIX,
    REGISTRY_TOKENS,
    TOKEN_LENGTH,
    TRUSTPUB_TOKENS,
    TokenFormat,
    generate_token,
    is_well_formed,
    token_hash,
)
from trustpub.tokens import format as format_module
from trustpub.tokens.format import ALPHABET, BODY_LENGTH, CHECKSUM_LENGTH


def test_token_has_the_scanner_visible_prefix_and_fixed_length() -> None:
    token = generate_token()
    assert PREFIX == "trustpub_"
    assert token.startswith("trustpub_")
    assert len(token) == TOKEN_LENGTH == len(PREFIX) + BODY_LENGTH + CHECKSUM_LENGTH


def test_body_carries_at_least_160_bits_of_entropy() -> None:
    assert len(set(ALPHABET)) == 62
    assert BODY_LENGTH * math.log2(len(ALPHABET)) >= 160


def test_tokens_use_only_base62_after_the_prefix() -> None:
    for _ in range(200):
        assert set(generate_token()[len(PREFIX) :]) <= set(ALPHABET)


def test_tokens_are_unique_and_spread_over_the_alphabet() -> None:
    tokens = {generate_token() for _ in range(2000)}
    assert len(tokens) == 2000
    bodies = "".join(t[len(PREFIX) : len(PREFIX) + BODY_LENGTH] for t in tokens)
    assert set(bodies) == set(ALPHABET)


def test_random_bytes_map_onto_the_alphabet_without_bias() -> None:
    # Every character is the image of exactly four byte values; the other eight are
    # dropped, never mapped (a plain `b % 62` would favour the first eight characters).
    images: dict[int, list[int]] = {}
    kept = bytes(range(256)).translate(format_module._BYTE_TO_CHAR, format_module._REJECTED)
    assert len(kept) == 248
    for byte, char in zip(range(248), kept, strict=True):
        images.setdefault(char, []).append(byte)
    assert sorted(chr(c) for c in images) == sorted(ALPHABET)
    assert {len(v) for v in images.values()} == {4}


def test_dropped_random_bytes_are_made_up_by_another_draw(monkeypatch: pytest.MonkeyPatch) -> None:
    draws: list[int] = []
    # The second draw keeps exactly the 27 characters still wanted: no third draw.
    stream = iter([bytes([255] * 35 + [0, 61, 62, 123, 247]), bytes(range(27)) + bytes([250] * 8)])

    def token_bytes(count: int) -> bytes:
        draws.append(count)
        return next(stream)[:count]

    monkeypatch.setattr(secrets, "token_bytes", token_bytes)
    token = generate_token()
    # 40 bytes asked for the 32 characters; 35 of them dropped, 5 kept: 27 more wanted.
    assert draws == [BODY_LENGTH + 8, BODY_LENGTH - 5 + 8]
    body = token[len(PREFIX) : len(PREFIX) + BODY_LENGTH]
    assert body == "0z0zz" + ALPHABET[:27]
    assert is_well_formed(token)


def test_characters_are_uniform_over_the_alphabet() -> None:
    # 62 * 400 characters: each character's count stays within 6 standard deviations.
    count = 62 * 400
    chars = "".join(
        TRUSTPUB_TOKENS.generate()[len(PREFIX) : len(PREFIX) + BODY_LENGTH]
        for _ in range(count // BODY_LENGTH + 1)
    )[:count]
    expected = count / 62
    spread = 6 * math.sqrt(expected)
    assert all(abs(chars.count(c) - expected) < spread for c in ALPHABET)


def test_generated_tokens_are_well_formed() -> None:
    assert all(is_well_formed(generate_token()) for _ in range(200))


def test_every_single_character_change_is_caught_by_the_checksum() -> None:
    token = generate_token()
    start = len(PREFIX)
    for position in range(start, TOKEN_LENGTH):
        for replacement in ALPHABET:
            if replacement == token[position]:
                continue
            changed = token[:position] + replacement + token[position + 1 :]
            assert not is_well_formed(changed), (position, replacement)


def test_swapped_adjacent_characters_are_caught() -> None:
    token = generate_token()
    for i in range(len(PREFIX), TOKEN_LENGTH - 1):
        if token[i] != token[i + 1]:
            swapped = token[:i] + token[i + 1] + token[i] + token[i + 2 :]
            assert not is_well_formed(swapped)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-1],
        lambda t: t + "a",
        lambda t: "crates_" + t[len(PREFIX) :] + "aa",
        lambda t: "TRUSTPUB_" + t[len(PREFIX) :],
        lambda t: t[: len(PREFIX)] + "-" + t[len(PREFIX) + 1 :],
        lambda t: t[:-1] + "é",
        lambda t: " " + t[:-1],
        lambda t: "",
        lambda t: PREFIX,
    ],
    ids=[
        "truncated",
        "extended",
        "other-prefix",
        "prefix-case",
        "bad-char",
        "non-ascii",
        "whitespace",
        "empty",
        "prefix-only",
    ],
)
def test_malformed_tokens_are_refused(mangle: object) -> None:
    assert callable(mangle)
    assert not is_well_formed(mangle(generate_token()))


def test_non_string_is_refused() -> None:
    assert not is_well_formed(None)
    assert not is_well_formed(generate_token().encode())


def test_token_hash_is_sha256_of_the_whole_token() -> None:
    token = generate_token()
    assert token_hash(token) == hashlib.sha256(token.encode()).digest()
    assert len(token_hash(token)) == 32
    assert token_hash(token) != token_hash(generate_token())


# Made by the implementations that came before TokenFormat, with their hashes as stored:
# tokens handed out then must keep working.
ISSUED_BEFORE = [
    (
        TRUSTPUB_TOKENS,
        "trustpub_yqmhiFNn4gii3s0YIxznmK0iOLZkHYX32dNdVG",
        "3842cc810b2721c7dc8804ca9431d2608b57b02957e25f5026f45172d3c04def",
    ),
    (
        REGISTRY_TOKENS,
        "tpreg_w66APnAILGYzw0WgL5njClTSV8F3dJ1qGwvwC5OF",
        "09bd4b717681a740e8afc27f9df7c91c0452c11b70b7e45cb3882ab165d2f273",
    ),
]


@pytest.mark.parametrize(("kind", "token", "stored"), ISSUED_BEFORE)
def test_tokens_issued_before_stay_valid_with_the_same_hash(
    kind: TokenFormat, token: str, stored: str
) -> None:
    assert kind.is_well_formed(token)
    assert kind.problem(token) is None
    assert kind.hash(token).hex() == stored


@pytest.mark.parametrize("kind", [TRUSTPUB_TOKENS, REGISTRY_TOKENS])
def test_both_kinds_share_generation_and_refuse_each_other(kind: TokenFormat) -> None:
    other = REGISTRY_TOKENS if kind is TRUSTPUB_TOKENS else TRUSTPUB_TOKENS
    tokens = {kind.generate() for _ in range(500)}
    assert len(tokens) == 500
    assert all(kind.is_well_formed(t) and len(t) == kind.length for t in tokens)
    assert not any(other.is_well_formed(t) for t in tokens)
    assert set("".join(t[len(kind.prefix) :] for t in tokens)) == set(ALPHABET)


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (None, "not a string"),
        ("tpreg_" + "a" * 40, "does not start with `trustpub_`"),
        ("trustpub_abc", "a `trustpub_` token has 47 characters, not 12"),
        ("trustpub_" + "a" * 37 + "!", "a `trustpub_` token has only letters and digits"),
        ("trustpub_" + "a" * 38, "checksum mismatch"),
    ],
)
def test_a_malformed_token_is_refused_with_a_reason_that_never_quotes_it(
    token: object, reason: str
) -> None:
    problem = TRUSTPUB_TOKENS.problem(token)
    assert problem is not None
    assert problem.startswith(reason)
    assert not TRUSTPUB_TOKENS.is_well_formed(token)
    if isinstance(token, str):
        assert token[len(PREFIX) :] not in problem


def test_a_checksum_must_hold_every_crc32() -> None:
    with pytest.raises(ValueError, match="CRC32"):
        TokenFormat("x_", body_length=10, checksum_length=5)
    assert TokenFormat("x_", body_length=10).length == 12
    # Six base62 characters hold every CRC32 (62**6 > 2**32): allowed, and counted.
    kind = TokenFormat("x_", body_length=10, checksum_length=6)
    assert kind.length == 18
    token = kind.generate()
    assert len(token) == 18
    assert kind.problem(token) is None
    assert kind.is_well_formed(token)
