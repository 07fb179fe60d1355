"""JWT verification: from a raw OIDC token to ``VerifiedClaims``, or a refusal.

The order of the checks matters:

1. size cap on the raw token, then the unverified header: ``alg`` must be RS256;
2. the unverified ``iss`` must be a configured issuer (before any network access, so
   a token cannot make us fetch keys from a host we did not choose);
3. ``kid`` names the issuer's key (``KeySets`` refreshes on an unknown one, rate-limited);
4. the RS256 signature is checked with that key (``trustpub.oidc.jws``: one parse);
5. the claims of the verified payload are checked here, types first, with our clock:
   every string is valid Unicode text, ``exp``, ``iat`` and ``nbf`` are integers of a
   sane magnitude, and ``exp - iat`` is at most ``max_lifetime`` (so no token can ask
   us to remember its ``jti`` for centuries, or overflow the store doing so).

Every refusal is an ``InvalidJWT`` or ``UnsupportedIssuer`` whose detail starts with
the text crates.io users know, and never contains the token.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any, Final

from trustpub.errors import ConfigurationError, InvalidJWT, UnsupportedIssuer
from trustpub.oidc import jws
from trustpub.oidc.claims import VerifiedClaims
from trustpub.oidc.issuers import Issuer
from trustpub.oidc.keys import KeySets
from trustpub.text import encodable, shown

# Real CI tokens are 1-2 KiB; a cap bounds the parsing work a request can cause.
MAX_TOKEN_LENGTH: Final = 16 * 1024
# An unknown issuer is echoed back to help users, but only this much of it.
MAX_ECHOED_ISSUER: Final = 200

ALGORITHM: Final = "RS256"
REQUIRED_CLAIMS: Final = ("iss", "exp", "iat", "aud", "jti")

DEFAULT_MAX_LIFETIME: Final = 32 * 24 * 3600
"""Longest ``exp - iat`` accepted by default: 32 days. GitHub tokens live 300 s; a
GitLab id_token lives as long as its job's timeout, which GitLab caps at one month
(project, runner and job ``timeout`` alike), so no real token comes near it."""
# NumericDates outside [0, year 9999] are nonsense from any issuer; bounding them keeps
# every later sum (`exp + leeway`, a store's expiry) a small, representable integer.
MAX_NUMERIC_DATE: Final = 253_402_300_799

_decode_failed = jws.decode_failed


class Verifier:
    """Verifies OIDC tokens of the configured issuers for one audience."""

    def __init__(
        self,
        issuers: Iterable[Issuer],
        audience: str,
        keys: KeySets,
        *,
        leeway: int = 60,
        max_lifetime: int = DEFAULT_MAX_LIFETIME,
        clock: Callable[[], float] = time.time,
    ) -> None:
        by_url: dict[str, Issuer] = {}
        for issuer in issuers:
            if issuer.url in by_url:
                raise ConfigurationError(f"issuer {issuer.url} is configured twice")
            by_url[issuer.url] = issuer
        if not audience:
            raise ConfigurationError("the OIDC audience must not be empty")
        if leeway < 0:
            raise ConfigurationError("the JWT leeway must not be negative")
        if max_lifetime <= 0:
            raise ConfigurationError("the maximum JWT lifetime must be positive")
        self._issuers: Mapping[str, Issuer] = MappingProxyType(by_url)
        self._audience = audience
        self._keys = keys
        self._leeway = leeway
        self._max_lifetime = max_lifetime
        self._clock = clock

    async def verify(self, token: str) -> VerifiedClaims:
        """The token's claims once signature, issuer, audience and lifetime are checked.

        Raises ``InvalidJWT``, ``UnsupportedIssuer`` or ``KeySetUnavailable``.
        """
        if not isinstance(token, str) or not token:
            raise _decode_failed()
        if len(token) > MAX_TOKEN_LENGTH:
            raise _decode_failed("token is too large")

        signed = jws.parse(token)
        header = signed.header
        # RS256 only, checked before anything else: never "none" (no signature), never
        # HMAC (an attacker could sign with the issuer's public key as the secret).
        if header.get("alg") != ALGORITHM:
            raise _decode_failed("unsupported algorithm (expected RS256)")

        # The unverified `iss` only chooses the issuer, and with it the key; the claims
        # are trusted only once that key has checked the signature.
        issuer = self._issuer(signed.payload.get("iss"))

        kid = header.get("kid")
        if kid is None or kid == "":
            raise InvalidJWT("Missing JWT key ID")
        if not isinstance(kid, str):
            raise InvalidJWT("Invalid JWT key ID")
        key = await self._keys.get_key(issuer, kid)
        signed.verify_rs256(key)
        claims = signed.payload

        return self._check_claims(issuer, claims, checked_text=signed.plain_payload)

    def _issuer(self, iss: object) -> Issuer:
        if iss is None:
            raise _decode_failed("missing required claim `iss`")
        if not isinstance(iss, str) or not iss:
            raise _decode_failed("claim `iss` must be a non-empty string")
        issuer = self._issuers.get(iss)
        if issuer is None:
            # Echo the issuer so users see what their CI sent, but bounded and printable:
            # the detail goes into responses and logs.
            raise UnsupportedIssuer(f"Unsupported JWT issuer: {_printable(iss)}")
        return issuer

    def _check_claims(
        self, issuer: Issuer, claims: dict[str, Any], *, checked_text: bool = False
    ) -> VerifiedClaims:
        """``checked_text``: the payload's JSON text cannot hold a lone surrogate
        (``jws.SignedToken.plain_payload``), so the walk over its strings is skipped."""
        for name in REQUIRED_CLAIMS:
            if claims.get(name) is None:
                raise _decode_failed(f"missing required claim `{name}`")
        if not checked_text:
            _check_text(claims)
        # Types before values: JSON gives floats, booleans and lists where integers and
        # strings are expected.
        iss = _require_str(claims, "iss")
        aud = claims.get("aud")
        jti = _require_str(claims, "jti")
        exp = _require_int(claims, "exp")
        iat = _require_int(claims, "iat")
        nbf = _optional_int(claims, "nbf")

        if iss != issuer.url:
            raise _decode_failed("claim `iss` does not match the issuer")  # pragma: no cover

        # We must be the ONLY audience: a token minted for several relying parties could
        # be replayed here by any of them. A one-element list is refused as well.
        if not isinstance(aud, str):
            raise _decode_failed("claim `aud` must be a single string")
        if aud != self._audience:
            raise _decode_failed(f"audience does not match (expected `{self._audience}`)")

        # An issuer states the lifetime; we bound it. A token claiming to live for years
        # is forged or misconfigured, and its jti would have to be remembered as long.
        if exp <= iat:
            raise _decode_failed("claim `exp` must be after `iat`")
        if exp - iat > self._max_lifetime:
            raise _decode_failed(
                f"token lifetime (`exp` - `iat`) of {exp - iat} s exceeds the maximum of "
                f"{self._max_lifetime} s"
            )

        now = self._clock()
        # RFC 7519: the token must not be accepted on or after `exp`; leeway absorbs
        # clock skew between the issuer and us.
        if now >= exp + self._leeway:
            raise _decode_failed("token has expired")
        if nbf is not None and now < nbf - self._leeway:
            raise _decode_failed("token is not yet valid (nbf)")
        # A token issued in the future is refused too (crates.io does the same): its
        # issuer's clock is wrong or the token is forged to outlive its lifetime.
        if now < iat - self._leeway:
            raise _decode_failed("token was issued in the future (iat)")

        return VerifiedClaims(
            issuer=issuer,
            jti=jti,
            issued_at=iat,
            expires_at=exp,
            # The dict is this call's own (fresh from the JSON parse), so it is wrapped,
            # not copied.
            claims=MappingProxyType(claims),
        )


def _require_str(claims: Mapping[str, Any], name: str) -> str:
    value = claims.get(name)
    if not isinstance(value, str) or not value:
        raise _decode_failed(f"claim `{name}` must be a non-empty string")
    return value


def _require_int(claims: Mapping[str, Any], name: str) -> int:
    value = _optional_int(claims, name)
    if value is None:
        raise _decode_failed(f"missing required claim `{name}`")
    return value


def _optional_int(claims: Mapping[str, Any], name: str) -> int | None:
    value = claims.get(name)
    if value is None:
        return None
    # JSON numbers: `true` parses as bool (an int subclass) and 1.5e9 as float; a
    # NumericDate here must be a plain integer.
    if isinstance(value, bool) or not isinstance(value, int):
        raise _decode_failed(f"claim `{name}` must be an integer")
    if not 0 <= value <= MAX_NUMERIC_DATE:
        raise _decode_failed(f"claim `{name}` is out of range")
    return value


def _check_text(claims: Mapping[str, Any]) -> None:
    """Refuse a claim set holding a string that is not valid Unicode text.

    JSON lets a string carry a lone surrogate (`"\\ud800"`); no issuer signs one, and any
    message, log line or store key built from it could not be encoded. Every key and
    string value is checked, nested ones too (the token size cap bounds the walk).
    """
    pending: list[object] = [claims]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if not encodable(item):
                raise _decode_failed(f"a claim holds invalid Unicode text: `{shown(item)}`")
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)


def _printable(value: str) -> str:
    clipped = value[:MAX_ECHOED_ISSUER]
    cleaned = "".join(ch if ch.isprintable() else "?" for ch in clipped)
    return cleaned + ("…" if len(value) > MAX_ECHOED_ISSUER else "")
