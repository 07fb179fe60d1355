"""Configured OIDC issuers: which CI provider each one is, bound to one exact URL."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from trustpub.errors import ConfigurationError
from trustpub.text import fold

ProviderKind = Literal["github", "gitlab"]
PROVIDER_KINDS: tuple[ProviderKind, ...] = ("github", "gitlab")

GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
GITLAB_ISSUER = "https://gitlab.com"

# The issuer a policy binds to when it names only its provider.
CANONICAL_ISSUERS: dict[ProviderKind, str] = {"github": GITHUB_ISSUER, "gitlab": GITLAB_ISSUER}


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_key_url(url: str, development: bool) -> None:
    """Refuse a key URL we would not fetch (secret scanning's public keys): https only,
    or http on loopback when ``development``, as for issuers (``ConfigurationError``
    naming the rule). Here, below the configuration and the API, so both check alike."""
    parts = urlsplit(url)
    if not parts.hostname or parts.username or parts.password:
        raise ConfigurationError(f"key URL {url!r}: expected an absolute URL without credentials")
    if parts.scheme == "https":
        return
    if parts.scheme == "http" and development and is_loopback_host(parts.hostname):
        return
    raise ConfigurationError(
        f"key URL {url!r}: must use https (plain http is allowed only on a loopback "
        "address marked development = true)"
    )


@dataclass(frozen=True, slots=True)
class Issuer:
    """One trusted OIDC issuer.

    ``url`` is compared byte for byte with a token's ``iss``. ``development`` allows a
    plain-http issuer, and only on a loopback address (a local test issuer).
    """

    url: str
    provider: ProviderKind
    development: bool = False

    def __post_init__(self) -> None:
        if self.provider not in PROVIDER_KINDS:
            raise ConfigurationError(
                f"issuer {self.url}: unknown provider {self.provider!r} "
                f"(expected one of: {', '.join(PROVIDER_KINDS)})"
            )
        parts = urlsplit(self.url)
        if not parts.hostname or parts.query or parts.fragment or parts.username:
            raise ConfigurationError(
                f"issuer {self.url!r}: expected an absolute URL without query, fragment "
                "or credentials"
            )
        if self.url.endswith("/"):
            raise ConfigurationError(f"issuer {self.url!r}: must not end with '/'")
        if parts.scheme == "https":
            return
        if parts.scheme == "http" and self.development and is_loopback_host(parts.hostname):
            return
        raise ConfigurationError(
            f"issuer {self.url!r}: must use https (plain http is allowed only for a "
            "loopback issuer marked development = true)"
        )

    @property
    def host(self) -> str:
        """The issuer's host (with port, if any): where its key set must live."""
        return fold(urlsplit(self.url).netloc)


DEFAULT_ISSUERS: tuple[Issuer, ...] = (
    Issuer(GITHUB_ISSUER, "github"),
    Issuer(GITLAB_ISSUER, "gitlab"),
)
