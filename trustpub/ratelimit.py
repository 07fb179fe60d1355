"""Rate limits: how often one client address or one repository may ask.

Three limits, each ``count`` requests per ``period`` for one key:

- ``exchange_per_client``: exchanges from one client address;
- ``exchange_per_repository``: exchanges for one repository (GitHub ``repository``, GitLab
  ``project_path``, with its issuer), counted once the JWT is verified, so nobody can
  spend another repository's budget without its tokens;
- ``failed_auth_per_client``: failed token or credential checks from one client address
  at the registry and at introspection. Once over it, the address is refused BEFORE its
  credentials are checked, so guessing cannot go on at the pace of the refusals.

The algorithm is GCRA (a token bucket kept as one timestamp per key, the "theoretical
arrival time"): ``count`` requests may come at once, then one every ``period / count``
seconds. It is written here rather than taken from a library because it is twelve lines
and must run in two places that share its arithmetic exactly: in process (the SQLite
deployment has one process) and as one atomic Lua script on Redis, with Redis's clock,
so every process behind a load balancer sees the same budget.

On the Redis store the check is one EVALSHA packed once per key and limit
(``_Commands``) and awaited once on the store's connection (``RedisBackend``): 9.4 us
of CPU per check at 32 callers, where the generic script call took 32.1
(``bench/redis_commands.py``); every exchange runs two.

Refusals are ``RateLimited`` (429 with ``Retry-After``). A Redis failure is a
``StoreUnavailable`` like any other store failure: a limit that cannot be checked denies.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, NamedTuple, Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError
from redis.typing import EncodableT

from trustpub.durations import parse_duration
from trustpub.errors import StoreUnavailable, TrustpubError
from trustpub.store.redis_pipeline import bulk
from trustpub.text import fold

if TYPE_CHECKING:
    from trustpub.store.redis import RedisStore

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Limit:
    """At most ``count`` requests per ``period`` seconds for one key of ``name``."""

    name: str
    count: int
    period: int

    def __post_init__(self) -> None:
        if self.count <= 0 or self.period <= 0:
            raise ValueError("a rate limit needs a positive count and period")

    @property
    def emission(self) -> float:
        """Seconds one request adds to the key's theoretical arrival time."""
        return self.period / self.count

    @property
    def tolerance(self) -> float:
        """How far ahead of now the arrival time may run: a burst of ``count``."""
        return self.period - self.emission

    def describe(self) -> str:
        return f"{self.count}/{self.period}s"


def parse_limit(name: str, value: object) -> Limit | None:
    """``"600/1m"`` (count per duration) or ``0``/``"off"`` (no limit)."""
    if value in (0, "0", "off", False):
        return None
    if not isinstance(value, str) or value.count("/") != 1:
        raise ValueError(f'expected "COUNT/DURATION" like "600/1m", or "off", got {value!r}')
    count_text, period_text = value.split("/")
    if not (count_text.isascii() and count_text.isdigit()) or int(count_text) <= 0:
        raise ValueError(f"expected a positive whole count before the `/`, got {count_text!r}")
    return Limit(name, int(count_text), parse_duration(period_text))


@dataclass(frozen=True, slots=True)
class RateLimits:
    """The configured limits; None switches one off."""

    exchange_per_client: Limit | None = Limit("exchange-client", 1200, 60)
    exchange_per_repository: Limit | None = Limit("exchange-repository", 300, 60)
    failed_auth_per_client: Limit | None = Limit("failed-auth-client", 120, 60)


class RateLimited(TrustpubError):
    """Too many requests for one key: 429, retry after ``retry_after`` seconds."""

    status_code = 429

    def __init__(self, detail: str, retry_after: float) -> None:
        super().__init__(detail)
        self.retry_after = max(1, math.ceil(retry_after))

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class Backend(Protocol):
    async def excess(self, key: str, limit: Limit, *, consume: bool) -> float:
        """Seconds until the key's next request is allowed; 0.0 when it is allowed now.

        ``consume`` records a request when it is allowed (a refused one costs nothing,
        so a client that waits its ``Retry-After`` gets through).
        """
        ...


class MemoryBackend:
    """Limits held in this process: for the single-process SQLite deployment and tests.

    ``max_keys`` bounds the memory a flood of distinct addresses can take: past it,
    keys whose budget is whole again are dropped, then the ones closest to it.
    """

    def __init__(
        self, *, clock: Callable[[], float] = time.monotonic, max_keys: int = 100_000
    ) -> None:
        self._clock = clock
        self._max_keys = max_keys
        self._arrivals: dict[str, float] = {}

    async def excess(self, key: str, limit: Limit, *, consume: bool) -> float:
        now = self._clock()
        arrival = max(self._arrivals.get(key, now), now)
        over = arrival - now - limit.tolerance
        if over > 0:
            return over
        if consume:
            self._arrivals[key] = arrival + limit.emission
            if len(self._arrivals) > self._max_keys:
                self._evict(now)
        return 0.0

    def _evict(self, now: float) -> None:
        live = {k: t for k, t in self._arrivals.items() if t > now}
        if len(live) > self._max_keys:
            keep = sorted(live.items(), key=lambda item: item[1])[-self._max_keys // 2 :]
            live = dict(keep)
        self._arrivals = live


# One atomic step of GCRA with the server's clock. Numbers travel as strings: Redis would
# truncate a Lua float reply to an integer.
_GCRA: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local emission = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local stored = tonumber(redis.call('GET', KEYS[1]) or '0')
local arrival = math.max(stored, now)
local over = arrival - now - tolerance
if over > 0 then
  return tostring(over)
end
if ARGV[3] == '1' then
  local nxt = arrival + emission
  redis.call('SET', KEYS[1], string.format('%.6f', nxt), 'PX', math.ceil((nxt - now) * 1000) + 1)
end
return '0'
"""


class ScriptRunner(Protocol):
    """Runs a script registered on the client: ``RedisStore.run_script``."""

    async def __call__(
        self, what: str, script: object, keys: list[str], args: list[EncodableT]
    ) -> object: ...


class ScriptCall(NamedTuple):
    """A rate limit script with its keys and arguments, for the store to run beside
    another command in one round trip (``RedisStore.lookup_after``). Shared by every
    call for the same key: not to be changed."""

    script: object
    keys: list[str]
    args: list[EncodableT]


class PackedScript:
    """The GCRA script as ``RedisStore.lookup_after`` takes it (``sha`` and ``script``,
    as redis-py's ``Script`` has them), with ``packed``: its whole EVALSHA command for
    one key, encoded, which the store sends as it is."""

    __slots__ = ("packed", "script", "sha")

    def __init__(self, sha: str, script: str, packed: bytes) -> None:
        self.sha = sha
        self.script = script
        self.packed = packed


# Commands kept per limit (a key's hash and its packed EVALSHA): past this many keys, the
# kept ones are dropped and built again as they come. Only for keys up to _KEPT_LENGTH
# characters (addresses, repository names): the memory kept stays bounded.
_KEPT = 4096
_KEPT_LENGTH = 256


class _Commands:
    """The script's EVALSHA for one limit and one ``consume``: everything but the key's
    hash encoded once, and the whole command kept for the last ``_KEPT`` keys (a
    SHA-256 and an encode per call cost more than the rest of the call)."""

    __slots__ = ("args", "calls", "commands", "head", "limit", "name", "sha", "tail")

    def __init__(self, prefix: str, sha: str, limit: Limit, consume: bool) -> None:
        self.limit = limit
        self.sha = sha
        self.name = f"{prefix}ratelimit:{limit.name}:"
        key_head = self.name.encode("utf-8")
        self.args: list[EncodableT] = [
            repr(limit.emission),
            repr(limit.tolerance),
            "1" if consume else "0",
        ]
        # EVALSHA sha 1 key emission tolerance consume: 7 parts.
        self.head = b"".join(
            (b"*7\r\n", bulk(b"EVALSHA"), bulk(sha.encode()), bulk(b"1"))
        ) + b"$%d\r\n%b" % (len(key_head) + 32, key_head)
        self.tail = b"\r\n" + b"".join(bulk(str(arg).encode()) for arg in self.args)
        self.commands: dict[str, bytes] = {}
        self.calls: dict[str, ScriptCall] = {}

    def command(self, key: str) -> bytes:
        """The EVALSHA for ``key``, packed."""
        command = self.commands.get(key)
        if command is None:
            command = self.head + _digest(key).encode() + self.tail
            if len(key) <= _KEPT_LENGTH:
                if len(self.commands) >= _KEPT:
                    self.commands.clear()
                self.commands[key] = command
        return command

    def call(self, key: str, source: str) -> ScriptCall:
        """The ``ScriptCall`` for ``key``."""
        call = self.calls.get(key)
        if call is None:
            digest = _digest(key)
            packed = self.head + digest.encode() + self.tail
            script = PackedScript(self.sha, source, packed)
            call = ScriptCall(script, [self.name + digest], self.args)
            if len(key) <= _KEPT_LENGTH:
                if len(self.calls) >= _KEPT:
                    self.calls.clear()
                self.calls[key] = call
        return call


def _digest(key: str) -> str:
    # Hashed: a key is an address or a repository name, of any length and alphabet.
    return hashlib.sha256(key.encode("utf-8", "backslashreplace")).hexdigest()[:32]


class RedisBackend:
    """Limits shared by every process using one Redis (the store's, under its prefix).

    With ``store`` (as ``limiter_for`` gives it), the script runs on the store's command
    path: its EVALSHA packed once per key (``_Commands``), sent with ``RedisStore.send``
    and its reply awaited once; only a failure goes through ``RedisStore.recover``
    (retry, script load, ``StoreUnavailable``). With ``runner`` (the store's
    ``run_script``), the same path through the generic call; with neither, redis-py's.
    Failures are the store's ``StoreUnavailable`` either way.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        prefix: str,
        runner: ScriptRunner | None = None,
        *,
        store: RedisStore | None = None,
    ) -> None:
        self._prefix = prefix
        self._script = client.register_script(_GCRA)
        self._runner = runner
        self._store = store
        self._consuming: dict[str, _Commands] = {}
        self._peeking: dict[str, _Commands] = {}

    def _commands(self, limit: Limit, consume: bool) -> _Commands:
        kept = self._consuming if consume else self._peeking
        commands = kept.get(limit.name)
        if commands is None or commands.limit is not limit:
            commands = _Commands(self._prefix, self._script.sha, limit, consume)
            kept[limit.name] = commands
        return commands

    def call(self, key: str, limit: Limit, *, consume: bool) -> ScriptCall:
        """The script run for ``excess``, to run with another command instead."""
        return self._commands(limit, consume).call(key, _GCRA)

    @staticmethod
    def excess_of(reply: object) -> float:
        """``excess``'s answer from the script's reply."""
        if reply == b"0":
            return 0.0
        text = reply.decode() if isinstance(reply, bytes) else str(reply)
        return max(0.0, float(text))

    async def excess(self, key: str, limit: Limit, *, consume: bool) -> float:
        kept = self._consuming if consume else self._peeking
        commands = kept.get(limit.name)
        if commands is None or commands.limit is not limit:
            commands = self._commands(limit, consume)
        store = self._store
        if store is not None:
            data = commands.commands.get(key) or commands.command(key)
            try:
                reply = await store.send(data)
            except Exception as exc:
                reply = await self._recover(store, exc, data)
            if reply == b"0":
                return 0.0
            return self.excess_of(reply)
        call = commands.call(key, _GCRA)
        try:
            if self._runner is not None:
                reply = await self._runner("rate limit check", self._script, call.keys, call.args)
            else:
                reply = await self._script(keys=call.keys, args=call.args)
        except (RedisError, OSError) as exc:
            raise _unavailable(exc) from exc
        return self.excess_of(reply)

    @staticmethod
    async def _recover(store: RedisStore, failure: Exception, data: bytes) -> object:
        try:
            return await store.recover("rate limit check", failure, data, source=_GCRA)
        except (RedisError, OSError) as exc:
            raise _unavailable(exc) from exc


def _unavailable(exc: BaseException) -> StoreUnavailable:
    # Logged here, where it happened, as the store logs its own failures.
    detail = f"Token store unavailable: rate limit check failed ({type(exc).__name__})"
    logger.warning(detail)
    return StoreUnavailable(detail)


class RateLimiter:
    """The service's limits over one backend."""

    def __init__(self, limits: RateLimits, backend: Backend) -> None:
        self.limits = limits
        self._backend = backend

    async def exchange_from(self, client: str) -> None:
        """Count one exchange from ``client``; RateLimited past the limit."""
        limit = self.limits.exchange_per_client
        if limit is None:
            return
        over = await self._backend.excess(client, limit, consume=True)
        if over > 0:
            raise RateLimited(_message("token exchanges from this address", limit), over)

    async def exchange_for(self, issuer: str, repository: str) -> None:
        """Count one exchange for ``repository`` (already verified) of ``issuer``."""
        limit = self.limits.exchange_per_repository
        if limit is None:
            return
        key = f"{issuer}|{fold(repository)}"
        over = await self._backend.excess(key, limit, consume=True)
        if over > 0:
            raise RateLimited(_message("token exchanges for this repository", limit), over)

    async def check_auth_allowed(self, client: str) -> None:
        """Refuse ``client`` while its failed authentications are over the limit."""
        limit = self.limits.failed_auth_per_client
        if limit is None:
            return
        over = await self._backend.excess(client, limit, consume=False)
        if over > 0:
            raise RateLimited(_message("failed authentications from this address", limit), over)

    def auth_gate(self, client: str) -> AuthGate:
        """``check_auth_allowed`` for ``client``, to run alone or beside a token lookup."""
        return AuthGate(self, client)

    async def auth_failed(self, client: str) -> None:
        """Count one failed authentication from ``client`` (never raises RateLimited:
        the failure itself is answered as it is; the next attempt is refused)."""
        limit = self.limits.failed_auth_per_client
        if limit is not None:
            await self._backend.excess(client, limit, consume=True)


class AuthGate:
    """The failed-authentication check of one client (``RateLimiter.check_auth_allowed``)
    in two forms: ``check`` runs it on its own; on Redis, ``call`` is its script, which
    the store runs beside the token lookup in one round trip, and ``settle`` reads its
    reply (RateLimited when the client is over the limit). ``call`` is None when the
    limit is off or kept in this process: then ``check`` is the only form."""

    def __init__(self, limiter: RateLimiter, client: str) -> None:
        self._limiter = limiter
        self._client = client
        limit = limiter.limits.failed_auth_per_client
        backend = limiter._backend
        self.call: ScriptCall | None = None
        if limit is not None and isinstance(backend, RedisBackend):
            self.call = backend.call(client, limit, consume=False)

    async def check(self) -> None:
        await self._limiter.check_auth_allowed(self._client)

    def settle(self, reply: object) -> None:
        limit = self._limiter.limits.failed_auth_per_client
        if limit is None:
            return
        over = RedisBackend.excess_of(reply)
        if over > 0:
            raise RateLimited(_message("failed authentications from this address", limit), over)


def limiter_for(store: object, limits: RateLimits) -> RateLimiter:
    """Shared on the store's Redis (every process counts together), in process otherwise
    (the embedded SQLite store serves one process)."""
    from trustpub.store.redis import RedisStore

    if isinstance(store, RedisStore):
        return RateLimiter(limits, RedisBackend(store.client, store.prefix, store=store))
    return RateLimiter(limits, MemoryBackend())


def client_address(scope_client: tuple[str, int] | None) -> str:
    """The client's address, the key of the per-client limits: the access log middleware
    has already put in ``scope["client"]`` what a trusted proxy forwarded
    (trustpub.web.forwarded), else the peer's address."""
    return scope_client[0] if scope_client else "unknown"


def _message(what: str, limit: Limit) -> str:
    return (
        f"Too many {what} (limit {limit.count} per {limit.period} s); "
        "retry after the time in `Retry-After`"
    )
