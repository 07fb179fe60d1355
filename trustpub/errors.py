"""The errors trustpub raises, in one hierarchy.

    TrustpubError                  base class; ``detail`` is safe to show to a client
    ├── ExchangeRefused            the exchange is refused (HTTP 400)
    │   ├── InvalidJWT             undecodable, bad signature, bad or missing claims
    │   ├── UnsupportedIssuer      the token's ``iss`` is not a configured issuer
    │   ├── PolicyMismatch         verified claims match no trust policy
    │   └── JWTReplayed            the token's ``jti`` was already exchanged
    ├── KeySetUnavailable          no usable key set for an issuer (HTTP 503, retryable)
    ├── StoreUnavailable           the token store cannot be reached (HTTP 503)
    └── ConfigurationError         the server configuration is invalid
        └── PolicyLoadError        policy files are invalid; ``problems`` lists each one

Messages never contain a token or a JWT: they name the failing field, what was
expected and what the token carried.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "ConfigurationError",
    "ExchangeRefused",
    "InvalidJWT",
    "JWTReplayed",
    "KeySetUnavailable",
    "PolicyLoadError",
    "PolicyMismatch",
    "PolicyProblem",
    "StoreUnavailable",
    "TrustpubError",
    "UnsupportedIssuer",
]


class TrustpubError(Exception):
    """Base class. ``detail`` is the message shown to clients and in logs."""

    status_code = 500

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    @property
    def headers(self) -> dict[str, str]:
        """Response headers the refusal needs (``Retry-After`` for a rate limit)."""
        return {}


class ExchangeRefused(TrustpubError):
    """The OIDC token cannot be exchanged; the client must change something."""

    status_code = 400


class InvalidJWT(ExchangeRefused):
    """The JWT is malformed, wrongly signed, or carries invalid claims."""


class UnsupportedIssuer(ExchangeRefused):
    """The JWT's ``iss`` is not one of the configured issuers."""


class PolicyMismatch(ExchangeRefused):
    """The verified claims match no trust policy; ``detail`` says which field failed."""


class JWTReplayed(ExchangeRefused):
    """The JWT's ``jti`` has already been exchanged for a token."""

    def __init__(self, detail: str = "JWT has already been used") -> None:
        super().__init__(detail)


class KeySetUnavailable(TrustpubError):
    """No usable JSON Web Key Set could be loaded for an issuer.

    503, not crates.io's 500: the issuer (or our way to it) is down for now, and the
    client may retry with a fresh token later; nothing is wrong with its request.
    """

    status_code = 503

    def __init__(self, detail: str = "Failed to load OIDC key set") -> None:
        super().__init__(detail)


class StoreUnavailable(TrustpubError):
    """The token store cannot be reached or refused the operation."""

    status_code = 503


class ConfigurationError(TrustpubError):
    """The server configuration is invalid; start-up stops with this message."""


@dataclass(frozen=True, slots=True)
class PolicyProblem:
    """One problem in a policy file: where it is and what is wrong."""

    file: str
    policy: str | None
    field: str | None
    message: str

    def __str__(self) -> str:
        where = self.file
        if self.policy is not None:
            where += f": policy {self.policy}"
        if self.field is not None:
            where += f": {self.field}"
        return f"{where}: {self.message}"


class PolicyLoadError(ConfigurationError):
    """One or more policy files are invalid. Nothing from them is used."""

    def __init__(self, problems: Sequence[PolicyProblem]) -> None:
        self.problems = tuple(problems)
        lines = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(f"{len(self.problems)} problem(s) in policy files:\n{lines}")
