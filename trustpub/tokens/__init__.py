"""Tokens: format, minting and validation of the short-lived tokens trustpub issues."""
