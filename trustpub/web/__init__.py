"""Where HTTP meets trustpub: the edge shared by ``api``, ``registry`` and ``devissuer``.

- ``bodies``: reading request bodies (counted as they arrive, framing checked) and
  JSON (depth-bounded, no lone surrogates)
- ``query``: integer query parameters
- ``bearer``: the credential in ``Authorization``
- ``responses``: JSON responses that always encode, crates.io's error body
- ``errors``: the one mapping of errors to responses, and the boundary no exception
  passes
- ``fastlane``: answers from memory past the router, for the hottest reads, and the
  hottest endpoints called past it
- ``forwarded``: the client address, from a trusted proxy's forwarding header
- ``times``: RFC 3339 timestamps; ``paths``: the wire paths (``web.paths.TOKENS``)

Import from ``trustpub.web``; the modules are its internals.
"""

from trustpub.web import paths
from trustpub.web.bearer import bearer_credential
from trustpub.web.bodies import (
    JSON_LIMIT,
    MAX_JSON_DEPTH,
    parse_json,
    read_body,
    read_json_object,
    string_field,
)
from trustpub.web.errors import (
    CLIENT_CLOSED_REQUEST,
    BoundedApplication,
    ErrorBoundary,
    exception_handlers,
)
from trustpub.web.fastlane import Answer, Endpoint, FastLane, Lane
from trustpub.web.forwarded import ClientAddress, parse_networks
from trustpub.web.query import query_int
from trustpub.web.responses import (
    NO_STORE,
    JSONResponse,
    RenderedJSONResponse,
    error_response,
    render_json,
)
from trustpub.web.times import rfc3339

__all__ = [
    "CLIENT_CLOSED_REQUEST",
    "JSON_LIMIT",
    "MAX_JSON_DEPTH",
    "NO_STORE",
    "Answer",
    "BoundedApplication",
    "ClientAddress",
    "Endpoint",
    "ErrorBoundary",
    "FastLane",
    "JSONResponse",
    "Lane",
    "RenderedJSONResponse",
    "bearer_credential",
    "error_response",
    "exception_handlers",
    "parse_json",
    "parse_networks",
    "paths",
    "query_int",
    "read_body",
    "read_json_object",
    "render_json",
    "rfc3339",
    "string_field",
]
