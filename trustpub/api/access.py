"""Access log: one JSON line per request (method, path, status, duration, request id,
client address, user agent, worker pid).

Each request gets an id: the client's ``X-Request-Id`` when it is sane (at most 128
characters from a safe set), else a new one; it is returned in the response's
``X-Request-Id`` and named, with the client address, on every audit line of the request.
The client address is the peer's, or what a trusted proxy forwards
(trustpub.web.forwarded); it replaces ``scope["client"]`` so everything downstream sees
the same one.

Headers other than these two, and bodies, where tokens travel, are never logged.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import secrets
import time
from collections.abc import Sequence

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from trustpub.logs import access_log, log_fields, request_context
from trustpub.web import ClientAddress

REQUEST_ID_HEADER = b"x-request-id"
_SANE_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:+/=@-]{1,128}")
USER_AGENT_LIMIT = 256


class _RequestIds:
    """New request ids: 32 hex characters, a random half drawn once per process and a
    counter. Unique without a draw from the operating system on every request (it was
    a few per cent of a small request's CPU); an id names a request, it guards nothing."""

    def __init__(self) -> None:
        self.reset()
        os.register_at_fork(after_in_child=self.reset)

    def reset(self) -> None:
        self._prefix = secrets.token_hex(8)
        self._counter = itertools.count()

    def new(self) -> str:
        return f"{self._prefix}{next(self._counter) & 0xFFFF_FFFF_FFFF_FFFF:016x}"


_IDS = _RequestIds()


def request_id(headers: Sequence[tuple[bytes, bytes]]) -> str:
    """The client's ``X-Request-Id`` if sane, else a new one."""
    for name, value in headers:
        if name == REQUEST_ID_HEADER:
            if _SANE_REQUEST_ID.fullmatch(value):
                return value.decode("ascii")
            break
    return _IDS.new()


def user_agent(headers: Sequence[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name == b"user-agent":
            # latin-1 maps every byte, so any header decodes; the JSON log escapes it.
            return value[:USER_AGENT_LIMIT].decode("latin-1")
    return None


class AccessLog:
    def __init__(
        self,
        app: ASGIApp,
        trusted_proxies: Sequence[str] = (),
        forwarded_header: str = "x-forwarded-for",
    ) -> None:
        self.app = app
        self.client_address = ClientAddress(trusted_proxies, forwarded_header)
        # Which worker process served the request (the app is built in the worker).
        self.pid = os.getpid()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        headers = scope["headers"]
        rid = request_id(headers)
        client = self.client_address.resolve(scope)
        if client is not None and (scope.get("client") or (None,))[0] != client:
            scope["client"] = (client, 0)
        request_context.set({"request_id": rid, "client": client})
        header = (REQUEST_ID_HEADER, rid.encode("ascii"))

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            log_fields(
                access_log,
                logging.INFO,
                "request",
                {
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": status,
                    "ms": round((time.perf_counter() - started) * 1000, 2),
                    "client": client,
                    "request_id": rid,
                    "user_agent": user_agent(headers),
                    "pid": self.pid,
                },
            )
