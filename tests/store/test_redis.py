"""Redis-specific behaviour: key layout and expiry, and failing fast and recovering.

Failure tests start their own ``redis-server`` on a free port, so the shared server at
127.0.0.1:6379 is never stopped or reconfigured.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import socket
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from tests.store.conftest import REDIS_URL, STORE_URL
from trustpub.errors import StoreUnavailable
from trustpub.store import RedisStore

pytestmark = pytest.mark.anyio


def h(name: str) -> bytes:
    return hashlib.sha256(name.encode()).digest()


def later(seconds: int = 600) -> int:
    return int(time.time()) + seconds


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
async def raw_redis() -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(REDIS_URL)
    yield client
    await client.aclose()


async def test_keys_live_under_the_prefix_and_expire_at_the_given_times(
    redis_store: RedisStore, raw_redis: aioredis.Redis
) -> None:
    jti_at, token_at = later(900), later(300)
    await redis_store.issue(h("jti"), jti_at, h("token"), b"record", token_at)
    await redis_store.pin_namespace("https://gitlab.com\ngroup/project", "4242")
    prefix = redis_store.prefix
    keys = sorted([k.decode() async for k in raw_redis.scan_iter(match=f"{prefix}*")])
    assert keys == sorted(
        [
            f"{prefix}jti:{h('jti').hex()}",
            f"{prefix}token:{h('token').hex()}",
            f"{prefix}pin:https://gitlab.com\ngroup/project",
            f"{prefix}ping",  # the fixture's ping: a write, expiring within a minute
        ]
    )
    assert await raw_redis.expiretime(f"{prefix}jti:{h('jti').hex()}") == jti_at
    assert await raw_redis.expiretime(f"{prefix}token:{h('token').hex()}") == token_at
    # Pins are permanent: they defend against a namespace being re-registered later.
    assert await raw_redis.ttl(f"{prefix}pin:https://gitlab.com\ngroup/project") == -1


async def test_stores_with_different_prefixes_do_not_see_each_other(
    redis_store: RedisStore, redis_prefix: str
) -> None:
    other = RedisStore.from_url(STORE_URL, prefix=redis_prefix + "other:")
    try:
        await redis_store.issue(h("jti"), later(), h("token"), b"r", later())
        assert await other.lookup(h("token")) is None
        assert await other.issue(h("jti"), later(), h("token-2"), b"r", later())
    finally:
        await other.aclose()


async def test_closed_port_is_unavailable_at_once_without_leaking_the_password() -> None:
    # An hour's timeout: the refused connection itself must end the call (a
    # ConnectionError), not a timeout or a retry loop, or this test would hang.
    store = RedisStore.from_url(
        f"redis://:s3cret-pw@127.0.0.1:{free_port()}/0?allow_volatile=1", timeout=3600
    )
    with pytest.raises(StoreUnavailable) as info:
        await store.issue(h("jti"), later(), h("token"), b"r", later())
    assert info.value.detail.endswith(": issue failed (ConnectionError)")
    assert "s3cret-pw" not in info.value.detail
    assert "redis 127.0.0.1:" in info.value.detail
    with pytest.raises(StoreUnavailable):
        await store.lookup(h("token"))
    with pytest.raises(StoreUnavailable):
        await store.ping()
    await store.aclose()


async def test_silent_server_times_out_once_instead_of_hanging() -> None:
    connections = 0

    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await reader.read()  # read until the client gives up; never reply
        writer.close()

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    store = RedisStore.from_url(f"redis://127.0.0.1:{port}/0", timeout=0.3)
    try:
        with pytest.raises(StoreUnavailable) as info:
            await store.lookup(h("token"))
        assert info.value.detail.endswith(": lookup failed (TimeoutError)")
        # One attempt, no retry: the caller waits one timeout, not several.
        assert connections == 1
    finally:
        await store.aclose()
        server.close()
        await server.wait_closed()


class RedisServer:
    """A private redis-server process on a free port, which tests may stop and restart.

    Without persistence unless ``options`` say otherwise (they are appended to the
    command line, so a later ``--appendonly yes`` wins); files go to ``workdir``.
    """

    def __init__(
        self, *options: str, workdir: Path | None = None, password: str | None = None
    ) -> None:
        self.port = free_port()
        self.options = options
        self.workdir = workdir
        self.password = password  # the default user's (--requirepass), to check it is up
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary is not None, "redis-server must be installed to run the store tests"
        self.process = await asyncio.create_subprocess_exec(
            binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            *(("--dir", str(self.workdir)) if self.workdir is not None else ()),
            *self.options,
            stdout=asyncio.subprocess.DEVNULL,
        )
        client = aioredis.Redis(port=self.port, password=self.password)
        try:
            for _ in range(200):
                try:
                    await client.ping()
                    return
                except Exception:  # still starting
                    await asyncio.sleep(0.025)
        finally:
            await client.aclose()
        raise AssertionError("redis-server did not start")

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()


@pytest.fixture
async def private_redis() -> AsyncIterator[RedisServer]:
    server = RedisServer()
    await server.start()
    yield server
    await server.stop()


@pytest.mark.slow
async def test_store_recovers_by_itself_when_the_server_comes_back(
    private_redis: RedisServer,
) -> None:
    store = RedisStore.from_url(f"redis://127.0.0.1:{private_redis.port}/0?allow_volatile=1")
    try:
        assert await store.issue(h("jti-1"), later(), h("t1"), b"r", later())
        await private_redis.stop()
        with pytest.raises(StoreUnavailable):
            await store.issue(h("jti-2"), later(), h("t2"), b"r", later())
        with pytest.raises(StoreUnavailable):
            await store.lookup(h("t1"))

        await private_redis.start()
        # A fresh server has no cached scripts: the store must load them again.
        assert await store.issue(h("jti-2"), later(), h("t2"), b"r", later())
        assert await store.lookup(h("t2")) == b"r"
        assert await store.pin_namespace("k", "1") == "1"
    finally:
        await store.aclose()


@pytest.mark.slow
async def test_read_only_server_is_unavailable_then_recovers(
    private_redis: RedisServer,
) -> None:
    store = RedisStore.from_url(f"redis://127.0.0.1:{private_redis.port}/0?allow_volatile=1")
    admin = aioredis.Redis(port=private_redis.port)
    try:
        await store.ping()
        # A replica refuses writes (READONLY), as after a failover gone wrong.
        await admin.replicaof("127.0.0.1", free_port())
        with pytest.raises(StoreUnavailable, match="ReadOnlyError"):
            await store.issue(h("jti"), later(), h("token"), b"r", later())
        await admin.replicaof("NO", "ONE")
        assert await store.issue(h("jti"), later(), h("token"), b"r", later())
    finally:
        await admin.aclose()
        await store.aclose()


async def test_a_burst_beyond_the_pool_size_queues_instead_of_failing(redis_prefix: str) -> None:
    store = RedisStore.from_url(STORE_URL, prefix=redis_prefix, max_connections=4)
    try:
        results = await asyncio.gather(
            *(
                store.issue(h(f"jti-{i}"), later(), h(f"token-{i}"), b"record", later())
                for i in range(60)
            )
        )
        assert results == [True] * 60
    finally:
        await store.aclose()


async def test_a_script_and_a_lookup_share_one_round_trip(
    redis_store: RedisStore, raw_redis: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    await redis_store.issue(h("jti"), later(), h("token"), b"record", later())
    # A script this server has never seen: the first call meets NOSCRIPT and loads it.
    script = raw_redis.register_script(f"-- {uuid.uuid4()}\nreturn ARGV[1]")
    sends: list[int] = []  # the number of replies of each send
    original = redis_store._pipeline.submit

    def counted(data: bytes, replies: int = 1) -> Any:
        sends.append(replies)
        return original(data, replies)

    monkeypatch.setattr(redis_store._pipeline, "submit", counted)
    key = f"{redis_store.prefix}unused"
    assert await redis_store.lookup_after(h("token"), script, [key], ["7"]) == (b"7", b"record")
    assert sends == [2, 1, 2]  # NOSCRIPT, then the script loaded and both sent again
    assert await redis_store.lookup_after(h("other"), script, [key], ["8"]) == (b"8", None)
    assert sends == [2, 1, 2, 2]
    # An error reply from the script: unavailable, and the connection's next reply (the
    # lookup's) was read, so the next call on the pool is answered correctly.
    failing = raw_redis.register_script(f"-- {uuid.uuid4()}\nreturn redis.error_reply('no')")
    await raw_redis.script_load(failing.script)
    with pytest.raises(StoreUnavailable):
        await redis_store.lookup_after(h("token"), failing, [key], [])
    assert await redis_store.lookup_after(h("token"), script, [key], ["9"]) == (b"9", b"record")
    assert await redis_store.lookup(h("token")) == b"record"


@pytest.mark.parametrize("prefix", ["trustpub:", "tp-\u00e9:", "p" * 1100 + ":"])
@pytest.mark.parametrize("size", [0, 32, 600, 5000])
async def test_hot_commands_are_packed_as_hiredis_packs_them(prefix: str, size: int) -> None:
    # lookup, lookup_after and issue pack their commands by hand: byte for byte what
    # hiredis packs, whatever the prefix, hash length and record size.
    from trustpub.store.redis_pipeline import pack

    store = RedisStore.from_url(STORE_URL, prefix=prefix)
    sent: list[tuple[bytes, int]] = []

    def submit(data: bytes, replies: int = 1) -> Any:
        sent.append((data, replies))
        future = asyncio.get_running_loop().create_future()
        if replies == 2:
            future.set_result([b"0", b"r"])
        else:  # the issue script's reply, or a GET's
            future.set_result(1 if data.startswith(b"*8\r\n$7\r\nEVALSHA") else b"v")
        return future

    store._pipeline.submit = submit  # type: ignore[method-assign]
    store._durable = True
    jti, token, record = bytes(i % 256 for i in range(size)), h(str(size)), b"r" * size
    try:
        assert await store.issue(jti, 100, token, record, 50)
        assert sent[-1] == (
            pack(
                "EVALSHA",
                store._issue.sha,
                2,
                f"{prefix}jti:{jti.hex()}",
                f"{prefix}token:{token.hex()}",
                100,
                record,
                50,
            ),
            1,
        )
        assert await store.lookup(jti) == b"v"
        assert sent[-1] == (pack("GET", f"{prefix}token:{jti.hex()}"), 1)
        script = store.client.register_script("return 1")
        assert await store.lookup_after(jti, script, ["k"], ["1", 0.5]) == (b"0", b"r")
        assert sent[-1] == (
            pack("EVALSHA", script.sha, 1, "k", "1", 0.5)
            + pack("GET", f"{prefix}token:{jti.hex()}"),
            2,
        )
    finally:
        await store.aclose()
