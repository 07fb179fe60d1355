"""A lane past the router for the hottest reads, answered from memory.

Starlette's router tries each route's pattern in turn and wraps every answer in a
``Request`` and a ``Response`` object, with an exception layer around both: for an index
file cargo fetches by the thousand, that is most of the work (bench/RESULTS.md). A lane
is ``(method, path prefix, answer)``: for a request that matches, ``answer(scope)``
returns the whole response (status, encoded headers, body) when it can give it from
memory, or None, and then the request goes the usual way (the router, the endpoint, the
one error mapping in ``trustpub.web.errors``). So a lane never answers an error, never
reads a body, never awaits: whatever it cannot settle at once is not its business.

It sits inside the access log and the error boundary: every request still gets its
access line and request id, whichever way it goes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from starlette.types import ASGIApp, Receive, Scope, Send

# (status, headers as the server sends them, body)
Answer = tuple[int, Sequence[tuple[bytes, bytes]], bytes]
Lane = tuple[str, str, Callable[[Scope], Answer | None]]


class FastLane:
    def __init__(self, app: ASGIApp, lanes: Sequence[Lane] = ()) -> None:
        self.app = app
        self.lanes = tuple(lanes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            method, path = scope["method"], scope["path"]
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
