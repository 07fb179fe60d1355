"""The exchange endpoints, wire-compatible with crates.io's Trusted Publishing API."""

from __future__ import annotations

import time

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from trustpub.api.bodies import read_json_object, string_field
from trustpub.api.errors import NO_STORE
from trustpub.api.responses import CompactJSONResponse
from trustpub.api.state import services
from trustpub.logs import audit
from trustpub.ratelimit import client_address
from trustpub.tokens import format as token_format


def rfc3339(timestamp: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


async def exchange(request: Request) -> Response:
    """``POST /api/v1/trusted_publishing/tokens`` ``{"jwt": "..."}``."""
    # Counted before the body is read: a flood costs us as little as possible.
    await services(request).limiter.exchange_from(client_address(request.scope.get("client")))
    body = await read_json_object(request)
    jwt = string_field(body, "jwt")
    issued = await services(request).exchanger.exchange(jwt)
    record = issued.record
    return CompactJSONResponse(
        {
            "token": issued.token,
            "expires_at": rfc3339(record.expires_at),
            "crates": {name: sorted(ops) for name, ops in sorted(record.crates.items())},
        },
        headers=NO_STORE,
    )


def bearer_token(request: Request) -> str:
    """The token from ``Authorization``: ``Bearer <t>`` (any casing) or the bare token."""
    header = request.headers.get("authorization")
    if header is None:
        raise HTTPException(401, "Missing `Authorization` header")
    scheme, _, rest = header.strip().partition(" ")
    token = rest.strip() if scheme.lower() == "bearer" else header.strip()
    if not token_format.is_well_formed(token):
        raise HTTPException(401, "Invalid `Authorization` header: Failed to parse token")
    return token


async def revoke(request: Request) -> Response:
    """``DELETE /api/v1/trusted_publishing/tokens``: 204 also for an unknown token."""
    token = bearer_token(request)
    svc = services(request)
    # Read first, so the audit line says whose token was revoked (never the token).
    record = await svc.tokens.introspect(token)
    revoked = await svc.tokens.revoke(token)
    outcome = "revoked" if revoked else "unknown"
    svc.metrics.revocations.inc(outcome)
    if record is None:
        audit("revocation", outcome=outcome)
    else:
        audit(
            "revocation",
            outcome=outcome,
            issuer=record.provenance.issuer,
            repository=record.provenance.repository,
            run_id=record.provenance.run_id,
            policies=list(record.policies),
            expires_at=record.expires_at,
        )
    return Response(status_code=204, headers=NO_STORE)
