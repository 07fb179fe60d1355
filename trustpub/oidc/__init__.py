"""OIDC verification: configured issuers, their key sets, and JWT verification."""

from trustpub.oidc.claims import VerifiedClaims
from trustpub.oidc.issuers import DEFAULT_ISSUERS, Issuer
from trustpub.oidc.keys import KeySets, KeySetStatus
from trustpub.oidc.verify import Verifier

__all__ = ["DEFAULT_ISSUERS", "Issuer", "KeySetStatus", "KeySets", "VerifiedClaims", "Verifier"]
