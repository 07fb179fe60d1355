"""Rate limits: GCRA in process and on Redis (the real server), and their settings."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from tests.isolation import new_redis_prefix
from trustpub.ratelimit import (
    Limit,
    MemoryBackend,
    RateLimited,
    RateLimiter,
    RateLimits,
    RedisBackend,
    limiter_for,
    parse_limit,
)
from trustpub.store.redis import RedisStore

pytestmark = pytest.mark.anyio

REDIS_URL = "redis://127.0.0.1:6379/0"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["redis-py", "store-runner", "store"])
async def redis_backend(request: pytest.FixtureRequest) -> AsyncIterator[RedisBackend]:
    """The script through redis-py's own path, through the store's generic script call,
    and through the store's own command path (``limiter_for``)."""
    prefix = new_redis_prefix()
    store = RedisStore.from_url(REDIS_URL, prefix=prefix)
    client = store.client
    runner = store.run_script if request.param == "store-runner" else None
    try:
        if request.param == "store":
            yield RedisBackend(client, prefix, store=store)
        else:
            yield RedisBackend(client, prefix, runner)
    finally:
        keys = [k async for k in client.scan_iter(match=f"{prefix}*")]
        if keys:
            await client.delete(*keys)
        await store.aclose()  # its own connection, then the client


async def test_memory_backend_allows_a_burst_then_one_per_interval() -> None:
    clock = Clock()
    backend = MemoryBackend(clock=clock)
    limit = Limit("t", 10, 60)
    for _ in range(10):
        assert await backend.excess("a", limit, consume=True) == 0.0
    over = await backend.excess("a", limit, consume=True)
    assert over == pytest.approx(6.0)
    # Another key has its own budget.
    assert await backend.excess("b", limit, consume=True) == 0.0
    clock.now += 6.0
    assert await backend.excess("a", limit, consume=True) == 0.0
    assert await backend.excess("a", limit, consume=True) > 0


async def test_a_peek_does_not_consume() -> None:
    backend = MemoryBackend(clock=Clock())
    limit = Limit("t", 1, 60)
    for _ in range(5):
        assert await backend.excess("a", limit, consume=False) == 0.0
    assert await backend.excess("a", limit, consume=True) == 0.0
    assert await backend.excess("a", limit, consume=False) > 0


async def test_memory_backend_bounds_its_keys() -> None:
    clock = Clock()
    backend = MemoryBackend(clock=clock, max_keys=100)
    limit = Limit("t", 5, 60)
    for i in range(1000):
        await backend.excess(f"k{i}", limit, consume=True)
    assert len(backend._arrivals) <= 100


async def test_redis_backend_allows_a_burst_then_refuses(redis_backend: RedisBackend) -> None:
    limit = Limit("t", 5, 3600)
    for _ in range(5):
        assert await redis_backend.excess("a", limit, consume=True) == 0.0
    over = await redis_backend.excess("a", limit, consume=True)
    assert 0 < over <= 720.0
    assert await redis_backend.excess("b", limit, consume=True) == 0.0


async def test_redis_backend_is_shared_by_every_process(redis_backend: RedisBackend) -> None:
    # Two backends on one prefix stand for two processes.
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        other = RedisBackend(client, redis_backend._prefix)
        limit = Limit("t", 4, 3600)
        for backend in (redis_backend, other, redis_backend, other):
            assert await backend.excess("shared", limit, consume=True) == 0.0
        assert await other.excess("shared", limit, consume=True) > 0
        assert await redis_backend.excess("shared", limit, consume=False) > 0
    finally:
        await client.aclose()


async def test_a_workspace_of_200_crates_in_a_minute_passes_the_defaults() -> None:
    limiter = RateLimiter(RateLimits(), MemoryBackend(clock=Clock()))
    for _ in range(200):
        await limiter.exchange_from("192.0.2.1")
        await limiter.exchange_for("https://token.actions.githubusercontent.com", "o/ws")


async def test_past_the_limit_a_429_with_retry_after() -> None:
    limits = RateLimits(exchange_per_repository=Limit("exchange-repository", 2, 60))
    limiter = RateLimiter(limits, MemoryBackend(clock=Clock()))
    await limiter.exchange_for("iss", "Octo/Lib")
    await limiter.exchange_for("iss", "octo/lib")
    with pytest.raises(RateLimited) as exc:
        await limiter.exchange_for("iss", "OCTO/LIB")
    assert exc.value.status_code == 429
    assert exc.value.headers == {"Retry-After": "30"}
    # The Kelvin sign is another repository, with its own budget.
    await limiter.exchange_for("iss", "octo/li\u212a")


async def test_failed_authentication_blocks_the_address_before_checking() -> None:
    limits = RateLimits(failed_auth_per_client=Limit("failed-auth-client", 3, 60))
    limiter = RateLimiter(limits, MemoryBackend(clock=Clock()))
    for _ in range(3):
        await limiter.check_auth_allowed("198.51.100.7")
        await limiter.auth_failed("198.51.100.7")
    with pytest.raises(RateLimited):
        await limiter.check_auth_allowed("198.51.100.7")
    await limiter.check_auth_allowed("198.51.100.8")


async def test_a_limit_switched_off_never_refuses() -> None:
    limiter = RateLimiter(RateLimits(None, None, None), MemoryBackend(clock=Clock()))
    for _ in range(5000):
        await limiter.exchange_from("a")
        await limiter.auth_failed("a")
    await limiter.check_auth_allowed("a")


@pytest.mark.parametrize(
    ("text", "expected"),
    [("600/1m", (600, 60)), ("10/30s", (10, 30)), ("1/1h", (1, 3600))],
)
def test_parse_limit(text: str, expected: tuple[int, int]) -> None:
    limit = parse_limit("x", text)
    assert limit is not None
    assert (limit.count, limit.period) == expected


@pytest.mark.parametrize("off", [0, "0", "off", False])
def test_parse_limit_off(off: object) -> None:
    assert parse_limit("x", off) is None


@pytest.mark.parametrize("bad", ["600", "0/1m", "-1/1m", "\u00b2/1m", "10/0s", "a/b", 5, "1/1m/2"])
def test_parse_limit_refuses_nonsense(bad: object) -> None:
    with pytest.raises(ValueError, match=r"expected|positive|zero"):
        parse_limit("x", bad)


async def test_the_redis_store_limiter_counts_on_the_stores_command_path() -> None:
    prefix = new_redis_prefix()
    store = RedisStore.from_url(REDIS_URL, prefix=prefix)
    limits = RateLimits(exchange_per_client=Limit("exchange-client", 2, 60))
    limiter = limiter_for(store, limits)
    try:
        await limiter.exchange_from("192.0.2.1")
        await limiter.exchange_from("192.0.2.1")
        with pytest.raises(RateLimited):
            await limiter.exchange_from("192.0.2.1")
        keys = [k async for k in store.client.scan_iter(match=f"{prefix}ratelimit:*")]
        assert len(keys) == 1
    finally:
        keys = [k async for k in store.client.scan_iter(match=f"{prefix}*")]
        if keys:
            await store.client.delete(*keys)
        await store.aclose()


@pytest.mark.parametrize("direct", [False, True], ids=["runner", "store"])
async def test_a_redis_failure_on_the_stores_path_denies_as_a_store_outage(direct: bool) -> None:
    from trustpub.errors import StoreUnavailable

    store = RedisStore.from_url("redis://127.0.0.1:1/0", prefix="trustpub-test:down:", timeout=0.5)
    try:
        if direct:
            backend = RedisBackend(store.client, store.prefix, store=store)
        else:
            backend = RedisBackend(store.client, store.prefix, store.run_script)
        with pytest.raises(StoreUnavailable):
            await backend.excess("a", Limit("t", 1, 60), consume=True)
        with pytest.raises(StoreUnavailable):
            await backend.excess("a", Limit("t", 1, 60), consume=False)
    finally:
        await store.aclose()


async def test_a_redis_failure_denies_as_a_store_outage() -> None:
    from trustpub.errors import StoreUnavailable

    # Nothing listens on port 1: the check cannot be made, so the request is refused.
    client = aioredis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    try:
        backend = RedisBackend(client, "trustpub-test:down:")
        with pytest.raises(StoreUnavailable):
            await backend.excess("a", Limit("t", 1, 60), consume=True)
    finally:
        await client.aclose()


@pytest.mark.parametrize("prefix", ["trustpub:", "tp-\u00e9:", "p" * 300 + ":"])
@pytest.mark.parametrize("key", ["192.0.2.1", "2001:db8::1", "iss|o/r\u212a", "\ud800", "k" * 5000])
@pytest.mark.parametrize("consume", [True, False])
def test_the_packed_command_is_what_redis_py_would_send(
    prefix: str, key: str, consume: bool
) -> None:
    # The store's path sends the script's EVALSHA packed by hand: byte for byte what
    # hiredis packs for the same script, key and arguments.
    import hashlib

    from trustpub.store.redis_pipeline import pack

    client = aioredis.Redis.from_url(REDIS_URL)
    backend = RedisBackend(client, prefix)
    limit = Limit("exchange-client", 7, 60)
    call = backend.call(key, limit, consume=consume)
    digest = hashlib.sha256(key.encode("utf-8", "backslashreplace")).hexdigest()[:32]
    assert call.keys == [f"{prefix}ratelimit:exchange-client:{digest}"]
    assert call.args == [repr(60 / 7), repr(60 - 60 / 7), "1" if consume else "0"]
    expected = pack("EVALSHA", backend._script.sha, 1, *call.keys, *call.args)
    assert getattr(call.script, "packed") == expected  # noqa: B009
    assert backend._commands(limit, consume).command(key) == expected
    # A limit of the same name with other numbers is packed anew.
    other = Limit("exchange-client", 8, 60)
    assert backend._commands(other, consume).command(key) != expected


def test_the_packed_commands_kept_stay_bounded() -> None:
    client = aioredis.Redis.from_url(REDIS_URL)
    backend = RedisBackend(client, "p:")
    limit = Limit("exchange-client", 7, 60)
    commands = backend._commands(limit, True)
    for i in range(10_000):
        commands.command(f"198.51.100.{i}")
        commands.call(f"198.51.100.{i}", "")
        commands.command("x" * 1000 + str(i))  # too long to keep
    assert len(commands.commands) <= 4096
    assert len(commands.calls) <= 4096
    assert not any(len(key) > 256 for key in commands.commands)


@pytest.mark.slow
async def test_the_stores_path_loads_the_script_retries_and_never_allows_on_failure(
    tmp_path: Path,
) -> None:
    # The rare paths behind the one await: NOSCRIPT on a fresh server, a reply lost with
    # the connection (sent again: the check may count twice, never not at all), NOAUTH,
    # a server gone. Every failure denies.
    from tests.store.test_redis import RedisServer
    from tests.store.test_redis_durability import ReplyDroppingProxy
    from trustpub.errors import StoreUnavailable

    server = RedisServer(workdir=tmp_path)
    await server.start()
    proxy = ReplyDroppingProxy(server.port)
    await proxy.start()
    store = RedisStore.from_url(f"redis://127.0.0.1:{proxy.port}/0?allow_volatile=1", timeout=1)
    admin = aioredis.Redis(port=server.port)
    limits = RateLimits(
        exchange_per_client=Limit("exchange-client", 3, 3600),
        failed_auth_per_client=Limit("failed-auth-client", 1, 3600),
    )
    limiter = limiter_for(store, limits)
    try:
        await limiter.exchange_from("192.0.2.1")  # NOSCRIPT: loaded, then counted
        proxy.armed = True
        await limiter.exchange_from("192.0.2.1")  # its reply lost: sent once more
        assert proxy.dropped == 1
        with pytest.raises(RateLimited):  # counted three times (once twice)
            await limiter.exchange_from("192.0.2.1")
        # The gate beside a lookup, on a server that lost its scripts meanwhile.
        await admin.script_flush()
        gate = limiter.auth_gate("192.0.2.9")
        assert gate.call is not None
        assert await store.lookup_after(b"\0" * 32, *gate.call) == (b"0", None)
        await limiter.auth_failed("192.0.2.9")
        checked, _ = await store.lookup_after(b"\0" * 32, *gate.call)
        with pytest.raises(RateLimited):
            gate.settle(checked)
        # A password now required: NOAUTH on the next connection's commands.
        await admin.config_set("requirepass", "pw")
        await admin.client_kill_filter(_type="normal", skipme=True)
        with pytest.raises(StoreUnavailable, match=r"\(AuthenticationError\)"):
            await limiter.exchange_from("192.0.2.2")
        with pytest.raises(StoreUnavailable, match=r"\(AuthenticationError\)"):
            await store.lookup_after(b"\0" * 32, *gate.call)
        await proxy.stop()  # no new connections, then the server gone
        await server.stop()
        with pytest.raises(StoreUnavailable):
            await limiter.exchange_for("iss", "o/r")
        with pytest.raises(StoreUnavailable):
            await limiter.check_auth_allowed("192.0.2.3")
    finally:
        await admin.aclose()
        await store.aclose()
        await proxy.stop()
        await server.stop()


@pytest.mark.slow
async def test_a_silent_server_denies_the_check_after_one_timeout() -> None:
    from trustpub.errors import StoreUnavailable

    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    store = RedisStore.from_url(f"redis://127.0.0.1:{port}/0?allow_volatile=1", timeout=0.3)
    limiter = limiter_for(store, RateLimits())
    try:
        results = await asyncio.gather(
            limiter.exchange_from("192.0.2.1"),
            limiter.exchange_for("iss", "o/r"),
            return_exceptions=True,
        )
        assert all(isinstance(r, StoreUnavailable) for r in results)
        assert all("(TimeoutError)" in str(r) for r in results)
    finally:
        await store.aclose()
        server.close()
        await server.wait_closed()
