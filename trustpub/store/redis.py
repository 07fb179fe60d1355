"""Redis store: for any number of service processes on any number of hosts.

Keys, under a configurable prefix (default ``trustpub:``):

    {prefix}token:{sha256 hex}   the token record (JSON), expiring with the token (EXAT)
    {prefix}jti:{sha256 hex}     a claimed JWT id, expiring at exp + leeway + margin
    {prefix}pin:{key}            a GitLab namespace pin, never expiring

Expiry is Redis's own (EXAT), so nothing needs purging.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from trustpub.errors import ConfigurationError, StoreUnavailable
from trustpub.store.base import check_expiry

logger = logging.getLogger(__name__)

DEFAULT_MAX_CONNECTIONS = 64
DEFAULT_PREFIX = "trustpub:"
DEFAULT_TIMEOUT = 2.0

T = TypeVar("T")

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
    ) -> None:
        if not prefix:
            raise ConfigurationError("redis store: the key prefix must not be empty")
        self._client = client
        self._prefix = prefix
        self._location = location
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

        Short socket timeouts and no automatic retries: a dead server must turn into a
        quick 503, not a request hanging through redis-py's default retry loop. A retry
        of the issue script after a lost reply would also report a false replay.

        The pool blocks (up to ``timeout``) when all ``max_connections`` are busy, so a
        burst of requests queues for a connection instead of failing at once.
        """
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
        location = (
            f"redis {kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"
        )
        return cls(client, prefix=prefix, location=location)

    @property
    def prefix(self) -> str:
        return self._prefix

    @property
    def client(self) -> aioredis.Redis:
        """The Redis client, for other state kept beside the store (rate limits)."""
        return self._client

    async def _call(self, what: str, operation: Callable[[], Awaitable[T]]) -> T:
        try:
            return await operation()
        except (RedisError, OSError) as exc:
            # The message names the server (never credentials: they are not in
            # `location`) and the kind of failure; redis-py reconnects on the next call.
            detail = (
                f"Token store unavailable: {self._location}: {what} failed ({type(exc).__name__})"
            )
            logger.warning(detail)
            raise StoreUnavailable(detail) from exc

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
        result = await self._call(
            "issue",
            lambda: self._issue(
                keys=[self._jti_key(jti_key), self._token_key(token_hash)],
                args=[jti_expires_at, record, token_expires_at],
            ),
        )
        return bool(result == 1)

    async def lookup(self, token_hash: bytes) -> bytes | None:
        value = await self._call("lookup", lambda: self._client.get(self._token_key(token_hash)))
        return _as_bytes(value) if value is not None else None

    async def revoke(self, token_hash: bytes) -> bool:
        deleted = await self._call(
            "revoke", lambda: self._client.delete(self._token_key(token_hash))
        )
        return bool(deleted)

    async def get_namespace_pin(self, key: str) -> str | None:
        value = await self._call(
            "namespace pin lookup", lambda: self._client.get(self._pin_key(key))
        )
        return _as_bytes(value).decode("utf-8") if value is not None else None

    async def pin_namespace(self, key: str, namespace_id: str) -> str:
        value = await self._call(
            "namespace pin",
            lambda: self._pin(keys=[self._pin_key(key)], args=[namespace_id]),
        )
        return _as_bytes(value).decode("utf-8")

    async def ping(self) -> None:
        await self._call("ping", self._client.ping)

    async def aclose(self) -> None:
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
