"""The companion Cargo registry that accepts trustpub tokens.

- ``registry``: ``Registry`` (routes + lifecycle) and ``create_registry_app``
- ``auth``: token kinds, ``TokenAuthority`` and its local and remote implementations
- ``actors``: who may do what (scopes, crate patterns, trustpub grants)
- ``publish``: parsing and validating what ``cargo publish`` sends
- ``db``: metadata (SQLite); ``storage``: ``.crate`` files, on disk or in S3
- ``consistency``: the ``.crate`` files checked against the versions (orphans, missing)
- ``changes``: who may change what, and the refusals users read
- ``me``: the caller's own account over HTTP (API tokens, owner invitations)
- ``invitations``: owner invitation events and their JSON
- ``names``, ``versions``: crate name rules, index paths, SemVer
"""

from trustpub.registry.actors import TrustedToken
from trustpub.registry.auth import (
    LocalAuthority,
    RemoteAuthority,
    TokenAuthority,
    generate_user_token,
)
from trustpub.registry.publish import Limits
from trustpub.registry.registry import Registry, create_registry_app

__all__ = [
    "Limits",
    "LocalAuthority",
    "Registry",
    "RemoteAuthority",
    "TokenAuthority",
    "TrustedToken",
    "create_registry_app",
    "generate_user_token",
]
