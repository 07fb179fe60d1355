"""The dev issuer's HTTP face: discovery, JWKS, and the Actions token-request protocol.

GET  /.well-known/openid-configuration
GET  /.well-known/jwks
GET  /token?api-version=2.0&audience=AUD     Authorization: bearer <request token>
     -> {"value": "<JWT>"}   (what $ACTIONS_ID_TOKEN_REQUEST_URL answers)
POST /mint?audience=AUD  {claim overrides}   same authorization, same answer
"""

from __future__ import annotations

import json
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from trustpub.devissuer.issuer import DevIssuer

# Minted tokens are credentials (if only for a development issuer): never cacheable.
_NO_STORE = {"Cache-Control": "no-store"}
_MAX_BODY = 64 * 1024


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"message": message}, status_code=status, headers=_NO_STORE)


def _authorized(issuer: DevIssuer, request: Request) -> bool:
    scheme, _, credential = request.headers.get("authorization", "").partition(" ")
    # The runner sends "bearer"; accept any case of the scheme, as HTTP says.
    if scheme.lower() != "bearer" or not credential:
        return False
    return issuer.check_request_token(credential.strip())


def create_app(issuer: DevIssuer) -> Starlette:
    """A Starlette app serving ``issuer``."""

    async def discovery(request: Request) -> JSONResponse:
        return JSONResponse(issuer.discovery())

    async def jwks(request: Request) -> JSONResponse:
        return JSONResponse(issuer.jwks())

    def default_audience() -> str | None:
        if issuer.provider == "github":
            # GitHub's default audience is the URL of the repository owner.
            owner = issuer.claims("-").get("repository_owner", "")
            return f"https://github.com/{owner}"
        return None

    async def token(request: Request) -> JSONResponse:
        if not _authorized(issuer, request):
            return _error(401, "missing or wrong request token (Authorization: bearer ...)")
        audience = request.query_params.get("audience") or default_audience()
        if audience is None:
            return _error(400, "audience is required")
        return JSONResponse({"value": issuer.mint(audience)}, headers=_NO_STORE)

    async def mint(request: Request) -> JSONResponse:
        if not _authorized(issuer, request):
            return _error(401, "missing or wrong request token (Authorization: bearer ...)")
        body = await request.body()
        if len(body) > _MAX_BODY:
            return _error(413, "body too large")
        overrides: Any = {}
        if body.strip():
            try:
                overrides = json.loads(body)
            except ValueError:
                return _error(400, "body must be a JSON object of claim overrides")
        if not isinstance(overrides, dict):
            return _error(400, "body must be a JSON object of claim overrides")
        audience = request.query_params.get("audience") or overrides.pop("aud", None)
        if not isinstance(audience, str) or not audience:
            return _error(400, "audience is required (?audience= or an 'aud' string)")
        overrides.pop("aud", None)
        return JSONResponse({"value": issuer.mint(audience, **overrides)}, headers=_NO_STORE)

    return Starlette(
        routes=[
            Route("/.well-known/openid-configuration", discovery, methods=["GET"]),
            Route("/.well-known/jwks", jwks, methods=["GET"]),
            Route("/token", token, methods=["GET"]),
            Route("/mint", mint, methods=["POST"]),
        ]
    )
