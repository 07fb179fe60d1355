"""The Redis store's command path: one auto-pipelined connection per event loop.

Why hand-written: every introspection is one Redis round trip and every exchange three,
and through redis-py's pool each command took a connection from the pool, sent, read
and gave it back. Here all the commands issued in one tick of the event loop leave in
one ``transport.write`` on one connection, and ``hiredis.Reader`` parses the replies,
handed to the callers' futures in the order the commands were written (Redis answers
in order). CPU per operation of this process (``bench/redis_commands.py``, uvloop,
median of 5 runs, the pool path being the store's former one in the same store):

    operation                        1 caller   32 callers
    GET, this pipeline                28.7 us       2.9 us
    GET, pool (Python parser)         63.7 us      35.6 us
    lookup_after, this pipeline       33.2 us       4.7 us
    lookup_after, pool (Python)       77.9 us      51.3 us

(with redis-py's hiredis parser the pool path costs 32.4 and 44.7 us at 32 callers).

On the hot paths (the store's ``lookup``, ``lookup_after`` and ``issue``, the rate
limit check) a caller packs its command by hand (``bulk``: the constant parts encoded
once; ``hiredis.pack_command`` took 2-3 us a call, the join 0.3 us) and awaits
``submit``'s future itself: one await per command, where five to seven coroutines
stood between the caller and the future; failures take the store's slower path. CPU
per operation at 32 callers (``bench/redis_commands.py --repeats 5``, a loaded
two-core machine, before -> after): lookup 9.8 -> 7.6 us, lookup_after 19.2 -> 10.3,
the rate limit check 32.1 -> 9.4, issue 28.3 -> 20.4.

The store needs to know, for each failure, whether its command left this process
(``RedisStore``'s docstring says why), so each is one of:

    NotConnected    connecting failed (refused, timed out, AUTH/SELECT refused):
                    nothing was sent; a retry would only wait again
    NotSent         the connection was lost before the command was written (``retry``
                    says whether sending it on a fresh connection may help)
    ConnectionLost  written, then the connection closed (by the server, or by us after
                    a reply we could not parse): the server ran it entirely or not at all
    ReplyTimeout    written, no reply within ``timeout``: it may still run

A command counts as written once it was given to ``transport.write`` (the transport
may still hold it; the server may or may not get it). One timer per connection
watches the oldest command waiting for its reply; when that one has waited ``timeout``
the connection is aborted and every command waiting on it fails with ``ReplyTimeout``
(a server too slow for one is too slow for those behind it). A caller cancelled while
waiting leaves its place in the queue: its reply is still read, and dropped, so the
replies behind it go to their own callers.

A new connection sends AUTH, SELECT and CLIENT SETNAME (as the URL asks) before any
command, within the same ``timeout`` as the connect; callers arriving meanwhile wait
for that one attempt. The next command after a connection is lost connects again. A
connection idle for ``IDLE_LIMIT`` seconds is replaced before use rather than trusted
(as redis-py's health check would PING it): a connection dropped silently on the way
(a NAT's idle timeout) would otherwise turn the next claim into an unknown outcome.
Replies are RESP2 whatever ``protocol`` the URL gives redis-py.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from asyncio import get_running_loop
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import hiredis
from redis._parsers.base import BaseParser
from redis.asyncio.connection import ConnectionPool, SSLConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import InvalidResponse, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.typing import EncodableT

__all__ = [
    "IDLE_LIMIT",
    "CommandFailed",
    "ConnectionLost",
    "Endpoint",
    "NotConnected",
    "NotSent",
    "RedisPipeline",
    "ReplyTimeout",
    "bulk",
    "pack",
]

# Seconds without a reply after which an idle connection is replaced before use
# (redis-py's pool, as the store configured it, health-checked connections idle 30 s).
IDLE_LIMIT = 30.0

# TCP keepalive: a dead peer of an idle connection is noticed within 45 s.
_KEEPALIVE = {
    name: value
    for name, value in (("TCP_KEEPIDLE", 30), ("TCP_KEEPINTVL", 5), ("TCP_KEEPCNT", 3))
    if hasattr(socket, name)
}

_NOT_ENOUGH_DATA: Any = object()  # the reader's answer while a reply is incomplete


def pack(*args: EncodableT) -> bytes:
    """One command in RESP, as the server reads it (``hiredis.pack_command``)."""
    return cast(bytes, hiredis.pack_command(args))  # type: ignore[arg-type]


_BULK_HEADS = [b"$%d\r\n" % length for length in range(1024)]


def bulk(value: bytes) -> bytes:
    """``value`` as one RESP bulk string: for commands packed by hand, their constant
    parts once and the rest per call (several times cheaper than ``pack``)."""
    length = len(value)
    if length < 1024:
        return _BULK_HEADS[length] + value + b"\r\n"
    return b"$%d\r\n" % length + value + b"\r\n"


class CommandFailed(Exception):
    """A command got no reply; ``cause`` is redis-py's exception for what happened
    (its class name is what the store reports)."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


class NotConnected(CommandFailed):
    """Connecting failed: nothing was sent."""


class NotSent(CommandFailed):
    """The connection was lost before the command was written."""

    def __init__(self, cause: BaseException, *, retry: bool) -> None:
        super().__init__(cause)
        self.retry = retry


class ConnectionLost(CommandFailed):
    """Written, then the connection closed before its reply came."""


class ReplyTimeout(CommandFailed):
    """Written, and no reply within the timeout."""


@dataclass(frozen=True)
class Endpoint:
    """Where and how to connect: what redis-py parsed from the store URL."""

    host: str = "localhost"
    port: int = 6379
    path: str | None = None  # a unix socket, instead of host and port
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    client_name: str | None = None
    ssl_context: Callable[[], ssl.SSLContext] | None = field(default=None, repr=False)

    @classmethod
    def from_pool(cls, pool: ConnectionPool) -> Endpoint:
        """The endpoint of ``pool``'s connections (``redis://``, ``rediss://`` and
        ``unix://`` URLs, as ``ConnectionPool.from_url`` parsed them)."""
        kwargs = dict(pool.connection_kwargs)
        if kwargs.get("credential_provider") is not None:
            raise ValueError("a credential_provider is not supported; give them in the URL")
        ssl_context = None
        if issubclass(pool.connection_class, SSLConnection):
            # redis-py's own reading of the ssl_* options (and its defaults: certificates
            # and host names checked), never connected: only its SSL context is used.
            ssl_context = pool.connection_class(**kwargs).ssl_context.get
        path = kwargs.get("path")
        return cls(
            host=str(kwargs.get("host", "localhost")),
            port=int(kwargs.get("port", 6379)),
            path=str(path) if path else None,
            db=int(kwargs.get("db", 0) or 0),
            username=kwargs.get("username"),
            password=kwargs.get("password"),
            client_name=kwargs.get("client_name"),
            ssl_context=ssl_context,
        )

    @property
    def where(self) -> str:
        """For messages: never the credentials."""
        return f"unix:{self.path}" if self.path else f"{self.host}:{self.port}"


class RedisPipeline:
    """Runs commands on one connection per event loop, pipelined (see the module
    docstring). ``writes`` counts the ``transport.write`` calls of all its connections
    (tests and benchmarks read it)."""

    def __init__(self, endpoint: Endpoint, *, timeout: float) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self.writes = 0
        self._links: dict[asyncio.AbstractEventLoop, _Link] = {}
        self._connecting: dict[asyncio.AbstractEventLoop, asyncio.Task[_Link]] = {}

    def submit(self, data: bytes, replies: int = 1) -> Awaitable[Any]:
        """Send ``data`` (``replies`` packed commands, RESP as ``pack`` makes it): what to
        await for the reply (a list of them when ``replies`` > 1).

        The hot path of every store command: on a connection in use it is the command's
        own future, no coroutine in between (``bench/redis_commands.py``). Awaiting it
        raises ``CommandFailed`` when there is no reply; with one reply, an error reply
        is raised as ``execute`` raises it; with several, error replies are returned in
        their place, as ``execute_many`` does."""
        loop = get_running_loop()
        link = self._links.get(loop)
        if link is not None and not link.closed:
            now = loop.time()
            if link.pending or now - link.last_reply < IDLE_LIMIT:
                return link.send(data, replies, now)
        return self._connect_and_send(loop, data, replies)

    async def _connect_and_send(
        self, loop: asyncio.AbstractEventLoop, data: bytes, replies: int
    ) -> Any:
        link = await self._connect(loop)
        return await link.send(data, replies, loop.time())

    async def execute(self, args: Sequence[EncodableT]) -> object:
        """One command's reply; an error reply is raised as redis-py's exception class
        for it (``NoScriptError``, ``ReadOnlyError``, ... or ``ResponseError``; a few
        are not ``ResponseError``s: ``AuthenticationError`` for NOAUTH,
        ``BusyLoadingError`` for LOADING). ``CommandFailed`` when there is no reply."""
        return await self.submit(pack(*args))

    async def execute_many(self, commands: Sequence[Sequence[EncodableT]]) -> list[object]:
        """The replies of ``commands``, written together; error replies are returned as
        their exceptions, in their place. ``CommandFailed`` when any reply is missing."""
        data = b"".join(pack(*c) for c in commands)
        if len(commands) == 1:
            try:
                return [await self.submit(data)]
            except RedisError as exc:  # an error reply, in its place
                return [exc]
        replies: list[object] = await self.submit(data, len(commands))
        return replies

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> _Link:
        """The loop's connection, new; concurrent callers share one attempt."""
        task = self._connecting.get(loop)
        if task is None:
            old = self._links.pop(loop, None)
            if old is not None:
                old.close()  # idle too long: replaced, not trusted
            for other in [other for other in self._links if other.is_closed()]:
                del self._links[other]
            task = loop.create_task(self._open(loop))
            self._connecting[loop] = task
            task.add_done_callback(self._connected)
        # One caller cancelled does not cancel the attempt the others wait for.
        return await asyncio.shield(task)

    def _connected(self, task: asyncio.Task[_Link]) -> None:
        loop = task.get_loop()
        wanted = self._connecting.get(loop) is task  # not when closed meanwhile
        if wanted:
            del self._connecting[loop]
        if task.cancelled():
            return
        if task.exception() is None:  # retrieved, so never logged as unhandled
            if wanted:
                self._links[loop] = task.result()
            else:
                task.result().close()  # its callers' commands fail as NotSent

    async def _open(self, loop: asyncio.AbstractEventLoop) -> _Link:
        endpoint = self.endpoint
        link: _Link | None = None
        try:
            async with asyncio.timeout(self.timeout):
                if endpoint.path is not None:
                    _, link = await loop.create_unix_connection(
                        lambda: _Link(self, loop), endpoint.path
                    )
                else:
                    context = endpoint.ssl_context() if endpoint.ssl_context else None
                    _, link = await loop.create_connection(
                        lambda: _Link(self, loop), endpoint.host, endpoint.port, ssl=context
                    )
                    _keepalive(link)
                await self._handshake(link, loop)
            return link
        except TimeoutError as exc:
            if link is not None:
                link.abort()
            raise NotConnected(
                RedisTimeoutError(f"Timeout connecting to {endpoint.where}")
            ) from exc
        except OSError as exc:
            if link is not None:
                link.abort()
            raise NotConnected(
                RedisConnectionError(f"Error connecting to {endpoint.where}: {exc}")
            ) from exc
        except (CommandFailed, RedisError) as exc:
            if link is not None:
                link.abort()
            cause = exc.cause if isinstance(exc, CommandFailed) else exc
            raise NotConnected(cause) from exc
        except BaseException:
            if link is not None:
                link.abort()
            raise

    async def _handshake(self, link: _Link, loop: asyncio.AbstractEventLoop) -> None:
        endpoint = self.endpoint
        commands: list[tuple[EncodableT, ...]] = []
        if endpoint.password is not None:
            if endpoint.username:
                commands.append(("AUTH", endpoint.username, endpoint.password))
            else:
                commands.append(("AUTH", endpoint.password))
        if endpoint.db:
            commands.append(("SELECT", endpoint.db))
        if endpoint.client_name:
            commands.append(("CLIENT", "SETNAME", endpoint.client_name))
        if not commands:
            return
        data = b"".join(pack(*c) for c in commands)
        # An error reply (AuthenticationError, ...) refuses the connection: raised by
        # the future of one command, checked here for several.
        replies = await link.send(data, len(commands), loop.time())
        for reply in replies if len(commands) > 1 else ():
            if isinstance(reply, RedisError):
                raise reply

    async def aclose(self) -> None:
        """Close the connections (commands still waiting fail with ``ConnectionLost``);
        a later command connects again."""
        for task in self._connecting.values():
            task.cancel()
        self._connecting.clear()
        links, self._links = self._links, {}
        running = asyncio.get_running_loop()
        for loop, link in links.items():
            if loop is running:
                link.close()
            elif not loop.is_closed():
                loop.call_soon_threadsafe(link.close)


def _keepalive(link: _Link) -> None:
    transport = link.transport
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None:
        return
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for name, value in _KEEPALIVE.items():
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)
    except OSError:  # not a TCP socket after all (a proxy): keepalive is a nicety
        pass


class _Link(asyncio.Protocol):
    """One connection: commands written once per loop tick, replies handed out in
    order. ``_pending`` holds, per ``send``, its future, how many replies it takes and
    when it was sent; the last ``_unwritten`` of them are still in ``_buffer``."""

    def __init__(self, owner: RedisPipeline, loop: asyncio.AbstractEventLoop) -> None:
        self._owner = owner
        self._loop = loop
        self._timeout = owner.timeout
        self.transport: asyncio.Transport | None = None
        self._reader = hiredis.Reader(
            protocolError=InvalidResponse,
            replyError=BaseParser.parse_error,
            notEnoughData=_NOT_ENOUGH_DATA,
        )
        self.pending: deque[tuple[asyncio.Future[Any], int, float]] = deque()
        self._partial: list[object] = []  # replies so far of the oldest multi-reply send
        self._buffer: list[bytes] = []
        self._unwritten = 0
        self._flush_scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        self.closed = False
        self.last_reply = loop.time()

    # -- used by RedisPipeline --------------------------------------------------------

    def send(self, data: bytes, replies: int, now: float) -> asyncio.Future[Any]:
        """``data`` (``replies`` packed commands) is written at the end of this loop
        tick with everything else sent in it; the future gets the reply (a list of
        them when ``replies`` > 1) or a ``CommandFailed``."""
        future: asyncio.Future[Any] = self._loop.create_future()
        if self.closed:  # only between a loss and the pipeline noticing it
            future.set_exception(NotSent(RedisConnectionError("Connection closed"), retry=True))
            return future
        self.pending.append((future, replies, now))
        self._buffer.append(data)
        self._unwritten += 1
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)
        if self._timer is None:
            self._timer = self._loop.call_at(now + self._timeout, self._watch)
        return future

    def close(self) -> None:
        """Close: at once when idle; commands still waiting fail (``ConnectionLost``,
        or ``NotSent`` for those not yet written)."""
        if self.closed:
            return
        if self.pending:
            self._fail(RedisConnectionError("Connection closed by the client"), ConnectionLost)
            return
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self._fail(RedisConnectionError("Connection aborted"), ConnectionLost)

    # -- internals --------------------------------------------------------------------

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self.closed or not self._buffer or self.transport is None:
            return
        buffer = self._buffer
        data = buffer[0] if len(buffer) == 1 else b"".join(buffer)
        buffer.clear()
        self._unwritten = 0
        self.transport.write(data)
        self._owner.writes += 1

    def _watch(self) -> None:
        """The oldest command has waited ``timeout``, or is replaced by a younger one."""
        self._timer = None
        if self.closed or not self.pending:
            return
        deadline = self.pending[0][2] + self._timeout
        if deadline > self._loop.time():
            self._timer = self._loop.call_at(deadline, self._watch)
            return
        self._fail(RedisTimeoutError("Timeout reading from redis"), ReplyTimeout)

    def _fail(self, cause: BaseException, kind: Callable[[BaseException], CommandFailed]) -> None:
        """Close the connection at once; every waiting command fails: with ``kind``
        when written, ``NotSent`` when still buffered (retried unless timed out)."""
        if self.closed:
            return
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.transport is not None:
            self.transport.abort()
        pending, self.pending = self.pending, deque()
        self._buffer.clear()
        written = len(pending) - self._unwritten
        self._unwritten = 0
        self._partial = []
        for index, (future, _, _) in enumerate(pending):
            if future.done():  # its caller was cancelled
                continue
            if index < written:
                future.set_exception(kind(cause))
            else:
                future.set_exception(NotSent(cause, retry=kind is not ReplyTimeout))

    # -- asyncio.Protocol -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports have asyncio.Transport's methods, not its class.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        pending = self.pending
        while True:
            try:
                reply = reader.gets()
            except InvalidResponse as exc:
                self._fail(exc, ConnectionLost)
                return
            if reply is _NOT_ENOUGH_DATA:
                break
            if not pending:
                self._fail(InvalidResponse("a reply to no command"), ConnectionLost)
                return
            future, replies, _ = pending[0]
            if replies == 1:
                pending.popleft()
                if not future.done():
                    if isinstance(reply, RedisError):
                        future.set_exception(reply)  # an error reply: raised by await
                    else:
                        future.set_result(reply)
            else:
                partial = self._partial
                partial.append(reply)
                if len(partial) == replies:
                    pending.popleft()
                    self._partial = []
                    if not future.done():
                        future.set_result(partial)
        self.last_reply = self._loop.time()

    def eof_received(self) -> bool:
        return False  # the transport closes; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is None:
            cause: BaseException = RedisConnectionError("Connection closed by server.")
        else:
            cause = RedisConnectionError(f"Connection lost: {exc}")
        self._fail(cause, ConnectionLost)
