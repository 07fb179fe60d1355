"""Tokens: the token type (format, hash) and the minting, introspection and revocation
of the short-lived tokens trustpub issues.

Import from ``trustpub.tokens``; ``format``, ``record`` and ``service`` are its internals.
"""

from trustpub.tokens.format import (
    PREFIX,
    REGISTRY_TOKENS,
    TOKEN_LENGTH,
    TRUSTPUB_TOKENS,
    TokenFormat,
    generate_token,
    is_well_formed,
    token_hash,
)
from trustpub.tokens.record import MalformedRecord, TokenRecord, parse_new_crate_owners
from trustpub.tokens.service import IssuedToken, TokenService, jti_key

__all__ = [
    "PREFIX",
    "REGISTRY_TOKENS",
    "TOKEN_LENGTH",
    "TRUSTPUB_TOKENS",
    "IssuedToken",
    "MalformedRecord",
    "TokenFormat",
    "TokenRecord",
    "TokenService",
    "generate_token",
    "is_well_formed",
    "jti_key",
    "parse_new_crate_owners",
    "token_hash",
]
