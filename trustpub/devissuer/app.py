"""The dev issuer's HTTP face: discovery, JWKS, and the Actions token-request protocol.

GET  /.well-known/openid-configuration
GET  /.well-known/jwks
GET  /token?api-version=2.0&audience=AUD     Authorization: bearer <request token>
     -> {"value": "<JWT>"}   (what $ACTIONS_ID_TOKEN_REQUEST_URL answers)
POST /mint?audience=AUD  {claim overrides}   same authorization, same answer
POST /mint?audience=AUD&format=raw           the JWT alone and a newline (text/plain), for
                                             `| trustpub exchange --jwt -`

Without an audience in the request, both use the issuer's ``audience`` if it has one;
otherwise /token answers like GitHub (the owner's URL) and /mint refuses.

Its own refusals are ``{"message": ...}``, as GitHub's token service answers; errors of
the shared HTTP layer (a malformed body) have trustpub's shape.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from trustpub.devissuer.issuer import DevIssuer
from trustpub.web import (
    JSON_LIMIT,
    NO_STORE,
    ErrorBoundary,
    JSONResponse,
    bearer_credential,
    parse_json,
    read_body,
)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"message": message}, status_code=status, headers=NO_STORE)


def _authorized(issuer: DevIssuer, request: Request) -> bool:
    # The runner sends "bearer"; any case of the scheme is accepted, as HTTP says.
    credential = bearer_credential(request, bare=False)
    if not credential:
        return False
    return issuer.check_request_token(credential)


def create_app(issuer: DevIssuer) -> Starlette:
    """A Starlette app serving ``issuer``."""

    async def discovery(request: Request) -> JSONResponse:
        return JSONResponse(issuer.discovery())

    async def jwks(request: Request) -> JSONResponse:
        return JSONResponse(issuer.jwks())

    def default_audience() -> str | None:
        if issuer.audience is not None:
            return issuer.audience
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
        return JSONResponse({"value": issuer.mint(audience)}, headers=NO_STORE)

    async def mint(request: Request) -> Response:
        if not _authorized(issuer, request):
            return _error(401, "missing or wrong request token (Authorization: bearer ...)")
        answer = request.query_params.get("format", "json")
        if answer not in ("json", "raw"):
            return _error(400, "format must be json or raw")
        try:
            body = await read_body(request, JSON_LIMIT)
            overrides = parse_json(body) if body.strip() else {}
        except HTTPException as exc:
            return _error(
                exc.status_code, f"body must be a JSON object of claim overrides: {exc.detail}"
            )
        if not isinstance(overrides, dict):
            return _error(400, "body must be a JSON object of claim overrides")
        if "audience" in overrides:
            # Not a claim: someone trying to set the audience, which is `aud`.
            return _error(
                400, "'audience' is not a claim: set the audience with 'aud' or ?audience="
            )
        in_body = overrides.pop("aud", None)
        audience = request.query_params.get("audience") or (
            issuer.audience if in_body is None else in_body
        )
        if not isinstance(audience, str) or not audience:
            return _error(
                400, "audience is required (?audience=, an 'aud' string, or dev-issuer --audience)"
            )
        # Minted tokens are credentials (if only for a development issuer): never cacheable.
        try:
            jwt = issuer.mint(audience, **overrides)
        except (TypeError, ValueError) as exc:
            # The signing library refuses some claim types (a non-string `iss`, say).
            return _error(400, f"cannot sign these claims: {exc}")
        if answer == "raw":
            return PlainTextResponse(jwt + "\n", headers=NO_STORE)
        return JSONResponse({"value": jwt}, headers=NO_STORE)

    return Starlette(
        middleware=[Middleware(ErrorBoundary)],
        routes=[
            Route("/.well-known/openid-configuration", discovery, methods=["GET"]),
            Route("/.well-known/jwks", jwks, methods=["GET"]),
            Route("/token", token, methods=["GET"]),
            Route("/mint", mint, methods=["POST"]),
        ],
    )
