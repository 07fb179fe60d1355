"""Every error response, whatever raised it, in crates.io's shape:
``{"errors": [{"detail": "..."}]}``. Mapped once, here."""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ExceptionHandler

from trustpub.api.responses import CompactJSONResponse
from trustpub.errors import StoreUnavailable, TrustpubError

log = logging.getLogger("trustpub.api")

NO_STORE = {"Cache-Control": "no-store"}


def error_response(status: int, detail: str, headers: dict[str, str] | None = None) -> Response:
    return CompactJSONResponse(
        {"errors": [{"detail": detail}]}, status_code=status, headers=headers
    )


async def _trustpub_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, TrustpubError)
    if isinstance(exc, StoreUnavailable):
        # The store logged the failure where it happened; here it is only counted.
        services = getattr(request.state, "services", None)
        if services is not None:
            services.metrics.store_errors.inc()
    return error_response(exc.status_code, exc.detail, {**NO_STORE, **exc.headers})


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    headers = dict(exc.headers or {})
    return error_response(exc.status_code, exc.detail, headers)


async def _unexpected(request: Request, exc: Exception) -> Response:
    # The traceback goes to the log, never to the client; request bodies and headers
    # (where tokens live) are not part of it.
    log.error("unhandled error", exc_info=exc, extra={"fields": {"path": request.url.path}})
    return error_response(500, "Internal server error", NO_STORE)


EXCEPTION_HANDLERS: dict[type[Exception] | int, ExceptionHandler] = {
    TrustpubError: _trustpub_error,
    HTTPException: _http_error,
    Exception: _unexpected,
}
