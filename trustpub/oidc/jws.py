"""Compact JWS, RS256 only: split, decode and check a signature, in one pass.

Why not pyjwt here: verifying a token with pyjwt parses it three times (header,
unverified payload to pick the issuer, verified decode), and its base64url check runs a
Python loop over every character; together that was most of an exchange's CPU. This
module parses once, with the same strictness, and checks the signature with
``cryptography`` directly. pyjwt stays the reference: the tests compare the two on the
same tokens.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.hashes import SHA256

from trustpub.errors import InvalidJWT

DECODE_FAILED: Final = "Failed to decode JWT"

# base64url without padding (RFC 7515 §2). The signature may be empty here so that an
# unsigned ("alg": "none") token is refused for its algorithm, with a clear message.
_SEGMENT = re.compile(r"[A-Za-z0-9_-]*")


def decode_failed(reason: str | None = None) -> InvalidJWT:
    return InvalidJWT(DECODE_FAILED if reason is None else f"{DECODE_FAILED}: {reason}")


@dataclass(frozen=True, slots=True)
class SignedToken:
    """A compact JWS split and decoded, its signature NOT yet checked."""

    header: dict[str, Any]
    payload: dict[str, Any]
    signing_input: bytes
    signature: bytes

    def verify_rs256(self, key: RSAPublicKey) -> None:
        """Check the RS256 signature with ``key``; raise ``InvalidJWT`` if it fails."""
        try:
            key.verify(self.signature, self.signing_input, PKCS1v15(), SHA256())
        except InvalidSignature:
            raise decode_failed("invalid signature") from None


def parse(token: str) -> SignedToken:
    """Split and decode a compact JWS. Raises ``InvalidJWT`` for anything malformed."""
    parts = token.split(".")
    if (
        len(parts) != 3
        or not parts[0]
        or not parts[1]
        or not all(_SEGMENT.fullmatch(part) for part in parts)
    ):
        raise decode_failed()
    header = _json_object(_b64decode(parts[0]))
    payload = _json_object(_b64decode(parts[1]))
    # RFC 7515 §4.1.11: a header naming critical extensions we do not implement (such as
    # an unencoded payload, RFC 7797) must be refused; we implement none.
    if "crit" in header:
        raise decode_failed("unsupported critical header parameters")
    return SignedToken(
        header=header,
        payload=payload,
        signing_input=f"{parts[0]}.{parts[1]}".encode("ascii"),
        signature=_b64decode(parts[2]),
    )


def _b64decode(segment: str) -> bytes:
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        raise decode_failed() from None
    # Canonical encodings only: a last character whose unused low bits are set decodes
    # to the same bytes, which would make one signed token spellable several ways.
    if base64.urlsafe_b64encode(raw).rstrip(b"=") != segment.encode("ascii"):
        raise decode_failed()
    return raw


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        raise decode_failed() from None
    if not isinstance(value, dict):
        raise decode_failed()
    return value
