"""A lane past the router for the hottest reads, answered from memory.

Starlette's router tries each route's pattern in turn and wraps every answer in a
``Request`` and a ``Response`` object, with an exception layer around both: for an index
file cargo fetches by the thousand, that is most of the work (bench/RESULTS.md). A lane
is ``(method, path prefix, answer)``: for a request that matches, ``answer(scope)``
returns the whole response (status, encoded headers, body) when it can give it from
memory, or None, and then the request goes the usual way (the router, the endpoint, the
one error mapping in ``trustpub.web.errors``). So a lane never answers an error, never
reads a body, never awaits: whatever it cannot settle at once is not its business.

The hottest endpoints (the exchange, introspection) take a second lane: ``routes``
maps an exact ``(method, path)`` to its endpoint, which is called here, past the
router, with its errors mapped by the same ``handlers`` the application gives
Starlette (``trustpub.web.errors.exception_handlers``). The router and Starlette's
exception layer cost more than the endpoint's own HTTP work (41 of 54 us a request on
the benchmark machine, measured by calling the stack in-process; bench/RESULTS.md),
and an exact path with one method is all they would do for these. The routes stay in
the application's routing table too, which answers every other method and path.

It sits inside the access log and the error boundary: every request still gets its
access line and request id, whichever way it goes.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import cast

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, ExceptionHandler, Receive, Scope, Send

# (status, headers as the server sends them, body)
Answer = tuple[int, Sequence[tuple[bytes, bytes]], bytes]
Lane = tuple[str, str, Callable[[Scope], Answer | None]]
Endpoint = Callable[[Request], Awaitable[Response]]
_Handler = Callable[[Request, Exception], Awaitable[Response]]


class FastLane:
    def __init__(
        self,
        app: ASGIApp,
        lanes: Sequence[Lane] = (),
        routes: Mapping[tuple[str, str], Endpoint] | None = None,
        handlers: Mapping[type[Exception] | int, ExceptionHandler] | None = None,
    ) -> None:
        self.app = app
        self.lanes = tuple(lanes)
        self.routes = dict(routes or {})
        for endpoint in self.routes.values():
            if not inspect.iscoroutinefunction(endpoint):
                raise TypeError(f"{endpoint!r}: a route past the router must be async")
        # By exception class only: status-code handlers are Starlette's business.
        # (``exception_handlers``' handlers are all of this shape: HTTP, async.)
        self.handlers: dict[type, _Handler] = {
            k: cast(_Handler, v) for k, v in (handlers or {}).items() if isinstance(k, type)
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            method, path = scope["method"], scope["path"]
            endpoint = self.routes.get((method, path))
            if endpoint is not None:
                await self._call(endpoint, scope, receive, send)
                return
            for lane_method, prefix, answer in self.lanes:
                if method == lane_method and path.startswith(prefix):
                    found = answer(scope)
                    if found is not None:
                        status, headers, body = found
                        await send(
                            {"type": "http.response.start", "status": status, "headers": headers}
                        )
                        await send({"type": "http.response.body", "body": body})
                        return
                    break
        await self.app(scope, receive, send)

    async def _call(self, endpoint: Endpoint, scope: Scope, receive: Receive, send: Send) -> None:
        """What Starlette's route and exception layer do for an async endpoint: call
        it, map what it raises with ``handlers`` (anything unmapped goes on up, to the
        error boundary), send the response."""
        scope["endpoint"] = endpoint
        scope["path_params"] = {}
        request = Request(scope, receive, send)
        try:
            response = await endpoint(request)
        except Exception as exc:
            handler = self._handler(exc)
            if handler is None:
                raise
            response = await handler(request, exc)
            exc.__traceback__ = None  # a reused exception must not pile up tracebacks
        await response(scope, receive, send)

    def _handler(self, exc: Exception) -> _Handler | None:
        for cls in type(exc).__mro__:
            handler = self.handlers.get(cls)
            if handler is not None:
                return handler
        return None
