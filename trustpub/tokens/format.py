"""The token type: one implementation for every kind of secret token trustpub hands out,
parameterised by prefix.

    trustpub_ 4Jk2…(32)…Qz 0aB9xY        TRUSTPUB_TOKENS: exchanged for a JWT, short-lived
    └prefix─┘ └── body ──┘ └crc─┘
    tpreg_    aZ3…(40)…k9                REGISTRY_TOKENS: the registry's own API tokens
    └prefix┘  └── body ──┘

- The prefix lets secret scanners recognise a leaked token, and keeps the kinds apart.
- The body is base62 from ``secrets``: 32 characters carry ~190 bits, 40 ~238 bits.
- The checksum (CRC32 of the body, base62, fixed width) lets us refuse a mistyped or
  truncated token before any store lookup, and lets scanners avoid false positives.
  Registry tokens have none: their wire format predates it, and tokens already handed
  out must keep working.

Only ``hash(token)`` (SHA-256 of the whole token) is ever stored; the token itself
exists in the response that hands it out and nowhere else on our side.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
import zlib
from dataclasses import dataclass, field

ALPHABET = string.digits + string.ascii_uppercase + string.ascii_lowercase
_ALPHABET_SET = frozenset(ALPHABET)


def _base62(value: int, width: int) -> str:
    chars = []
    for _ in range(width):
        value, digit = divmod(value, len(ALPHABET))
        chars.append(ALPHABET[digit])
    if value:
        raise ValueError("value does not fit the width")
    return "".join(reversed(chars))


@dataclass(frozen=True, slots=True)
class TokenFormat:
    """``prefix`` + ``body_length`` random base62 characters + a ``checksum_length``
    character CRC32 checksum of the body (0: none)."""

    prefix: str
    body_length: int
    checksum_length: int = 0
    length: int = field(init=False)

    def __post_init__(self) -> None:
        if self.checksum_length and len(ALPHABET) ** self.checksum_length < 2**32:
            raise ValueError("a checksum must hold every CRC32")
        object.__setattr__(
            self, "length", len(self.prefix) + self.body_length + self.checksum_length
        )

    def _checksum(self, body: str) -> str:
        return _base62(zlib.crc32(body.encode("ascii")), self.checksum_length)

    def generate(self) -> str:
        """A fresh token from the operating system's CSPRNG."""
        # One uniform draw below 62**n, written as n base62 digits, is distributed exactly
        # like n independent uniform choices (every body equally likely), at one CSPRNG
        # call instead of n: the exchange spent ~4% of its CPU here (bench/RESULTS.md).
        body = _base62(secrets.randbelow(len(ALPHABET) ** self.body_length), self.body_length)
        if self.checksum_length:
            return self.prefix + body + self._checksum(body)
        return self.prefix + body

    def problem(self, token: object) -> str | None:
        """Why ``token`` is not one of these tokens (``None``: it is well formed).

        The reason names what is wrong, never the token's characters, so it can be
        shown to whoever presented it.
        """
        if not isinstance(token, str):
            return "not a string"
        if not token.startswith(self.prefix):
            return f"does not start with `{self.prefix}`"
        if len(token) != self.length:
            return f"a `{self.prefix}` token has {self.length} characters, not {len(token)}"
        rest = token[len(self.prefix) :]
        if not _ALPHABET_SET.issuperset(rest):
            return f"a `{self.prefix}` token has only letters and digits after its prefix"
        if self.checksum_length:
            body, checksum = rest[: self.body_length], rest[self.body_length :]
            if not hmac.compare_digest(self._checksum(body), checksum):
                return "checksum mismatch (mistyped or truncated?)"
        return None

    def is_well_formed(self, token: object) -> bool:
        """Whether ``token`` has the prefix, length, alphabet and checksum. Cheap and
        store-free: garbage (another kind of token, a JWT, a typo) is refused here."""
        # The common checks inline: this runs on every request that carries a token.
        if not isinstance(token, str) or len(token) != self.length:
            return False
        if not token.startswith(self.prefix):
            return False
        return self.problem(token) is None

    @staticmethod
    def hash(token: str) -> bytes:
        """The SHA-256 of the whole token: the only form a store ever sees.

        A plain hash (no salt, no slow KDF) is right here: the token carries ~190 bits
        of entropy or more, so a stolen store cannot be brute-forced, and lookups stay a
        single index probe.
        """
        return hashlib.sha256(token.encode("utf-8")).digest()


TRUSTPUB_TOKENS = TokenFormat("trustpub_", body_length=32, checksum_length=6)
REGISTRY_TOKENS = TokenFormat("tpreg_", body_length=40)

# The trustpub token's constants and functions by their long-standing names.
PREFIX = TRUSTPUB_TOKENS.prefix
BODY_LENGTH = TRUSTPUB_TOKENS.body_length
CHECKSUM_LENGTH = TRUSTPUB_TOKENS.checksum_length
TOKEN_LENGTH = TRUSTPUB_TOKENS.length
generate_token = TRUSTPUB_TOKENS.generate
is_well_formed = TRUSTPUB_TOKENS.is_well_formed
token_hash = TokenFormat.hash
