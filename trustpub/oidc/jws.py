"""Compact JWS, RS256 only: split, decode and check a signature, in one pass.

Why not pyjwt here: verifying a token with pyjwt parses it three times (header,
unverified payload to pick the issuer, verified decode), and its base64url check runs a
Python loop over every character; together that was most of an exchange's CPU. This
module parses once, with the same strictness, and checks the signature with
``cryptography`` directly. pyjwt stays the reference: the tests compare the two on the
same tokens.

The token is matched by one pattern, encoded and translated to the standard base64
alphabet once, and its segments decoded from slices; ``plain_payload`` tells the
verifier when its walk over every claim string (for lone surrogates) cannot find one.
Together: ``Verifier.verify`` without the RSA check 105 -> 70 us per call on the dev
machine (``bench/exchange_pieces.py``).
"""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass
from typing import Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.hashes import SHA256

from trustpub import jsoncodec
from trustpub.errors import InvalidJWT

DECODE_FAILED: Final = "Failed to decode JWT"

# base64url without padding (RFC 7515 §2), three segments, matched in one pass. The
# signature may be empty here so that an unsigned ("alg": "none") token is refused for
# its algorithm, with a clear message.
_COMPACT = re.compile(r"([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]*)")
_URLSAFE_TO_STANDARD = bytes.maketrans(b"-_", b"+/")
# Each byte's base64url value (0 for any other byte: only the last character of a segment
# is looked up, and the pattern has checked it).
_SEXTET = bytes(
    max(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".find(i), 0)
    for i in range(256)
)
# By the length of a segment modulo 4: the bits of its last character that encode no
# byte, and the padding it lacks. A segment of 4k+1 characters is no encoding at all:
# ``a2b_base64`` refuses it.
_UNUSED_BITS = (0, 0, 0b1111, 0b11)
_B64_PADDING = (b"", b"", b"==", b"=")
# Stateless parameters of every signature check, built once.
_PKCS1V15 = PKCS1v15()
_SHA256 = SHA256()
# A JSON escape that can write a UTF-16 surrogate (U+D800-U+DFFF), lone or paired.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def decode_failed(reason: str | None = None) -> InvalidJWT:
    return InvalidJWT(DECODE_FAILED if reason is None else f"{DECODE_FAILED}: {reason}")


@dataclass(frozen=True, slots=True)
class SignedToken:
    """A compact JWS split and decoded, its signature NOT yet checked.

    ``plain_payload`` is True when the payload's JSON text is ASCII and holds no escape
    that can write a surrogate: none of its strings can then hold a lone surrogate, and
    the verifier skips its walk over them (``trustpub.oidc.verify._check_text``).
    """

    header: dict[str, Any]
    payload: dict[str, Any]
    signing_input: bytes
    signature: bytes
    plain_payload: bool = False

    def verify_rs256(self, key: RSAPublicKey) -> None:
        """Check the RS256 signature with ``key``; raise ``InvalidJWT`` if it fails."""
        try:
            key.verify(self.signature, self.signing_input, _PKCS1V15, _SHA256)
        except InvalidSignature:
            raise decode_failed("invalid signature") from None


def parse(token: str) -> SignedToken:
    """Split and decode a compact JWS. Raises ``InvalidJWT`` for anything malformed."""
    match = _COMPACT.fullmatch(token)
    if match is None:
        raise decode_failed()
    # ASCII by the pattern: encoded once, translated to the standard alphabet once, and
    # each segment decoded from its slice.
    raw = token.encode("ascii")
    standard = raw.translate(_URLSAFE_TO_STANDARD)
    header_end = match.end(1)
    payload_end = match.end(2)
    header = _json_object(_b64decode(raw, standard, 0, header_end))
    payload_json = _b64decode(raw, standard, header_end + 1, payload_end)
    payload = _json_object(payload_json)
    # RFC 7515 §4.1.11: a header naming critical extensions we do not implement (such as
    # an unencoded payload, RFC 7797) must be refused; we implement none.
    if "crit" in header:
        raise decode_failed("unsupported critical header parameters")
    return SignedToken(
        header=header,
        payload=payload,
        signing_input=raw[:payload_end],
        signature=_b64decode(raw, standard, payload_end + 1, len(raw)),
        plain_payload=_plain(payload_json),
    )


def _plain(text: bytes) -> bool:
    """Whether JSON ``text`` cannot decode to a string holding a surrogate.

    ``json.loads`` decodes bytes as UTF-8, UTF-16 or UTF-32 (chosen by their first
    bytes, with ``surrogatepass``) before parsing. ASCII without NUL bytes can only be
    read as UTF-8 and encodes no surrogate itself, so only a ``\\uD8..``-``\\uDF..``
    escape could write one.
    """
    return (
        text.isascii()
        and b"\x00" not in text
        and (b"\\u" not in text or _SURROGATE_ESCAPE.search(text) is None)
    )


def _b64decode(raw: bytes, standard: bytes, start: int, end: int) -> bytes:
    """Decode the base64url segment ``raw[start:end]`` (``standard`` is ``raw`` in the
    standard alphabet), already checked to hold only base64url characters."""
    rest = (end - start) & 3
    unused = _UNUSED_BITS[rest]
    # Canonical encodings only: a last character whose unused low bits are set decodes
    # to the same bytes, which would make one signed token spellable several ways.
    if _SEXTET[raw[end - 1]] & unused:
        raise decode_failed()
    try:
        return binascii.a2b_base64(standard[start:end] + _B64_PADDING[rest])
    except binascii.Error:
        raise decode_failed() from None


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        # json.loads(raw), by orjson where that is the same (trustpub.jsoncodec): UTF-8,
        # -16 or -32 by the first bytes, with surrogatepass (so a lone surrogate can
        # arrive; the verifier refuses it).
        value = jsoncodec.loads(raw)
    except (ValueError, RecursionError):
        raise decode_failed() from None
    if not isinstance(value, dict):
        raise decode_failed()
    return value
