"""The token type: one implementation for every kind of secret token trustpub hands out,
parameterised by prefix.

    trustpub_ 4Jk2…(32)…Qz 0aB9xY        TRUSTPUB_TOKENS: exchanged for a JWT, short-lived
    └prefix─┘ └── body ──┘ └crc─┘
    tpreg_    aZ3…(40)…k9                REGISTRY_TOKENS: the registry's own API tokens
    └prefix┘  └── body ──┘

- The prefix lets secret scanners recognise a leaked token, and keeps the kinds apart.
- The body is base62 from ``secrets``: 32 characters carry ~190 bits, 40 ~238 bits
  (``_random_base62``: random bytes mapped without bias, one CSPRNG call).
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

# Random bytes to base62 characters, unbiased: the 248 byte values below 4 * 62 map onto
# the alphabet four each (``b % 62``), the 8 above are dropped (``bytes.translate``'s
# delete argument) and made up by more random bytes. Every accepted byte is uniform over
# the 62 characters and independent of the others, so a body is as likely as any other:
# 32 characters still carry 32 * log2(62) ~ 190.5 bits.
_ACCEPTED = 4 * len(ALPHABET)
_BYTE_TO_CHAR = bytes(ord(ALPHABET[b % len(ALPHABET)]) for b in range(_ACCEPTED)) + bytes(
    256 - _ACCEPTED
)
_REJECTED = bytes(range(_ACCEPTED, 256))
# Random bytes drawn beyond the length needed, so that one draw almost always suffices
# (8 of 256 values are dropped: 32 + 8 bytes fall short about once in 300,000 draws).
_SPARE_BYTES = 8


def _random_base62(length: int) -> str:
    """``length`` independent, uniform base62 characters from the OS's CSPRNG."""
    chars = b""
    while len(chars) < length:
        chars += secrets.token_bytes(length - len(chars) + _SPARE_BYTES).translate(
            _BYTE_TO_CHAR, _REJECTED
        )
    return chars[:length].decode("ascii")


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
        # n independent uniform characters (every body equally likely), mapped from one
        # CSPRNG draw by a C-level table: no per-character Python (the exchange spent ~3%
        # of its CPU here, bench/exchange_pieces.py).
        body = _random_base62(self.body_length)
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
