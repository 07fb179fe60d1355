"""The exchange endpoints, wire-compatible with crates.io's Trusted Publishing API:
``POST`` exchanges a CI's OIDC JWT for a trustpub token, ``DELETE`` revokes one."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from trustpub import web
from trustpub.api.state import services
from trustpub.logs import audit
from trustpub.ratelimit import client_address
from trustpub.tokens import TRUSTPUB_TOKENS


async def exchange_jwt(request: Request) -> Response:
    """``POST /api/v1/trusted_publishing/tokens`` ``{"jwt": "..."}``."""
    # Counted before the body is read: a flood costs us as little as possible.
    await services(request).limiter.exchange_from(client_address(request.scope.get("client")))
    body = await web.read_json_object(request)
    jwt = web.string_field(body, "jwt")
    issued = await services(request).exchanger.exchange(jwt)
    record = issued.record
    return web.JSONResponse(
        {
            "token": issued.token,
            "expires_at": web.rfc3339(record.expires_at),
            "crates": {name: sorted(ops) for name, ops in sorted(record.crates.items())},
        },
        headers=web.NO_STORE,
    )


def _presented_token(request: Request) -> str:
    """The token in ``Authorization`` (``Bearer <t>`` or bare), with crates.io's texts."""
    token = web.bearer_credential(request)
    if token is None:
        raise HTTPException(401, "Missing `Authorization` header")
    if not TRUSTPUB_TOKENS.is_well_formed(token):
        raise HTTPException(401, "Invalid `Authorization` header: Failed to parse token")
    return token


async def revoke_token(request: Request) -> Response:
    """``DELETE /api/v1/trusted_publishing/tokens``: 204 also for an unknown token."""
    token = _presented_token(request)
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
    return Response(status_code=204, headers=web.NO_STORE)
