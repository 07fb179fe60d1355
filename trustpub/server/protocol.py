"""uvicorn's HTTP/1.1 protocols with the connection limits they lack.

Two parsers, one set of limits: ``GuardedHttpToolsProtocol`` (uvicorn's protocol on
httptools, the C parser llhttp; the default, ``[server] http = "httptools"``) and
``GuardedH11Protocol`` (uvicorn's protocol on the pure-Python h11, ``http = "h11"``).
Measured against uvicorn 0.54 (its source: ``uvicorn/protocols/http/h11_impl.py`` and
``httptools_impl.py``):

- Its only read timer is ``timeout_keep_alive``, armed after a response is sent and
  cancelled by any byte that arrives. A new connection that sends nothing, or a request
  head one byte every few seconds, or half a body, is held open forever.
- ``limit_concurrency`` answers 503 only once a request head has arrived, and counts
  open connections and running requests against one number: idle connections, never
  closed, make every request a 503, and they are accepted until the process runs out of
  descriptors (then ``accept()`` fails and nobody, ``/healthz`` included, gets in).
- h11 bounds the head's size (``h11_max_incomplete_event_size``, 16 KiB), not its
  duration, nor its number of header lines; uvicorn answers an oversize head 400. llhttp
  bounds neither: a head may grow as long as the client sends, and httptools keeps it.
- h11 parses one request at a time (the rest waits in its buffer while a response is
  due); httptools parses every request a read delivers, and uvicorn queues them all.
- ``timeout_graceful_shutdown`` does bound shutdown (used as it is).

So, on either parser:

- **Head size**: at most ``MAX_HEAD`` bytes (16 KiB, h11's default) from a request's first
  byte to the end of its head, request line included; at most ``MAX_HEADERS`` header
  lines. Past either, a 431 answer and the connection closed. On httptools the guard
  counts the bytes fed while a head is incomplete (a head trickled in many reads) and the
  bytes of the URL and header lines it parsed (a head that arrives whole in one read);
  both undercount the head's true size, so neither refuses a head under the limit.
- **Pipelining** (httptools): at most ``MAX_PIPELINED`` requests queued behind the one
  being answered; past it, the connection stops reading and closes after answering those
  (RFC 9112 section 9.3.2: a client retries what was not answered).
- One timer per connection, in one of three roles:

  - **head**: from the connection's first moment (or the first byte of a request after a
    keep-alive pause) until its request head is complete: ``head_timeout``.
  - **body**: while a request body is incomplete, the longest wait for the next byte:
    ``body_timeout``. Not while uvicorn itself stopped reading (the application has not
    consumed what it has): the client is not stalling then.
  - between requests, uvicorn's own ``timeout_keep_alive``.

  When a timer fires the connection is closed; an application waiting for the body sees
  the client disconnect.
- Connections are capped at ``max_connections`` per process: past it, the connection
  idle longest (no request in progress: a keep-alive pause or a head not yet complete) is
  closed to make room, so idle sockets can never lock out real requests; if every
  connection has a request in progress, the new one is answered 503 at once.

Also: cargo sends ``Connection: Upgrade, HTTP2-Settings`` / ``Upgrade: h2c`` on every
request. Answering over HTTP/1.1 is the correct refusal (RFC 9110 section 7.8); uvicorn
logs two warnings for it each time, which are dropped here. llhttp treats such a request
as the end of HTTP/1.1 on the connection: it skips the request's body (httptools asks it
to) and stops at the body's first byte (``HttpParserUpgrade``). The guard then goes on
parsing HTTP/1.1 from there: with a fresh parser primed with a head that declares the
same body (``Content-Length`` or chunked), whose head callbacks are ignored, so the body
reaches the request it belongs to and later requests parse as usual.

Why by hand: uvicorn has no such limits and no hook for them (its protocols are the
extension point it documents, ``Config(http=...)``); a proxy in front (nginx) would hold
them, but the service must be safe on its own. The cost is a timer per request and a
few counters per read: bench/RESULTS.md.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import h11
import httptools
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("trustpub.server")

MAX_HEAD = 16 * 1024
MAX_HEADERS = 100
MAX_PIPELINED = 16
PARSERS = ("httptools", "h11")


def _answer(status: bytes, detail: str) -> bytes:
    body = b'{"errors":[{"detail":"' + detail.encode() + b'"}]}'
    return (
        b"HTTP/1.1 " + status + b"\r\n"
        b"content-type: application/json\r\n"
        + (b"retry-after: 1\r\n" if status.startswith(b"503") else b"")
        + b"connection: close\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )


BUSY_RESPONSE = _answer(
    b"503 Service Unavailable", "The service is at its connection limit; retry shortly."
)
HEAD_TOO_LARGE_RESPONSE = _answer(
    b"431 Request Header Fields Too Large",
    f"The request head is too large (at most {MAX_HEAD} bytes and {MAX_HEADERS} header lines).",
)


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    head_timeout: float
    body_timeout: float
    max_connections: int


def guarded_protocol(limits: ConnectionLimits, parser: str = "httptools") -> type[asyncio.Protocol]:
    """The protocol class to give uvicorn (``Config(http=...)``) for these limits."""
    base: type[Any] = {"httptools": GuardedHttpToolsProtocol, "h11": GuardedH11Protocol}[parser]
    return type(base.__name__, (base,), {"limits": limits})


class _Corked:
    """The connection's transport, with the writes of one event-loop turn sent together.

    uvicorn writes a response's status line and headers, then its body, each at once: two
    ``send`` calls and two TCP segments for every response. Here what is written during one
    turn of the loop leaves at its end in one ``writelines`` (one ``writev`` on uvloop, no
    copy), so a response whose body follows its head at once goes out in one. Closing and
    aborting send or drop what waits first; everything else is the transport's own.
    """

    __slots__ = ("_loop", "_pending", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not data:
            return
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(data)

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        if pending and not self._transport.is_closing():
            self._transport.writelines(pending)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def abort(self) -> None:
        self._pending = []
        self._transport.abort()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class _Guard:
    """The timers and the connection cap, shared by both protocols."""

    limits: ConnectionLimits
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    connections: set[Any]
    client: tuple[str, int] | None
    flow: Any

    def _guard_init(self) -> None:
        self._timer: asyncio.TimerHandle | None = None
        self._role = ""  # "head", "body", or "" (no timer of ours)
        self._idle_since = 0.0

    def _idle(self) -> bool:
        """No request in progress: between requests, or its head not complete yet."""
        raise NotImplementedError

    def _admit(self, transport: asyncio.Transport) -> None:
        """After uvicorn's connection_made: the cap, then the head timer."""
        self.transport = _Corked(transport, self.loop)  # type: ignore[assignment]
        self._idle_since = self.loop.time()
        if len(self.connections) > self.limits.max_connections and not self._make_room():
            transport.write(BUSY_RESPONSE)
            transport.close()
            return
        self._arm("head", self.limits.head_timeout)

    def _make_room(self) -> bool:
        """Close the connection idle longest, if another is over the limit."""
        others = [
            c
            for c in self.connections
            if c is not self and isinstance(c, _Guard) and not c.transport.is_closing()
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

    def _refuse_head(self) -> None:
        log.debug(
            "closing a connection: request head too large",
            extra={"fields": {"client": self.client[0] if self.client else None}},
        )
        self._disarm()
        if not self.transport.is_closing():
            self.transport.write(HEAD_TOO_LARGE_RESPONSE)
            self.transport.close()


class _HeadTooLarge(Exception):
    pass


def _h11_head_size(request: h11.Request) -> int:
    """The bytes of its request line and header lines, at least."""
    size = len(request.method) + len(request.target) + 12
    for name, value in request.headers:
        size += len(name) + len(value) + 3
    return size


class GuardedH11Protocol(_Guard, H11Protocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._guard_init()
        self._head_too_large = False
        next_event = self.conn.next_event

        def checked_next_event() -> Any:
            try:
                event = next_event()
            except h11.RemoteProtocolError as exc:
                self._head_too_large = exc.error_status_hint == 431
                raise
            if isinstance(event, h11.Request) and (
                len(event.headers) > MAX_HEADERS or _h11_head_size(event) > MAX_HEAD
            ):
                # h11 bounds only a head still incomplete: one that came whole is here.
                self._head_too_large = True
                raise h11.RemoteProtocolError("request head too large", error_status_hint=431)
            return event

        self.conn.next_event = checked_next_event  # type: ignore[method-assign]

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._admit(transport)

    def _idle(self) -> bool:
        return self.conn.their_state is h11.IDLE and (
            self.cycle is None or self.cycle.response_complete
        )

    def send_400_response(self, msg: str) -> None:
        if self._head_too_large:
            self._refuse_head()
        else:
            super().send_400_response(msg)

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

    def _unsupported_upgrade_warning(self) -> None:
        """Declined by answering over HTTP/1.1, as the protocol intends: nothing to log."""


# llhttp's own words for a refused request are fixed strings (never the request's bytes):
# passed on, so a client learns what was wrong. Framing refusals say what the web layer
# says of them under h11 (trustpub.web.bodies).
_FRAMING_CONFLICT = "Content-Length and Transfer-Encoding must not be sent together"


def _parse_error_detail(exc: Exception) -> str:
    reason = str(exc.args[0]) if exc.args and isinstance(exc.args[0], str) else ""
    if "Transfer-Encoding" in reason and "Content-Length" in reason:
        return _FRAMING_CONFLICT
    if reason and reason.isascii() and reason.isprintable() and len(reason) <= 200:
        return f"Invalid HTTP request: {reason}"
    return "Invalid HTTP request received."


# Where the request being parsed is, for httptools (which has no state to ask).
_IDLE, _HEAD, _BODY = 0, 1, 2


class GuardedHttpToolsProtocol(_Guard, HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._guard_init()
        self._parse = _IDLE
        self._fed = 0  # bytes fed while a head was incomplete
        self._head_size = 0  # bytes of the URL and header lines parsed
        self._header_count = 0
        self._body_header = b""  # the body a request declared: its framing header line
        self._priming = False  # a fresh parser's stand-in head is being fed
        self._draining = False  # past the pipelining bound: answer what is queued, then close

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._admit(transport)

    def _idle(self) -> bool:
        return (
            self._parse != _BODY
            and not self.pipeline
            and (self.cycle is None or self.cycle.response_complete)
        )

    # -- reading -------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        if self._draining:
            return
        if self._parse != _BODY:
            self._fed += len(data)
        while True:
            try:
                self.parser.feed_data(data)
            except httptools.HttpParserUpgrade as upgrade:
                data = self._after_upgrade(data[upgrade.args[0] :])
                continue
            except httptools.HttpParserError as exc:
                if isinstance(exc.__context__, _HeadTooLarge):
                    self._refuse_head()
                elif self._draining:
                    self.flow.pause_reading()
                else:
                    log.debug("closing a connection: invalid HTTP request")
                    self.send_400_response(_parse_error_detail(exc))
                self._disarm()
                return
            break
        if self._parse == _HEAD and self._fed > MAX_HEAD:
            self._refuse_head()
            return
        self._follow()

    def _after_upgrade(self, rest: bytes) -> bytes:
        """Go on with HTTP/1.1 after llhttp stopped for an ``Upgrade``; what to feed next."""
        if not self._body_header:
            return rest  # the same parser resumes at the next request
        # The body llhttp skipped: a fresh parser, primed with a head declaring it.
        self.parser = httptools.HttpRequestParser(self)
        self.parser.set_dangerous_leniencies(lenient_data_after_close=True)
        self._priming = True
        self._body_header, framing = b"", self._body_header
        return b"POST / HTTP/1.1\r\n" + framing + b"\r\n\r\n" + rest

    def _follow(self) -> None:
        """Set the timer for where the request now is."""
        if self.transport.is_closing():
            self._disarm()
        elif self._parse == _BODY:
            self._arm("body", self.limits.body_timeout)  # from the latest byte
        elif self._parse == _HEAD or (self.cycle is None or self.cycle.response_complete):
            # A head begun, or bytes between requests: the deadline runs from the first.
            if self._role != "head":
                self._arm("head", self.limits.head_timeout)
        else:  # the whole request is in: the application's turn
            self._disarm()

    # -- parser callbacks ------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._priming:
            return
        self._parse = _HEAD
        self._head_size = 0
        self._header_count = 0
        self._body_header = b""
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        if self._priming:
            return
        self._head_size += len(url) + 14  # method, spaces, version, line end: at least
        if self._head_size > MAX_HEAD:
            raise _HeadTooLarge
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._priming:
            return
        self._head_size += len(name) + len(value) + 3
        self._header_count += 1
        if self._head_size > MAX_HEAD or self._header_count > MAX_HEADERS:
            raise _HeadTooLarge
        lower = name.lower()
        if lower == b"content-length":
            self._body_header = b"content-length: " + value
        elif lower == b"transfer-encoding":
            self._body_header = b"transfer-encoding: " + value
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._parse = _BODY
        self._fed = 0
        if self._priming:
            self._priming = False
            return
        if self.pipeline and len(self.pipeline) >= MAX_PIPELINED:
            # Answer what is queued; the last of them closes the connection.
            self._draining = True
            self.pipeline[0][0].keep_alive = False
            raise _Draining
        super().on_headers_complete()
        if not self.parser.should_upgrade():
            self._body_header = b""

    def on_message_complete(self) -> None:
        self._parse = _IDLE
        self._fed = 0
        if self._body_header and self.parser.should_upgrade():
            # llhttp skipped the body of an Upgrade request: read it after all.
            self._parse = _BODY
            return
        super().on_message_complete()

    def on_response_complete(self) -> None:
        self._idle_since = self.loop.time()
        self._disarm()  # uvicorn's keep-alive timer takes over...
        super().on_response_complete()
        if self.pipeline or self._parse != _IDLE:
            self._follow()  # ...unless a pipelined request is already arriving

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _unsupported_upgrade_warning(self) -> None:
        """Declined by answering over HTTP/1.1, as the protocol intends: nothing to log."""


class _Draining(Exception):
    pass
