"""OIDC verification: configured issuers, their key sets, and JWT verification."""
