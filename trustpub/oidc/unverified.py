"""Reading a JWT's claims WITHOUT verifying anything: for diagnostics only.

``trustpub exchange --explain`` and ``trustpub policy explain`` show a user what a CI
token says, before or after the server refused it. Nothing here checks a signature, an
issuer, an audience or a time: the claims returned prove nothing about who made the
token, so they must never reach a decision. The verifier (``oidc.verify``) parses with
the same ``jws.parse``, then checks everything this module skips.
"""

from __future__ import annotations

from typing import Any

from trustpub.errors import InvalidJWT
from trustpub.oidc import jws

__all__ = ["decode_unverified_claims"]


def decode_unverified_claims(token: str) -> dict[str, Any] | None:
    """The payload of a compact JWS, UNVERIFIED; None when ``token`` is not one.

    The signature is never checked: use the result to explain, never to decide.
    """
    try:
        return jws.parse(token.strip()).payload
    except InvalidJWT:
        return None
