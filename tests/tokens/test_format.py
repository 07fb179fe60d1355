"""Token format: prefix, entropy, alphabet, checksum, hashing."""

from __future__ import annotations

import hashlib
import math

import pytest

from trustpub.tokens import PREFIX, TOKEN_LENGTH, generate_token, is_well_formed, token_hash
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
