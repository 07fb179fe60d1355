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

The hot commands (``lookup``, ``lookup_after``, ``issue``, and the rate limiter's
script through ``send``) are packed by hand from bytes encoded once, and await the
pipeline's future directly; any exception from it goes to ``recover`` / ``_execute``,
which apply the rules below. That took the rate limit check from 32.1 to 9.4 us of
CPU and ``issue`` from 28.3 to 20.4 (32 callers, ``bench/redis_commands.py``).

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
from binascii import hexlify
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
    bulk,
    pack,
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
        # The constant parts of the hot commands, encoded once (see ``issue``).
        try:
            encoded = prefix.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ConfigurationError("redis store: the key prefix must be UTF-8 text") from exc
        self._token_prefix = encoded + b"token:"
        self._jti_prefix = encoded + b"jti:"
        self._get_head = b"*2\r\n" + bulk(b"GET")
        self._issue_head = b"".join(
            (b"*8\r\n", bulk(b"EVALSHA"), bulk(self._issue.sha.encode()), bulk(b"2"))
        )

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
        sha: str = getattr(script, "sha")  # noqa: B009
        source: str = getattr(script, "script")  # noqa: B009
        data = pack("EVALSHA", sha, len(keys), *keys, *args)
        try:
            return await self._pipeline.submit(data)
        except Exception as exc:
            return await self.recover(what, exc, data, source=source)

    def send(self, data: bytes) -> Awaitable[object]:
        """The hot path of a command: ``data`` (one command, packed: ``pack``) sent on
        the store's connection; what to await for its reply (an error reply raised).

        Nothing else happens here, so that a caller awaits the command's own future, not
        a stack of coroutines: when awaiting it raises any ``Exception``, the caller
        awaits ``recover`` with the exception and the same ``data``, which does
        everything else (retry, script load, ``StoreUnavailable``)."""
        return self._pipeline.submit(data)

    async def recover(
        self,
        what: str,
        failure: Exception,
        data: bytes,
        *,
        source: str | None = None,
        idempotent: bool = True,
        reconcile: Callable[[], Awaitable[object]] | None = None,
    ) -> object:
        """After ``send(data)`` raised ``failure``: the reply, or ``StoreUnavailable``,
        as the command path's rules say (``_execute``). ``source`` is the script's when
        ``data`` is an EVALSHA: a NOSCRIPT reply (nothing ran) loads it and sends
        ``data`` again."""
        try:
            return await self._execute(
                what, data, idempotent=idempotent, reconcile=reconcile, failure=failure
            )
        except NoScriptError as exc:
            if source is None:
                raise self._unavailable(what, exc) from exc
        # A new or flushed server: load the script and run it.
        await self._execute(f"{what} (script load)", pack("SCRIPT", "LOAD", source))
        try:
            return await self._execute(what, data, idempotent=idempotent, reconcile=reconcile)
        except NoScriptError as exc:  # flushed again meanwhile: nothing ran
            raise self._unavailable(what, exc) from exc

    def _unavailable(self, what: str, exc: BaseException) -> StoreUnavailable:
        # The message names the server (never credentials: they are not in `location`)
        # and the kind of failure.
        detail = f"Token store unavailable: {self._location}: {what} failed ({type(exc).__name__})"
        logger.warning(detail)
        return StoreUnavailable(detail)

    async def _execute(
        self,
        what: str,
        data: bytes,
        *,
        idempotent: bool = True,
        replies: bool = False,
        reconcile: Callable[[], Awaitable[object]] | None = None,
        failure: Exception | None = None,
    ) -> object:
        """Run one packed command; errors become ``StoreUnavailable`` (error replies too,
        unless ``replies``: then they are raised as redis-py's ``ResponseError``;
        ``NoScriptError`` always is). ``failure``: how the first attempt already
        failed (``recover``), so it is not sent again before the rules below say so.

        A connection lost before the command was written is replaced, and the command
        sent once more (the connection may have been lost to a Redis restart); so is one
        closed after writing, when the command is ``idempotent``. A failure to connect
        is not retried (nothing was sent; a retry would only double the wait).
        A timeout is not retried (a server that did not answer in time would not answer
        the retry either). For a command that is not idempotent,
        when the server closed the connection (it then either ran the command before
        or never will), ``reconcile`` finds out what happened on a fresh connection;
        after a timeout (the command may still run) the outcome is unknown, and the
        caller is told so. An error reply that redis-py counts as a connection error
        (NOAUTH, LOADING) is the server refusing the command: unavailable, no retry.
        """
        for attempt in (1, 2):
            if failure is None:
                try:
                    return await self._pipeline.submit(data)
                except Exception as exc:
                    failure = exc
            error, failure = failure, None
            if isinstance(error, ResponseError):
                if replies or isinstance(error, NoScriptError):
                    raise error
                # An error reply: the server is there but refuses (READONLY, OOM, ...).
                raise self._unavailable(what, error) from error
            problem = _problem(error, idempotent)
            if isinstance(problem, _OutcomeUnknown):
                if reconcile is not None and not isinstance(problem.cause, _TIMEOUTS):
                    logger.info("redis %s: connection lost after sending (%s)", what, problem.cause)
                    return await reconcile()
                logger.warning(
                    "Token store: %s: %s failed after the command was sent (%s): outcome unknown",
                    self._location,
                    what,
                    f"{type(problem.cause).__name__}: {problem.cause}",
                )
                raise StoreUnavailable(OUTCOME_UNKNOWN) from problem.cause
            if not problem.retry or attempt == 2:
                raise self._unavailable(what, problem.cause) from problem.cause
            logger.info("redis %s: retrying on a fresh connection (%s)", what, problem.cause)
        raise AssertionError("unreachable")  # pragma: no cover

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
                "persistence check", pack("CONFIG", "GET", "appendonly"), replies=True
            )
        except ResponseError:
            # CONFIG is disabled or renamed (managed services do that): INFO still
            # says whether the append-only file is on, though not what else is set.
            try:
                info = _info_fields(
                    await self._execute(
                        "persistence check", pack("INFO", "persistence"), replies=True
                    )
                )
            except ResponseError:
                # Unknown counts as volatile: the operator can still opt in.
                return "neither CONFIG nor INFO may be run, so persistence cannot be checked"
            if info.get("aof_enabled") == "1":
                return None
            return "INFO persistence says aof_enabled:0"
        if _config_fields(reply).get("appendonly", "").lower() == "yes":
            return None
        save_reply = await self._execute("persistence check", pack("CONFIG", "GET", "save"))
        save = _config_fields(save_reply).get("save", "")
        if save.strip():
            return f"appendonly is no; RDB snapshots (save {save!r}) lose what came after one"
        return "appendonly is no and RDB snapshots are off"

    def _token_key(self, token_hash: bytes) -> bytes:
        return self._token_prefix + hexlify(token_hash)

    def _jti_key(self, jti_key: bytes) -> bytes:
        return self._jti_prefix + hexlify(jti_key)

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
        if not self._durable:
            await self._require_durable()
        data = b"".join(
            (
                self._issue_head,
                bulk(self._jti_prefix + hexlify(jti_key)),
                bulk(self._token_prefix + hexlify(token_hash)),
                bulk(b"%d" % jti_expires_at),
                bulk(record),
                bulk(b"%d" % token_expires_at),
            )
        )
        result: object
        try:
            result = await self._pipeline.submit(data)
        except Exception as exc:
            result = await self.recover(
                "issue",
                exc,
                data,
                source=_ISSUE,
                # Never blindly sent twice: a second run after a lost reply would find
                # the jti claimed by the first and report a false replay.
                idempotent=False,
                reconcile=lambda: self._reconcile_issue(jti_key, token_hash, record, data),
            )
        return result == 1

    async def _reconcile_issue(
        self, jti_key: bytes, token_hash: bytes, record: bytes, data: bytes
    ) -> object:
        """The connection closed after the claim was sent: the script ran entirely or
        not at all. Our token key (a fresh random token) tells which."""
        if await self._execute("issue (check)", pack("GET", self._token_key(token_hash))) == record:
            return 1
        if await self._execute("issue (check)", pack(b"EXISTS", self._jti_key(jti_key))):
            return 0  # claimed by another request: a replay
        try:
            return await self._execute("issue", data, idempotent=False)
        except NoScriptError as exc:
            return await self.recover("issue", exc, data, source=_ISSUE, idempotent=False)

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
        data = self._get_head + bulk(self._token_prefix + hexlify(token_hash))
        try:
            value = await self._pipeline.submit(data)
        except Exception as exc:
            value = await self.recover("lookup", exc, data)
        if value is None or type(value) is bytes:
            return value
        return _as_bytes(value)

    async def lookup_after(
        self, token_hash: bytes, script: object, keys: list[str], args: list[EncodableT]
    ) -> tuple[object, bytes | None]:
        """A read-only script's reply (introspection's failed-authentication check) and
        ``lookup``'s answer, the two commands sent together: one round trip where two
        would be. Both are reads, retried as reads are; a NOSCRIPT reply loads the script
        and sends both again. ``script`` may carry the whole EVALSHA command already
        packed, as ``packed`` (``trustpub.ratelimit``'s gate does): it is sent as it is.
        """
        evalsha: bytes | None = getattr(script, "packed", None)
        if evalsha is None:
            evalsha = pack("EVALSHA", getattr(script, "sha"), len(keys), *keys, *args)  # noqa: B009
        data = evalsha + self._get_head + bulk(self._token_prefix + hexlify(token_hash))
        try:
            checked, value = await self._pipeline.submit(data, 2)
        except Exception as exc:
            checked, value = await self._both("lookup", data, exc)
        if isinstance(checked, RedisError) or isinstance(value, RedisError):
            checked, value = await self._error_replies(data, script, checked, value)
        if value is None or type(value) is bytes:
            return checked, value
        return checked, _as_bytes(value)

    async def _error_replies(
        self, data: bytes, script: object, checked: object, value: object
    ) -> tuple[object, object]:
        """``lookup_after`` when a reply was an error: NOSCRIPT loads the script and
        sends both again, once; any other error reply is ``StoreUnavailable``."""
        if isinstance(checked, NoScriptError):
            source: str = getattr(script, "script")  # noqa: B009
            await self._execute("lookup (script load)", pack("SCRIPT", "LOAD", source))
            checked, value = await self._both("lookup", data)
        for reply in (checked, value):
            if isinstance(reply, RedisError):
                raise self._unavailable("lookup", reply) from reply
        return checked, value

    async def _both(
        self, what: str, data: bytes, failure: Exception | None = None
    ) -> tuple[object, object]:
        """Two read commands in one write (``data``), their two replies (an error reply
        as its redis-py exception); a lost connection replaced once, as ``_execute``
        does. ``failure``: how the first attempt already failed."""
        for attempt in (1, 2):
            if failure is None:
                try:
                    first, second = await self._pipeline.submit(data, 2)
                    return first, second
                except Exception as exc:
                    failure = exc
            problem = _problem(failure, True)
            failure = None
            if isinstance(problem, _OutcomeUnknown) or not problem.retry or attempt == 2:
                raise self._unavailable(what, problem.cause) from problem.cause
            logger.info("redis %s: retrying on a fresh connection (%s)", what, problem.cause)
        raise AssertionError("unreachable")  # pragma: no cover

    async def revoke(self, token_hash: bytes) -> bool:
        deleted = await self._execute("revoke", pack(b"DEL", self._token_key(token_hash)))
        return bool(deleted)

    async def get_namespace_pin(self, key: str) -> str | None:
        value = await self._execute("namespace pin lookup", pack("GET", self._pin_key(key)))
        return _as_bytes(value).decode("utf-8") if value is not None else None

    async def pin_namespace(self, key: str, namespace_id: str) -> str:
        # Set-if-absent that answers the pinned value: running it twice is harmless.
        data = pack("EVALSHA", self._pin.sha, 1, self._pin_key(key), namespace_id)
        try:
            value = await self._pipeline.submit(data)
        except Exception as exc:
            value = await self.recover("namespace pin", exc, data, source=_PIN)
        return _as_bytes(value).decode("utf-8")

    async def ping(self) -> None:
        """The server answers, accepts writes, and keeps them across a restart.

        Raises ``StoreUnavailable``, or ``StoreNotDurable`` for a server without
        persistence (see ``check_persistence``).
        """
        # A write, not PING: a replica left read-only by a failover answers PING.
        await self._execute("ping", pack("SET", f"{self._prefix}ping", b"1", "PX", 60_000))
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


def _problem(exc: Exception, idempotent: bool) -> _Failed | _OutcomeUnknown:
    """What a failed ``submit`` means for a command: a pipeline failure as ``_failure``
    says; an error reply that redis-py counts as a connection error (NOAUTH, LOADING):
    the server refused the command, the connection is fine, no retry. Anything else
    (not a Redis failure: a bug) is raised as it is."""
    if isinstance(exc, CommandFailed):
        return _failure(exc, idempotent)
    if isinstance(exc, RedisError):
        return _Failed(exc, retry=False)
    raise exc


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
