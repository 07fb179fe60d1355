"""The wire paths: what clients put in a URL, written once.

The trustpub service's own endpoints are used by the API (its routes), by the registry
(remote introspection) and by clients; the Cargo ones by the companion registry.
"""

from __future__ import annotations

# trustpub service (crates.io's Trusted Publishing paths, kept byte-compatible)
TOKENS = "/api/v1/trusted_publishing/tokens"
INTROSPECT = "/api/v1/trusted_publishing/introspect"
HEALTHZ = "/healthz"
READYZ = "/readyz"
METRICS = "/metrics"
STATUS = "/status"
# GitHub secret scanning partner reports (crates.io's path)
LEAK_REPORTS = "/api/github/secret-scanning/verify"

# Cargo registry protocol
INDEX = "/index"
CRATES = "/api/v1/crates"
