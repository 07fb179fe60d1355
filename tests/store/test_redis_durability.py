"""Redis: refusing a server that would forget used JWTs, outcomes unknown after a
timeout, and no stray failures from stale pooled connections after a restart.

The machine's shared server at 127.0.0.1:6379 runs without persistence: it is the
refusal case. Every other server here is private, started by the test.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from tests.store.conftest import REDIS_URL
from tests.store.test_redis import RedisServer
from trustpub.errors import ConfigurationError, StoreUnavailable
from trustpub.store import RedisStore, open_store
from trustpub.store.base import StoreNotDurable
from trustpub.store.redis import OUTCOME_UNKNOWN

pytestmark = pytest.mark.anyio


def h(name: str) -> bytes:
    return hashlib.sha256(name.encode()).digest()


def later(seconds: int = 600) -> int:
    return int(time.time()) + seconds


async def test_a_redis_without_persistence_is_refused_with_the_fix(redis_prefix: str) -> None:
    store = RedisStore.from_url(REDIS_URL, prefix=redis_prefix)
    try:
        with pytest.raises(StoreNotDurable) as info:
            await store.ping()
        message = info.value.detail
        assert "\n" not in message
        assert "would forget used JWTs on restart" in message
        assert "appendonly yes" in message
        assert "allow_volatile=1" in message
        # A claim is refused too (503), and nothing is stored.
        with pytest.raises(StoreUnavailable):
            await store.issue(h("jti"), later(), h("token"), b"r", later())
        assert await store.lookup(h("token")) is None
    finally:
        await store.aclose()


async def test_the_operator_may_accept_a_volatile_redis_in_the_url(redis_prefix: str) -> None:
    store = open_store(f"{REDIS_URL}?allow_volatile=1&prefix={redis_prefix}")
    assert isinstance(store, RedisStore)
    try:
        await store.ping()
        assert await store.issue(h("jti"), later(), h("token"), b"r", later())
    finally:
        await store.aclose()


@pytest.mark.parametrize("value", ["maybe", ""])
def test_allow_volatile_takes_one_or_zero(value: str) -> None:
    with pytest.raises(ConfigurationError, match="allow_volatile"):
        open_store(f"{REDIS_URL}?allow_volatile={value}")


async def test_allow_volatile_0_still_checks(redis_prefix: str) -> None:
    store = open_store(f"{REDIS_URL}?allow_volatile=0&prefix={redis_prefix}")
    try:
        with pytest.raises(StoreNotDurable):
            await store.ping()
    finally:
        await store.aclose()


@pytest.fixture
async def durable_redis(tmp_path: Path) -> AsyncIterator[RedisServer]:
    server = RedisServer("--appendonly", "yes", workdir=tmp_path)
    await server.start()
    yield server
    await server.stop()


@pytest.mark.slow
async def test_a_redis_with_the_append_only_file_is_accepted(durable_redis: RedisServer) -> None:
    store = RedisStore.from_url(f"redis://127.0.0.1:{durable_redis.port}/0")
    try:
        await store.ping()
        assert await store.issue(h("jti"), later(), h("token"), b"r", later())
    finally:
        await store.aclose()


@pytest.mark.slow
@pytest.mark.parametrize(("appendonly", "accepted"), [("yes", True), ("no", False)])
async def test_without_config_the_store_reads_info_persistence(
    tmp_path: Path, appendonly: str, accepted: bool
) -> None:
    # Managed services disable CONFIG; INFO persistence still tells about the AOF.
    server = RedisServer(
        "--appendonly", appendonly, "--rename-command", "CONFIG", "", workdir=tmp_path
    )
    await server.start()
    store = RedisStore.from_url(f"redis://127.0.0.1:{server.port}/0")
    try:
        if accepted:
            await store.ping()
        else:
            with pytest.raises(StoreNotDurable, match="aof_enabled:0"):
                await store.ping()
    finally:
        await store.aclose()
        await server.stop()


@pytest.mark.slow
async def test_a_server_that_hides_its_persistence_settings_is_refused(tmp_path: Path) -> None:
    server = RedisServer(
        "--appendonly",
        "yes",
        "--rename-command",
        "CONFIG",
        "",
        "--rename-command",
        "INFO",
        "",
        workdir=tmp_path,
    )
    await server.start()
    store = RedisStore.from_url(f"redis://127.0.0.1:{server.port}/0")
    try:
        with pytest.raises(StoreNotDurable, match="persistence cannot be checked"):
            await store.ping()
    finally:
        await store.aclose()
        await server.stop()


@pytest.mark.slow
async def test_a_timeout_after_the_claim_was_sent_says_the_outcome_is_unknown(
    tmp_path: Path,
) -> None:
    server = RedisServer(workdir=tmp_path)
    await server.start()
    url = f"redis://127.0.0.1:{server.port}/0?allow_volatile=1"
    store = RedisStore.from_url(url, timeout=0.3)  # the pause outlasts it by far
    admin = aioredis.Redis(port=server.port)
    try:
        await store.ping()  # a pooled connection, ready to send
        # The server holds write commands (as a stalled Redis would), then runs them.
        await admin.client_pause(1500, all=False)
        with pytest.raises(StoreUnavailable) as info:
            await store.issue(h("jti"), later(), h("token"), b"record", later())
        assert info.value.detail == OUTCOME_UNKNOWN
        assert "Retry with a new OIDC token" in info.value.detail
        # Not a blind retry: the claim was sent once, whatever became of it.
        await admin.client_unpause()
        assert await store.issue(h("jti-2"), later(), h("token-2"), b"r", later())
    finally:
        await admin.aclose()
        await store.aclose()
        await server.stop()


@pytest.mark.slow
async def test_no_stray_failures_from_pooled_connections_after_redis_restarts(
    durable_redis: RedisServer,
) -> None:
    store = RedisStore.from_url(f"redis://127.0.0.1:{durable_redis.port}/0", max_connections=8)
    try:
        # Fill the pool: eight connections, all idle afterwards.
        await asyncio.gather(*(store.lookup(h(f"t{i}")) for i in range(32)))
        assert await store.issue(h("jti-0"), later(), h("t0"), b"r", later())
        await durable_redis.stop()
        await durable_redis.start()  # same port, same data directory
        # Every pooled connection is now stale; not one request may fail for it.
        results = await asyncio.gather(
            *(store.issue(h(f"jti-{i}"), later(), h(f"t{i}"), b"r", later()) for i in range(1, 33)),
            *(store.lookup(h("t0")) for _ in range(32)),
            return_exceptions=True,
        )
        failures = [r for r in results if isinstance(r, BaseException)]
        assert failures == []
        assert results[:32] == [True] * 32
        # The append-only file kept the claim made before the restart.
        assert results[32:] == [b"r"] * 32
        assert not await store.issue(h("jti-0"), later(), h("other"), b"r", later())
    finally:
        await store.aclose()


@pytest.mark.slow
def test_serve_refuses_a_volatile_redis_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "policies").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRUSTPUB_")}
    result = subprocess.run(
        [sys.executable, "-m", "trustpub", "serve", "--store", f"{REDIS_URL}?prefix=refused:"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "would forget used JWTs on restart" in lines[0]
    assert "appendonly yes" in lines[0]
    assert "allow_volatile=1" in lines[0]


class ReplyDroppingProxy:
    """A TCP proxy to a Redis server that, once armed, forwards the next EVALSHA and
    then closes the client's connection instead of passing the reply on: the claim
    ran, its answer was lost with the connection."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.armed = False
        self.dropped = 0
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(
            "127.0.0.1", self.target_port
        )
        drop = asyncio.Event()

        async def to_server() -> None:
            while data := await reader.read(65536):
                if self.armed and b"EVALSHA" in data:
                    self.armed = False
                    drop.set()
                upstream_writer.write(data)
                await upstream_writer.drain()
            upstream_writer.close()

        async def to_client() -> None:
            while data := await upstream_reader.read(65536):
                if drop.is_set():
                    self.dropped += 1
                    break
                writer.write(data)
                await writer.drain()
            writer.close()
            upstream_writer.close()

        await asyncio.gather(to_server(), to_client(), return_exceptions=True)


@pytest.mark.slow
async def test_a_claim_whose_reply_was_lost_with_the_connection_is_reconciled(
    tmp_path: Path,
) -> None:
    server = RedisServer(workdir=tmp_path)
    await server.start()
    proxy = ReplyDroppingProxy(server.port)
    await proxy.start()
    store = RedisStore.from_url(f"redis://127.0.0.1:{proxy.port}/0?allow_volatile=1")
    try:
        assert await store.issue(h("jti-0"), later(), h("t0"), b"r", later())  # loads the script
        proxy.armed = True
        # The claim ran; its reply was lost. Reading the keys finds our token: issued.
        assert await store.issue(h("jti-1"), later(), h("t1"), b"record", later())
        assert proxy.dropped == 1
        assert await store.lookup(h("t1")) == b"record"
        # And the JWT is used: the same jti cannot be claimed again.
        assert not await store.issue(h("jti-1"), later(), h("t2"), b"r", later())
    finally:
        await store.aclose()
        await proxy.stop()
        await server.stop()
