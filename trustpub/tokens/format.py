"""The token format: ``trustpub_`` + 32 random base62 characters + a 6-character checksum.

    trustpub_ 4Jk2…(32)…Qz 0aB9xY
    └prefix─┘ └── body ──┘ └crc─┘

- The prefix lets secret scanners recognise a leaked token.
- The body carries 32 * log2(62) ~ 190 bits from ``secrets``: unguessable.
- The checksum (CRC32 of the body, base62, fixed width) lets us refuse a mistyped or
  truncated token before any store lookup, and lets scanners avoid false positives.

Only ``token_hash(token)`` is ever stored; the token itself exists in the exchange
response and nowhere else on our side.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
import zlib

PREFIX = "trustpub_"
ALPHABET = string.digits + string.ascii_uppercase + string.ascii_lowercase
BODY_LENGTH = 32
CHECKSUM_LENGTH = 6
TOKEN_LENGTH = len(PREFIX) + BODY_LENGTH + CHECKSUM_LENGTH

_ALPHABET_SET = frozenset(ALPHABET)


def _base62(value: int, width: int) -> str:
    chars = []
    for _ in range(width):
        value, digit = divmod(value, len(ALPHABET))
        chars.append(ALPHABET[digit])
    if value:
        raise ValueError("value does not fit the width")
    return "".join(reversed(chars))


def _checksum(body: str) -> str:
    # 62**6 > 2**32, so every CRC32 has exactly one 6-character encoding.
    return _base62(zlib.crc32(body.encode("ascii")), CHECKSUM_LENGTH)


def generate_token() -> str:
    """A fresh token from the operating system's CSPRNG."""
    # One uniform draw below 62**32, written as 32 base62 digits, is distributed exactly
    # like 32 independent uniform choices (every body equally likely), at one CSPRNG
    # call instead of 32: the exchange spent ~4% of its CPU here (bench/RESULTS.md).
    body = _base62(secrets.randbelow(len(ALPHABET) ** BODY_LENGTH), BODY_LENGTH)
    return PREFIX + body + _checksum(body)


def is_well_formed(token: str) -> bool:
    """Whether ``token`` has our prefix, length, alphabet and a matching checksum.

    Cheap and store-free: garbage (a crates.io token, a JWT, a typo) is refused here.
    """
    if not isinstance(token, str) or len(token) != TOKEN_LENGTH:
        return False
    if not token.startswith(PREFIX):
        return False
    rest = token[len(PREFIX) :]
    if not _ALPHABET_SET.issuperset(rest):
        return False
    body, checksum = rest[:BODY_LENGTH], rest[BODY_LENGTH:]
    return hmac.compare_digest(_checksum(body), checksum)


def token_hash(token: str) -> bytes:
    """The SHA-256 of the whole token: the only form a store ever sees.

    A plain hash (no salt, no slow KDF) is right here: the token has ~190 bits of
    entropy, so a stolen store cannot be brute-forced, and lookups stay O(1).
    """
    return hashlib.sha256(token.encode("utf-8")).digest()
