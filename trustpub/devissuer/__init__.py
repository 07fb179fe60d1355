"""A local OIDC issuer for tests, the demo, and trying a policy before pushing.

It serves discovery and JWKS, speaks the GitHub Actions token-request protocol (so
``ACTIONS_ID_TOKEN_REQUEST_URL`` can point at it), and mints GitHub- or GitLab-shaped
RS256 tokens from a realistic default claim set with overrides. Its URL is plain http
on loopback: trustpub accepts its tokens only when it is configured as an issuer with
``development = true``.

    with serve_in_thread(provider="github") as issuer:
        jwt = issuer.mint("localhost:8080", environment="release")
"""

from trustpub.devissuer.app import create_app
from trustpub.devissuer.claims import DEFAULT_LIFETIME, build_claims
from trustpub.devissuer.issuer import DevIssuer, generate_key, key_thumbprint, load_key, save_key
from trustpub.devissuer.server import serve_in_thread

__all__ = [
    "DEFAULT_LIFETIME",
    "DevIssuer",
    "build_claims",
    "create_app",
    "generate_key",
    "key_thumbprint",
    "load_key",
    "save_key",
    "serve_in_thread",
]
