"""Redis store: for any number of service processes on any number of hosts.

Keys, under a configurable prefix (default ``trustpub:``):

    {prefix}token:{sha256 hex}   the token record (JSON), expiring with the token (EXAT)
    {prefix}jti:{sha256 hex}     a claimed JWT id, expiring at exp + leeway + margin
    {prefix}pin:{key}            a GitLab namespace pin, never expiring
    {prefix}ping                 written by ``ping`` (readiness checks), for a minute

Expiry is Redis's own (EXAT), so nothing needs purging.

Durability: a used JWT id must survive a Redis restart, or the JWT could be exchanged
again. Before the first claim (and on every ``ping`` until it passes) the store reads
the server's persistence settings (``CONFIG GET appendonly``, or ``INFO persistence``
where ``CONFIG`` is disabled) and refuses a server without the append-only file, unless
the store URL says ``allow_volatile=1``.

Commands run on one connection per event loop shared by every caller, auto-pipelined
(``trustpub.store.redis_pipeline``): the commands of one loop tick leave in one write,
their replies are parsed by hiredis and handed back in order. Through redis-py's pool
(take a connection, send, read, give it back) a GET cost 35.6 us of CPU, this way 2.9 us
(uvloop, 32 concurrent callers; introspection's ``lookup_after`` 51.3 -> 4.7 us, see
``bench/redis_commands.py``); introspection is one round trip and an exchange three,
so that was a large share of their cost. The redis-py client (``client``) stays, for
what registers scripts on it and for tests.

The pipeline also tells whether a failure came before the command left (then nothing
happened on the server and one retry on a fresh connection is safe, which also absorbs
a connection lost to a Redis restart) or after, which redis-py's own retry cannot. After,
a read is retried; a JWT claim is not: when the server closed the connection, the claim
ran entirely or not at all, and reading its keys tells which; after a timeout (no reply
within the store's ``timeout``: the connection is then dropped, with every command
waiting on it) it may still run, so the client is told the outcome is unknown and to
retry with a new OIDC token. A failure to connect is not retried: nothing was sent, and
a retry would only double the wait.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.typing import EncodableT

from trustpub.errors import ConfigurationError, StoreUnavailable
from trustpub.store.base import StoreNotDurable, check_expiry
from trustpub.store.redis_pipeline import (
    CommandFailed,
    ConnectionLost,
    Endpoint,
    NotConnected,
    NotSent,
    RedisPipeline,
    ReplyTimeout,
)

logger = logging.getLogger(__name__)

DEFAULT_MAX_CONNECTIONS = 64
DEFAULT_PREFIX = "trustpub:"
DEFAULT_TIMEOUT = 2.0
ALLOW_VOLATILE = "allow_volatile"

OUTCOME_UNKNOWN = (
    "Token store did not confirm the exchange: the outcome is unknown (a token may have "
    "been issued for this OIDC token, which then counts as used). "
    "Retry with a new OIDC token."
)

_TIMEOUTS = (RedisTimeoutError, TimeoutError)

# Claims the jti and stores the token in one step: Redis runs a script atomically,
# so no other client can see the jti claimed without the token, or claim it twice.
# SET NX answers nil (false in Lua) when the jti is already claimed: nothing is stored.
_ISSUE = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'EXAT', ARGV[1]) then
    return 0
end
redis.call('SET', KEYS[2], ARGV[2], 'EXAT', ARGV[3])
return 1
"""

# Set-if-absent that also answers the value that won, in one round trip.
_PIN = """
local current = redis.call('GET', KEYS[1])
if current then
    return current
end
redis.call('SET', KEYS[1], ARGV[1])
return ARGV[1]
"""


class RedisStore:
    """A ``Store`` on Redis (6.2 or newer, for EXAT)."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        prefix: str = DEFAULT_PREFIX,
        location: str = "redis",
        allow_volatile: bool = False,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        """``timeout`` bounds connecting and each command's wait for its reply on the
        store's own connection (``client``'s pool has its own timeouts)."""
        if not prefix:
            raise ConfigurationError("redis store: the key prefix must not be empty")
        self._client = client
        try:
            endpoint = Endpoint.from_pool(client.connection_pool)
        except (ValueError, TypeError, RedisError) as exc:
            raise ConfigurationError(f"invalid redis store URL: {exc}") from exc
        self._pipeline = RedisPipeline(endpoint, timeout=timeout)
        self._prefix = prefix
        self._location = location
        self._allow_volatile = allow_volatile
        self._durable = False  # persistence checked and found sufficient (or waived)
        self._issue = client.register_script(_ISSUE)
        self._pin = client.register_script(_PIN)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        timeout: float = DEFAULT_TIMEOUT,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> RedisStore:
        """A store for ``redis://`` or ``rediss://`` ``url`` (without a ``prefix`` query).

        ``allow_volatile=1`` in the query accepts a server without persistence (see the
        module docstring); any other query option goes to redis-py.

        Short timeouts and no automatic retries: a dead server must turn into a quick
        503, not a request hanging through redis-py's default retry loop. A retry of
        the issue script after a lost reply would also report a false replay.

        The store's own commands share one connection per event loop (see the module
        docstring), whatever ``max_connections`` says: it caps redis-py's pool behind
        ``client``, which serves only what uses the client directly (none of the
        store's commands; scripts are only registered on it). That pool blocks (up to
        ``timeout``) when all its connections are busy.
        """
        url, allow_volatile = _take_allow_volatile(url)
        try:
            pool = aioredis.BlockingConnectionPool.from_url(
                url,
                max_connections=max_connections,
                timeout=timeout,
                socket_connect_timeout=timeout,
                socket_timeout=timeout,
                retry=Retry(NoBackoff(), 0),
                health_check_interval=30,
            )
        except (ValueError, TypeError) as exc:
            raise ConfigurationError(f"invalid redis store URL: {exc}") from exc
        client = aioredis.Redis.from_pool(pool)
        kwargs = client.connection_pool.connection_kwargs
        if kwargs.get("path"):
            location = f"redis unix:{kwargs['path']}/{kwargs.get('db', 0)}"
        else:
            location = (
                f"redis {kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"
            )
        return cls(
            client,
            prefix=prefix,
            location=location,
            allow_volatile=allow_volatile,
            timeout=timeout,
        )

    @property
    def prefix(self) -> str:
        return self._prefix

    @property
    def client(self) -> aioredis.Redis:
        """The Redis client, for other state kept beside the store (rate limits)."""
        return self._client

    async def run_script(
        self, what: str, script: object, keys: list[str], args: list[EncodableT]
    ) -> object:
        """EVALSHA of a script registered on ``client`` (rate limits), on the store's own
        command path: the pipelined connection, a command lost with a connection sent
        once more, ``StoreUnavailable`` for any failure. Retried after a lost reply
        only as a read is: for a counter that errs towards counting twice (denying
        sooner), never towards not counting."""
        return await self._script(what, script, keys, args, idempotent=True)

    def _unavailable(self, what: str, exc: BaseException) -> StoreUnavailable:
        # The message names the server (never credentials: they are not in `location`)
        # and the kind of failure.
        detail = f"Token store unavailable: {self._location}: {what} failed ({type(exc).__name__})"
        logger.warning(detail)
        return StoreUnavailable(detail)

    async def _execute(
        self,
        what: str,
        *args: EncodableT,
        idempotent: bool = True,
        replies: bool = False,
        reconcile: Callable[[], Awaitable[object]] | None = None,
    ) -> object:
        """Run one command; errors become ``StoreUnavailable`` (error replies too, unless
        ``replies``: then they are raised as redis-py's ``ResponseError``).

        A connection lost before the command was written is replaced, and the command
        sent once more (the connection may have been lost to a Redis restart); so is one
        closed after writing, when the command is ``idempotent``. A failure to connect
        is not retried (nothing was sent; a retry would only double the wait).
        A timeout is not retried (a server that did not answer in time would not answer
        the retry either). For a command that is not idempotent,
        when the server closed the connection (it then either ran the command before
        or never will), ``reconcile`` finds out what happened on a fresh connection;
        after a timeout (the command may still run) the outcome is unknown, and the
        caller is told so.
        """
        for attempt in (1, 2):
            try:
                return await self._send_and_read(args, idempotent)
            except _Failed as exc:
                if not exc.retry or attempt == 2:
                    raise self._unavailable(what, exc.cause) from exc.cause
                logger.info("redis %s: retrying on a fresh connection (%s)", what, exc.cause)
            except _OutcomeUnknown as exc:
                if reconcile is not None and not isinstance(exc.cause, _TIMEOUTS):
                    logger.info("redis %s: connection lost after sending (%s)", what, exc.cause)
                    return await reconcile()
                logger.warning(
                    "Token store: %s: %s failed after the command was sent (%s): outcome unknown",
                    self._location,
                    what,
                    f"{type(exc.cause).__name__}: {exc.cause}",
                )
                raise StoreUnavailable(OUTCOME_UNKNOWN) from exc.cause
            except ResponseError as exc:
                if replies or isinstance(exc, NoScriptError):
                    raise
                # An error reply: the server is there but refuses (READONLY, OOM, ...).
                raise self._unavailable(what, exc) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    async def _send_and_read(self, args: tuple[EncodableT, ...], idempotent: bool) -> object:
        try:
            return await self._pipeline.execute(args)
        except ResponseError:
            raise  # an error reply: the server is there, and the connection is fine
        except CommandFailed as exc:
            raise _failure(exc, idempotent) from exc.cause
        except RedisError as exc:
            # An error reply that redis-py counts as a connection error (NOAUTH,
            # LOADING): the server refused the command; the connection is fine.
            raise _Failed(exc, retry=False) from exc

    async def _script(
        self,
        what: str,
        script: object,
        keys: list[str],
        args: list[EncodableT],
        *,
        idempotent: bool,
        reconcile: Callable[[], Awaitable[object]] | None = None,
    ) -> object:
        """EVALSHA, loading the script first when the server does not have it (a
        NOSCRIPT reply means nothing ran, so running it again is safe)."""
        sha: str = getattr(script, "sha")  # noqa: B009
        source: str = getattr(script, "script")  # noqa: B009
        command = ("EVALSHA", sha, len(keys), *keys, *args)
        try:
            return await self._execute(what, *command, idempotent=idempotent, reconcile=reconcile)
        except NoScriptError:
            pass  # a new or flushed server: load the script and run it
        await self._execute(f"{what} (script load)", "SCRIPT", "LOAD", source)
        return await self._execute(what, *command, idempotent=idempotent, reconcile=reconcile)

    # -- durability -----------------------------------------------------------------

    async def check_persistence(self) -> None:
        """Raise ``StoreNotDurable`` when the server would forget used JWT ids on a
        restart (no append-only file), unless the URL allowed a volatile server.

        ``StoreUnavailable`` when the server cannot be asked.
        """
        if self._durable:
            return
        if self._allow_volatile:
            self._durable = True
            return
        reason = await self._volatility()
        if reason is None:
            self._durable = True
            return
        raise StoreNotDurable(
            f"store: {self._location} would forget used JWTs on restart ({reason}): "
            "enable the append-only file (`appendonly yes` in redis.conf, or "
            "`CONFIG SET appendonly yes` then `CONFIG REWRITE`), or add "
            f"`{ALLOW_VOLATILE}=1` to the store URL to accept that risk"
        )

    async def _volatility(self) -> str | None:
        """Why the server is not durable enough, or None when it is."""
        try:
            reply = await self._execute(
                "persistence check", "CONFIG", "GET", "appendonly", replies=True
            )
        except ResponseError:
            # CONFIG is disabled or renamed (managed services do that): INFO still
            # says whether the append-only file is on, though not what else is set.
            try:
                info = _info_fields(
                    await self._execute("persistence check", "INFO", "persistence", replies=True)
                )
            except ResponseError:
                # Unknown counts as volatile: the operator can still opt in.
                return "neither CONFIG nor INFO may be run, so persistence cannot be checked"
            if info.get("aof_enabled") == "1":
                return None
            return "INFO persistence says aof_enabled:0"
        if _config_fields(reply).get("appendonly", "").lower() == "yes":
            return None
        save_reply = await self._execute("persistence check", "CONFIG", "GET", "save")
        save = _config_fields(save_reply).get("save", "")
        if save.strip():
            return f"appendonly is no; RDB snapshots (save {save!r}) lose what came after one"
        return "appendonly is no and RDB snapshots are off"

    def _token_key(self, token_hash: bytes) -> str:
        return f"{self._prefix}token:{token_hash.hex()}"

    def _jti_key(self, jti_key: bytes) -> str:
        return f"{self._prefix}jti:{jti_key.hex()}"

    def _pin_key(self, key: str) -> str:
        return f"{self._prefix}pin:{key}"

    async def issue(
        self,
        jti_key: bytes,
        jti_expires_at: int,
        token_hash: bytes,
        record: bytes,
        token_expires_at: int,
    ) -> bool:
        check_expiry(jti_expires_at, token_expires_at)
        await self._require_durable()
        keys = [self._jti_key(jti_key), self._token_key(token_hash)]
        args: list[EncodableT] = [jti_expires_at, record, token_expires_at]

        async def reconcile() -> object:
            # The connection closed after the claim was sent: the script ran entirely
            # or not at all. Our token key (a fresh random token) tells which.
            if await self._execute("issue (check)", "GET", keys[1]) == record:
                return 1
            if await self._execute("issue (check)", "EXISTS", keys[0]):
                return 0  # claimed by another request: a replay
            return await self._script("issue", self._issue, keys, args, idempotent=False)

        result = await self._script(
            "issue",
            self._issue,
            keys,
            args,
            # Never blindly sent twice: a second run after a lost reply would find the
            # jti claimed by the first and report a false replay.
            idempotent=False,
            reconcile=reconcile,
        )
        return bool(result == 1)

    async def _require_durable(self) -> None:
        try:
            await self.check_persistence()
        except StoreNotDurable as exc:
            # Checked at start-up too; here when the server was down then, or was
            # replaced since by one without persistence.
            logger.error(exc.detail)
            raise StoreUnavailable(
                "Token store unavailable: it would not keep used JWTs across a restart"
            ) from exc

    async def lookup(self, token_hash: bytes) -> bytes | None:
        value = await self._execute("lookup", "GET", self._token_key(token_hash))
        return _as_bytes(value) if value is not None else None

    async def lookup_after(
        self, token_hash: bytes, script: object, keys: list[str], args: list[EncodableT]
    ) -> tuple[object, bytes | None]:
        """A read-only script's reply (introspection's failed-authentication check) and
        ``lookup``'s answer, the two commands sent together: one round trip where two
        would be. Both are reads, retried as reads are; a NOSCRIPT reply loads the script
        and sends both again."""
        sha: str = getattr(script, "sha")  # noqa: B009
        source: str = getattr(script, "script")  # noqa: B009
        commands = [
            ("EVALSHA", sha, len(keys), *keys, *args),
            ("GET", self._token_key(token_hash)),
        ]
        for attempt in (1, 2):
            checked, value = await self._execute_both("lookup", commands)
            if isinstance(checked, NoScriptError) and attempt == 1:
                await self._execute("lookup (script load)", "SCRIPT", "LOAD", source)
                continue
            for reply in (checked, value):
                if isinstance(reply, RedisError):
                    raise self._unavailable("lookup", reply) from reply
            return checked, (_as_bytes(value) if value is not None else None)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _execute_both(
        self, what: str, commands: list[tuple[EncodableT, ...]]
    ) -> tuple[object, object]:
        """Two read commands in one write, their two replies (an error reply as its
        redis-py exception); a lost connection replaced once, as ``_execute`` does."""
        for attempt in (1, 2):
            try:
                first, second = await self._send_and_read_all(commands)
                return first, second
            except _Failed as exc:
                if not exc.retry or attempt == 2:
                    raise self._unavailable(what, exc.cause) from exc.cause
                logger.info("redis %s: retrying on a fresh connection (%s)", what, exc.cause)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _send_and_read_all(self, commands: list[tuple[EncodableT, ...]]) -> list[object]:
        try:
            return await self._pipeline.execute_many(commands)
        except CommandFailed as exc:
            raise _failure(exc, True) from exc.cause

    async def revoke(self, token_hash: bytes) -> bool:
        deleted = await self._execute("revoke", "DEL", self._token_key(token_hash))
        return bool(deleted)

    async def get_namespace_pin(self, key: str) -> str | None:
        value = await self._execute("namespace pin lookup", "GET", self._pin_key(key))
        return _as_bytes(value).decode("utf-8") if value is not None else None

    async def pin_namespace(self, key: str, namespace_id: str) -> str:
        # Set-if-absent that answers the pinned value: running it twice is harmless.
        value = await self._script(
            "namespace pin", self._pin, [self._pin_key(key)], [namespace_id], idempotent=True
        )
        return _as_bytes(value).decode("utf-8")

    async def ping(self) -> None:
        """The server answers, accepts writes, and keeps them across a restart.

        Raises ``StoreUnavailable``, or ``StoreNotDurable`` for a server without
        persistence (see ``check_persistence``).
        """
        # A write, not PING: a replica left read-only by a failover answers PING.
        await self._execute("ping", "SET", f"{self._prefix}ping", b"1", "PX", 60_000)
        await self.check_persistence()

    @property
    def location(self) -> str:
        """Host, port and database: safe to show to operators (no credentials)."""
        return self._location

    async def aclose(self) -> None:
        await self._pipeline.aclose()
        try:
            await self._client.aclose()
        except (RedisError, OSError):  # closing a dead connection is not an error
            logger.debug("closing the redis store failed", exc_info=True)


def _as_bytes(value: object) -> bytes:
    # We never set decode_responses, so replies are bytes; a str would mean a client
    # configured by someone else, which still works.
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    raise StoreUnavailable(
        f"Token store unavailable: unexpected redis reply {type(value).__name__}"
    )


class _Failed(Exception):
    """The command failed without running, or may be run again; ``retry`` says whether
    one more attempt on a fresh connection may help."""

    def __init__(self, cause: BaseException, *, retry: bool) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.retry = retry


class _OutcomeUnknown(Exception):
    """The command was sent, then the connection failed or timed out."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


def _failure(exc: CommandFailed, idempotent: bool) -> _Failed | _OutcomeUnknown:
    """What a pipeline failure means for a command (``RedisStore._execute``)."""
    if isinstance(exc, NotConnected):
        return _Failed(exc.cause, retry=False)  # nothing sent; a retry would wait again
    if isinstance(exc, NotSent):
        return _Failed(exc.cause, retry=exc.retry)
    if isinstance(exc, ConnectionLost):
        # The server ran the command entirely or not at all.
        return _Failed(exc.cause, retry=True) if idempotent else _OutcomeUnknown(exc.cause)
    if isinstance(exc, ReplyTimeout):
        # It may still run; a server that did not answer in time would not answer a
        # retry either.
        return _Failed(exc.cause, retry=False) if idempotent else _OutcomeUnknown(exc.cause)
    return _Failed(exc.cause, retry=False)  # pragma: no cover (no other kind)


def _text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _config_fields(reply: object) -> dict[str, str]:
    """CONFIG GET's reply (a flat list, or a map under RESP3) as a dict of strings."""
    if isinstance(reply, Mapping):
        return {_text(k): _text(v) for k, v in reply.items()}
    if isinstance(reply, list | tuple):
        return {_text(k): _text(v) for k, v in zip(reply[::2], reply[1::2], strict=False)}
    return {}


def _info_fields(reply: object) -> dict[str, str]:
    """``INFO`` text (``field:value`` lines) as a dict of strings."""
    fields: dict[str, str] = {}
    for line in _text(reply).splitlines():
        name, sep, value = line.partition(":")
        if sep and not line.startswith("#"):
            fields[name.strip()] = value.strip()
    return fields


def _take_allow_volatile(url: str) -> tuple[str, bool]:
    """The URL without ``allow_volatile``, and whether it allowed a volatile server."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    values = [value for key, value in query if key == ALLOW_VOLATILE]
    if not values:
        return url, False
    if len(values) > 1 or values[0].lower() not in ("1", "true", "yes", "0", "false", "no"):
        raise ConfigurationError(
            f"store: `{ALLOW_VOLATILE}` in the redis URL: expected it once, as 1 or 0"
        )
    rest = urlencode([(key, value) for key, value in query if key != ALLOW_VOLATILE])
    return urlunsplit(parts._replace(query=rest)), values[0].lower() in ("1", "true", "yes")
