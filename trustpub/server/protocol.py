"""uvicorn's h11 protocol with the connection limits it lacks.

Measured against uvicorn 0.54 (its source: ``uvicorn/protocols/http/h11_impl.py``):

- Its only read timer is ``timeout_keep_alive``, armed after a response is sent and
  cancelled by any byte that arrives. A new connection that sends nothing, or a request
  head one byte every few seconds, or half a body, is held open forever.
- ``limit_concurrency`` answers 503 only once a request head has arrived, and counts
  open connections and running requests against one number: idle connections, never
  closed, make every request a 503, and they are accepted until the process runs out of
  descriptors (then ``accept()`` fails and nobody, ``/healthz`` included, gets in).
- ``h11_max_incomplete_event_size`` bounds the head's size (16 KiB default), not its
  duration; ``timeout_graceful_shutdown`` does bound shutdown (used as it is).

So each connection here carries one timer, in one of three roles:

- **head**: from the connection's first moment (or the first byte of a request after a
  keep-alive pause) until its request head is complete: ``head_timeout``.
- **body**: while a request body is incomplete, the longest wait for the next byte:
  ``body_timeout``. Not while uvicorn itself stopped reading (the application has not
  consumed what it has): the client is not stalling then.
- between requests, uvicorn's own ``timeout_keep_alive``.

When a timer fires the connection is closed; an application waiting for the body sees
the client disconnect. Connections are capped at ``max_connections`` per process: past
it, the connection idle longest (no request in progress: a keep-alive pause or a head not
yet complete) is closed to make room, so idle sockets can never lock out real requests;
if every connection has a request in progress, the new one is answered 503 at once.

The cost is one timer per request and a state check per read: within the noise of
``bench/run`` (see bench/RESULTS.md).

Also: cargo sends ``Connection: Upgrade, HTTP2-Settings`` / ``Upgrade: h2c`` on every
request. Answering over HTTP/1.1 is the correct refusal (RFC 9110 section 7.8); uvicorn
logs two warnings for it each time, which are dropped here.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("trustpub.server")

_BUSY_BODY = b'{"errors":[{"detail":"The service is at its connection limit; retry shortly."}]}'
BUSY_RESPONSE = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"content-type: application/json\r\n"
    b"retry-after: 1\r\n"
    b"connection: close\r\n"
    b"content-length: " + str(len(_BUSY_BODY)).encode() + b"\r\n\r\n" + _BUSY_BODY
)


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    head_timeout: float
    body_timeout: float
    max_connections: int


def guarded_protocol(limits: ConnectionLimits) -> type[H11Protocol]:
    """The protocol class to give uvicorn (``Config(http=...)``) for these limits."""
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {"limits": limits})


class GuardedH11Protocol(H11Protocol):
    limits: ConnectionLimits

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._timer: asyncio.TimerHandle | None = None
        self._role = ""  # "head", "body", or "" (no timer of ours)
        self._idle_since = 0.0

    # -- the connection cap ----------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._idle_since = self.loop.time()
        if len(self.connections) > self.limits.max_connections and not self._make_room():
            transport.write(BUSY_RESPONSE)
            transport.close()
            return
        self._arm("head", self.limits.head_timeout)

    def _idle(self) -> bool:
        """No request in progress: between requests, or its head not complete yet."""
        return self.conn.their_state is h11.IDLE and (
            self.cycle is None or self.cycle.response_complete
        )

    def _make_room(self) -> bool:
        """Close the connection idle longest, if another is over the limit."""
        others = [
            c
            for c in self.connections
            if c is not self and isinstance(c, GuardedH11Protocol) and not c.transport.is_closing()
        ]
        if len(others) < self.limits.max_connections:
            return True  # the surplus is already closing
        idle = [c for c in others if c._idle()]
        if not idle:
            return False
        victim = min(idle, key=lambda c: c._idle_since)
        log.debug("connection limit reached: closing the connection idle longest")
        victim.transport.close()
        return True

    # -- the timers ------------------------------------------------------------------

    def _arm(self, role: str, delay: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._role = role
        self._timer = self.loop.call_later(delay, self._expired)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._role = ""

    def _expired(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        if self._role == "body" and self.flow.read_paused:
            # uvicorn stopped reading until the application catches up: not a stall.
            self._arm("body", self.limits.body_timeout)
            return
        log.debug(
            "closing a connection: request %s not received in time",
            self._role,
            extra={"fields": {"client": self.client[0] if self.client else None}},
        )
        self.transport.close()

    def _follow(self) -> None:
        """Set the timer for where the request now is."""
        if self.transport.is_closing():
            self._disarm()
            return
        state = self.conn.their_state
        if state is h11.IDLE:
            if self.conn.trailing_data[0]:  # part of a head has arrived
                if self._role != "head":  # the deadline runs from its first byte
                    self._arm("head", self.limits.head_timeout)
            elif self._role == "body":
                self._disarm()
        elif state is h11.SEND_BODY:
            self._arm("body", self.limits.body_timeout)  # from the latest byte
        else:  # the whole request is in: the application's turn
            self._disarm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._follow()

    def on_response_complete(self) -> None:
        self._idle_since = self.loop.time()
        self._disarm()  # uvicorn's keep-alive timer takes over...
        super().on_response_complete()
        self._follow()  # ...unless a pipelined request is already arriving

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    # -- cargo's h2c upgrade ----------------------------------------------------------

    def _unsupported_upgrade_warning(self) -> None:
        """Declined by answering over HTTP/1.1, as the protocol intends: nothing to log."""
