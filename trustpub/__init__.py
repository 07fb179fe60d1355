"""trustpub: Trusted Publishing for Cargo registries.

A CI job proves who it is with a short-lived OIDC token; trustpub verifies it
(``trustpub.oidc``), matches its claims to the registry owner's trust policies
(``trustpub.providers``, ``trustpub.policies``) and mints a short-lived token scoped to
crates and operations (``trustpub.tokens``), kept in a store (``trustpub.store``) and
served over HTTP (``trustpub.api``; the HTTP edge it shares with the companion Cargo
registry, ``trustpub.registry``, and the dev issuer is ``trustpub.web``).

Each package's ``__all__`` is its face (pinned in ``tests/test_exported_members.py``);
import a package by those names, its modules are internals.
"""

__version__ = "0.1.0.dev0"
