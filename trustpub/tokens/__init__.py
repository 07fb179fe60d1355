"""Tokens: format, minting and validation of the short-lived tokens trustpub issues."""

from trustpub.tokens.format import PREFIX, TOKEN_LENGTH, generate_token, is_well_formed, token_hash
from trustpub.tokens.record import MalformedRecord, TokenRecord
from trustpub.tokens.service import IssuedToken, TokenService, jti_key

__all__ = [
    "PREFIX",
    "TOKEN_LENGTH",
    "IssuedToken",
    "MalformedRecord",
    "TokenRecord",
    "TokenService",
    "generate_token",
    "is_well_formed",
    "jti_key",
    "token_hash",
]
