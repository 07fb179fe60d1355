"""Every error response, whatever raised it, mapped once, here.

- ``TrustpubError`` (``trustpub.errors``): its ``status_code`` and ``detail``.
- Starlette's ``HTTPException`` (refusals of the HTTP layer: bodies, queries, routing):
  its status, detail and headers.
- A client that goes away mid-request (``ClientDisconnect``): one info line, no answer
  (there is no one to answer).
- Anything else: a bug. ``ErrorBoundary`` answers a JSON 500 that says nothing about
  it, logs it as one JSON line with its traceback and lets the application count it.

All of them in crates.io's shape, ``{"errors": [{"detail": "..."}]}``, never cacheable.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import cast

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ASGIApp, ExceptionHandler, Message, Receive, Scope, Send

from trustpub.errors import TrustpubError
from trustpub.web.responses import error_response

log = logging.getLogger("trustpub.web")

# nginx's "client closed request": only ever seen in our own access log, never sent.
CLIENT_CLOSED_REQUEST = 499


async def _trustpub_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, TrustpubError)
    return error_response(exc.status_code, exc.detail, exc.headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return error_response(exc.status_code, exc.detail, exc.headers)


def exception_handlers(
    observers: Mapping[type[TrustpubError], Callable[[Request], None]] | None = None,
) -> dict[type[Exception] | int, ExceptionHandler]:
    """Starlette ``exception_handlers``. ``observers`` are called before the answer for
    the error classes they name (the API counts store outages)."""
    handlers: dict[type[Exception] | int, ExceptionHandler] = {
        TrustpubError: _trustpub_error,
        HTTPException: _http_error,
    }
    for cls, observe in (observers or {}).items():

        async def observed(
            request: Request, exc: Exception, observe: Callable[[Request], None] = observe
        ) -> Response:
            observe(request)
            return await _trustpub_error(request, exc)

        handlers[cls] = observed
    return handlers


class ErrorBoundary:
    """ASGI middleware that no exception passes: nothing reaches the server's own
    error handling, which would log a second, plain-text traceback.

    ``on_unexpected`` is called once for each unexpected error (a metrics counter).
    """

    def __init__(self, app: ASGIApp, on_unexpected: Callable[[], None] | None = None) -> None:
        self.app = app
        self.on_unexpected = on_unexpected

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except ClientDisconnect:
            # Not an error of ours, nor one to answer: the client left mid-body.
            log.info(
                "client aborted the request",
                extra={"fields": {"method": scope["method"], "path": scope["path"]}},
            )
            if not started:
                await _send_quietly(send, Response(status_code=CLIENT_CLOSED_REQUEST), scope)
        except Exception as exc:
            # The traceback goes to the log as one JSON line, never to the client;
            # request bodies and headers (where tokens travel) are not part of it.
            log.error(
                "unhandled error",
                exc_info=exc,
                extra={"fields": {"method": scope["method"], "path": scope["path"]}},
            )
            if self.on_unexpected is not None:
                self.on_unexpected()
            if not started:
                await _send_quietly(send, error_response(500, "Internal server error"), scope)


class BoundedApplication(Starlette):
    """Starlette whose outermost layer of its own is left out when an ``ErrorBoundary``
    is among its middleware: that boundary lets no exception pass, so Starlette's
    ``ServerErrorMiddleware`` around everything would only wrap every message sent
    (3 us a request on the benchmark machine, measured by calling the stack
    in-process)."""

    def build_middleware_stack(self) -> ASGIApp:
        stack = super().build_middleware_stack()
        bounded = any(m.cls is cast(object, ErrorBoundary) for m in self.user_middleware)
        if bounded and isinstance(stack, ServerErrorMiddleware):
            return stack.app
        return stack


async def _send_quietly(send: Send, response: Response, scope: Scope) -> None:
    async def nothing() -> Message:
        return {"type": "http.disconnect"}

    try:
        await response(scope, nothing, send)
    except OSError:
        # The connection is gone as well: nothing left to tell anyone.
        log.debug("could not send the error response", extra={"fields": {"path": scope["path"]}})
