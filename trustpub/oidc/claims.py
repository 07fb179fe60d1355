"""Verified claims: the only form in which token data reaches policy matching."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from trustpub.errors import InvalidJWT
from trustpub.oidc.issuers import Issuer
from trustpub.text import encodable


def optional_str_claim(claims: Mapping[str, object], name: str) -> str | None:
    """A claim as a string, None when absent; a claim of another type is refused."""
    value = claims.get(name)
    if type(value) is str and value.isascii():
        # The common case, decided at once: an ASCII string is valid text.
        return value
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidJWT(
            f"Invalid JWT claim `{name}`: expected a string, got {type(value).__name__}"
        )
    if not encodable(value):
        # JSON allows a lone surrogate (`"\ud800"`); no issuer signs one, and a message
        # or log line quoting it could not be written.
        raise InvalidJWT(f"Invalid JWT claim `{name}`: not valid Unicode text")
    return value


def required_str_claim(claims: Mapping[str, object], name: str) -> str:
    """A claim as a non-empty string; absent, empty or mistyped is refused."""
    value = optional_str_claim(claims, name)
    if not value:
        raise InvalidJWT(f"Invalid JWT: missing required claim `{name}`")
    return value


@dataclass(frozen=True, slots=True)
class VerifiedClaims:
    """Claims of a JWT whose signature, issuer, audience and lifetime were checked.

    Built by ``trustpub.oidc.verify`` only; matching code accepts nothing else, so
    unverified data cannot be matched against a policy by mistake.
    """

    issuer: Issuer
    jti: str
    issued_at: int
    expires_at: int
    claims: Mapping[str, object]

    def optional_str(self, name: str) -> str | None:
        return optional_str_claim(self.claims, name)

    def required_str(self, name: str) -> str:
        return required_str_claim(self.claims, name)
