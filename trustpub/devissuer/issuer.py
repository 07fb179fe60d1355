"""The development issuer: one RSA key, a claim-set template, and token minting."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from trustpub.devissuer.claims import DEFAULT_LIFETIME, build_claims
from trustpub.oidc.issuers import PROVIDER_KINDS, Issuer, ProviderKind

KEY_SIZE = 2048


def generate_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=KEY_SIZE)


def load_key(path: str | os.PathLike[str]) -> rsa.RSAPrivateKey:
    """An unencrypted PEM RSA private key (PKCS#1 or PKCS#8)."""
    data = Path(path).read_bytes()
    key = serialization.load_pem_private_key(data, password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(f"{path}: not an RSA private key (the dev issuer signs RS256)")
    return key


def save_key(key: rsa.RSAPrivateKey, path: str | os.PathLike[str]) -> None:
    """Write ``key`` as PKCS#8 PEM, readable by its owner only."""
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # Create with 0600 from the start: a private key must never be briefly world-readable.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def public_jwk(key: rsa.RSAPrivateKey) -> dict[str, str]:
    """The public half as a bare RSA JWK (``kty``, ``n``, ``e``)."""
    numbers = key.public_key().public_numbers()

    def to_bytes(n: int) -> bytes:
        return n.to_bytes((n.bit_length() + 7) // 8, "big")

    return {"kty": "RSA", "n": _b64url(to_bytes(numbers.n)), "e": _b64url(to_bytes(numbers.e))}


def key_thumbprint(key: rsa.RSAPrivateKey) -> str:
    """RFC 7638 thumbprint: a stable ``kid`` for a given key, across restarts."""
    jwk = public_jwk(key)
    canonical = json.dumps(
        {"e": jwk["e"], "kty": "RSA", "n": jwk["n"]}, separators=(",", ":"), sort_keys=True
    )
    return _b64url(hashlib.sha256(canonical.encode("ascii")).digest())


class DevIssuer:
    """A local OIDC issuer that mints GitHub- or GitLab-shaped RS256 tokens.

    ``url`` is the issuer URL placed in ``iss`` (and the base of discovery); tokens are
    accepted by trustpub only when that URL is configured as a development issuer.
    ``claims_overrides`` apply to every token, ``mint(**overrides)`` to one; an
    override of ``None`` removes a claim. ``request_token`` guards ``/token`` and
    ``/mint`` the way ``ACTIONS_ID_TOKEN_REQUEST_TOKEN`` guards the Actions endpoint.
    ``audience``, if given, is what ``/token`` and ``/mint`` sign for when a request
    names no audience (a running trustpub's audience, say).
    """

    def __init__(
        self,
        url: str,
        *,
        key: rsa.RSAPrivateKey | None = None,
        kid: str | None = None,
        provider: ProviderKind = "github",
        claims_overrides: Mapping[str, Any] | None = None,
        request_token: str | None = None,
        lifetime: int = DEFAULT_LIFETIME,
        audience: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if provider not in PROVIDER_KINDS:
            raise ValueError(f"unknown provider {provider!r} (expected github or gitlab)")
        if lifetime <= 0:
            raise ValueError("lifetime must be positive")
        self.url = url.rstrip("/")
        self.key = key if key is not None else generate_key()
        self.kid = kid if kid is not None else key_thumbprint(self.key)
        self.provider: ProviderKind = provider
        self.claims_overrides: dict[str, Any] = dict(claims_overrides or {})
        # A fresh random secret unless the caller fixes one (e.g. for a script).
        # Hex, so the token never starts with "-" when pasted into a command line.
        self.request_token = request_token or secrets.token_hex(32)
        self.lifetime = lifetime
        self.audience = audience or None
        self._clock = clock

    # -- what the issuer publishes ------------------------------------------------------

    @property
    def jwks_uri(self) -> str:
        return f"{self.url}/.well-known/jwks"

    @property
    def token_request_url(self) -> str:
        """The value for ``ACTIONS_ID_TOKEN_REQUEST_URL`` (already carries a query)."""
        return f"{self.url}/token?api-version=2.0"

    def discovery(self) -> dict[str, Any]:
        """The OpenID Provider configuration document."""
        return {
            "issuer": self.url,
            "jwks_uri": self.jwks_uri,
            "subject_types_supported": ["public", "pairwise"],
            "response_types_supported": ["id_token"],
            "claims_supported": sorted(self.claims("example")),
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid"],
        }

    def jwks(self) -> dict[str, Any]:
        """The JSON Web Key Set: the public half of the one signing key."""
        jwk: dict[str, Any] = public_jwk(self.key)
        jwk.update({"kid": self.kid, "use": "sig", "alg": "RS256"})
        return {"keys": [jwk]}

    def trustpub_issuer(self) -> Issuer:
        """This issuer as trustpub's configuration sees it (development = true)."""
        return Issuer(self.url, self.provider, development=True)

    def actions_env(self) -> dict[str, str]:
        """The two variables the GitHub runner gives a job with ``id-token: write``."""
        return {
            "ACTIONS_ID_TOKEN_REQUEST_URL": self.token_request_url,
            "ACTIONS_ID_TOKEN_REQUEST_TOKEN": self.request_token,
        }

    # -- minting ------------------------------------------------------------------------

    # `audience` is positional-only in `claims` and `mint`: every keyword is a claim, so a
    # claim named `audience` or `self` is an override like any other, never a collision.
    def claims(self, audience: str, /, **overrides: Any) -> dict[str, Any]:
        """The claim set ``mint`` would sign (fresh ``jti`` and times on each call)."""
        merged = dict(self.claims_overrides)
        merged.update(overrides)
        return build_claims(
            self.provider,
            issuer=self.url,
            audience=audience,
            now=int(self._clock()),
            lifetime=self.lifetime,
            overrides=merged,
        )

    def sign(self, claims: Mapping[str, Any]) -> str:
        """Sign an arbitrary claim set with this issuer's key (for malformed-token tests)."""
        headers = {"kid": self.kid, "typ": "JWT"}
        return jwt.encode(dict(claims), self.key, algorithm="RS256", headers=headers)

    def mint(self, audience: str, /, **overrides: Any) -> str:
        """A signed JWT for ``audience`` with the default claims plus ``overrides``."""
        return self.sign(self.claims(audience, **overrides))

    def check_request_token(self, presented: str) -> bool:
        """Whether ``presented`` is the request token, compared in constant time."""
        # compare_digest so that response timing does not leak the secret byte by byte.
        return hmac.compare_digest(presented.encode("utf-8"), self.request_token.encode("utf-8"))
