"""The registry's refusals: a ``TrustpubError`` with the HTTP status it maps to.

Cargo prints ``detail`` to the user, so every message names what failed and, where it
helps, what was expected.
"""

from __future__ import annotations

from trustpub.errors import TrustpubError


class RegistryRefused(TrustpubError):
    """A registry request is refused; ``status_code`` is the HTTP status (400 by default)."""

    def __init__(self, detail: str, status_code: int = 400) -> None:
        super().__init__(detail)
        self.status_code = status_code


def bad_request(detail: str) -> RegistryRefused:
    return RegistryRefused(detail, 400)


def forbidden(detail: str) -> RegistryRefused:
    return RegistryRefused(detail, 403)


def not_found(detail: str) -> RegistryRefused:
    return RegistryRefused(detail, 404)


def conflict(detail: str) -> RegistryRefused:
    return RegistryRefused(detail, 409)


def too_large(detail: str) -> RegistryRefused:
    return RegistryRefused(detail, 413)


class Unauthenticated(RegistryRefused):
    """A 401 with the ``WWW-Authenticate: Cargo`` challenge cargo (1.74+) reads on a
    registry that requires authentication; ``login_url`` tells users where to get a
    token (cargo prints it)."""

    def __init__(self, detail: str, login_url: str | None = None) -> None:
        super().__init__(detail, 401)
        self.login_url = login_url

    @property
    def headers(self) -> dict[str, str]:
        if self.login_url is None:
            return {"WWW-Authenticate": "Cargo"}
        return {"WWW-Authenticate": f'Cargo login_url="{self.login_url}"'}


def gone(detail: str) -> RegistryRefused:
    return RegistryRefused(detail, 410)
