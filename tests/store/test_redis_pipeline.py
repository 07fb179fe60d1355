"""The Redis store's pipelined connection (trustpub.store.redis_pipeline): commands of
one loop tick in one write, replies to their own callers in order, and the failure
semantics the store documents, on real servers (the shared one for reads and writes
under the test's prefix; private ones for anything that pauses, stops or reconfigures).
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import ipaddress
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.store.conftest import REDIS_URL
from tests.store.test_redis import RedisServer, free_port
from tests.store.test_redis_durability import ReplyDroppingProxy
from trustpub.errors import StoreUnavailable
from trustpub.store import RedisStore
from trustpub.store.redis import OUTCOME_UNKNOWN
from trustpub.store.redis_pipeline import Endpoint, RedisPipeline

pytestmark = pytest.mark.anyio


def h(name: str) -> bytes:
    return hashlib.sha256(name.encode()).digest()


def later(seconds: int = 600) -> int:
    return int(time.time()) + seconds


@pytest.fixture
async def raw_redis() -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(REDIS_URL)
    yield client
    await client.aclose()


async def put_tokens(raw: aioredis.Redis, store: RedisStore, values: dict[str, bytes]) -> None:
    """Token records written beside the store, for its lookups to find."""
    await raw.mset({f"{store.prefix}token:{h(name).hex()}": v for name, v in values.items()})


async def connections_received(admin: aioredis.Redis) -> int:
    """How many connections the server has accepted so far (``admin``'s, once, too)."""
    info = await admin.info("stats")
    return int(info["total_connections_received"])


async def test_concurrent_commands_leave_in_one_write_and_each_gets_its_own_reply(
    redis_store: RedisStore, raw_redis: aioredis.Redis
) -> None:
    values = {f"t{i}": f"record-{i}".encode() * (i % 7 + 1) for i in range(200)}
    await put_tokens(raw_redis, redis_store, values)
    writes = redis_store._pipeline.writes  # the fixture's ping connected it
    names = [*values, "absent", *values]
    results = await asyncio.gather(*(redis_store.lookup(h(name)) for name in names))
    assert results == [values.get(name) for name in names]
    # 401 commands issued in one tick: one write.
    assert redis_store._pipeline.writes == writes + 1


async def test_a_script_and_a_lookup_among_other_commands_keep_their_replies(
    redis_store: RedisStore, raw_redis: aioredis.Redis
) -> None:
    values = {f"t{i}": f"r{i}".encode() for i in range(20)}
    await put_tokens(raw_redis, redis_store, values)
    script = raw_redis.register_script("return ARGV[1]")
    key = f"{redis_store.prefix}unused"
    calls = [
        redis_store.lookup_after(h(f"t{i}"), script, [key], [str(i)])
        if i % 2
        else redis_store.lookup(h(f"t{i}"))
        for i in range(20)
    ]
    results = await asyncio.gather(*calls)
    for i, result in enumerate(results):
        if i % 2:
            assert result == (str(i).encode(), f"r{i}".encode())
        else:
            assert result == f"r{i}".encode()


async def test_a_reply_larger_than_one_read_is_whole(
    redis_store: RedisStore, raw_redis: aioredis.Redis
) -> None:
    big = bytes(range(256)) * (5 * 4096)  # 5 MiB
    await put_tokens(raw_redis, redis_store, {"big": big, "small": b"s"})
    results = await asyncio.gather(
        redis_store.lookup(h("small")),
        redis_store.lookup(h("big")),
        redis_store.lookup(h("small")),
        redis_store.lookup(h("big")),
    )
    assert list(results) == [b"s", big, b"s", big]


@pytest.fixture
async def private_redis() -> AsyncIterator[RedisServer]:
    server = RedisServer()
    await server.start()
    yield server
    await server.stop()


@pytest.mark.slow
async def test_a_cancelled_caller_does_not_shift_the_replies_of_others(
    private_redis: RedisServer,
) -> None:
    store = RedisStore.from_url(f"redis://127.0.0.1:{private_redis.port}/0?allow_volatile=1")
    admin = aioredis.Redis(port=private_redis.port)
    try:
        await store.ping()
        connections = await connections_received(admin)
        await admin.mset({f"trustpub:token:{h(n).hex()}": n.encode() for n in "abcdef"})
        script = admin.register_script("return ARGV[1]")
        await admin.script_load(script.script)
        # Every client's commands wait (as on a stalled server) while callers give up.
        await admin.client_pause(400, all=True)
        tasks = [
            asyncio.create_task(store.lookup(h("a"))),
            asyncio.create_task(store.lookup(h("b"))),
            asyncio.create_task(store.lookup_after(h("c"), script, ["k"], ["c"])),
            asyncio.create_task(store.lookup(h("d"))),
            asyncio.create_task(store.lookup_after(h("e"), script, ["k"], ["e"])),
        ]
        await asyncio.sleep(0.1)  # all written, none answered
        assert not any(task.done() for task in tasks)
        tasks[1].cancel()
        tasks[2].cancel()  # two replies still to come for this one
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert isinstance(results[1], asyncio.CancelledError)
        assert isinstance(results[2], asyncio.CancelledError)
        assert results[0] == b"a"
        assert results[3] == b"d"
        assert results[4] == (b"e", b"e")
        # The connection is still in step: the next command gets its own reply.
        assert await store.lookup(h("f")) == b"f"
        assert await connections_received(admin) == connections  # the store's first one
    finally:
        await admin.aclose()
        await store.aclose()


@pytest.mark.slow
async def test_concurrent_callers_share_one_connect(private_redis: RedisServer) -> None:
    store = RedisStore.from_url(f"redis://127.0.0.1:{private_redis.port}/0?allow_volatile=1")
    admin = aioredis.Redis(port=private_redis.port)
    try:
        connections = await connections_received(admin)
        results = await asyncio.gather(*(store.lookup(h(f"t{i}")) for i in range(50)))
        assert results == [None] * 50
        assert await connections_received(admin) == connections + 1
    finally:
        await admin.aclose()
        await store.aclose()


@pytest.mark.slow
async def test_commands_in_flight_when_the_server_closes_are_retried_or_reconciled(
    tmp_path: Path,
) -> None:
    server = RedisServer(workdir=tmp_path)
    await server.start()
    proxy = ReplyDroppingProxy(server.port)
    await proxy.start()
    store = RedisStore.from_url(f"redis://127.0.0.1:{proxy.port}/0?allow_volatile=1")
    try:
        assert await store.issue(h("jti-0"), later(), h("t0"), b"r0", later())  # loads the script
        writes = store._pipeline.writes
        proxy.armed = True
        # One write: the claim and the lookups reach the server, which runs them; the
        # connection closes with every reply lost.
        results = await asyncio.gather(
            store.issue(h("jti-1"), later(), h("t1"), b"record", later()),
            *(store.lookup(h("t0")) for _ in range(10)),
            store.revoke(h("nothing")),
        )
        assert proxy.dropped == 1
        # Reads sent once more on a fresh connection, the claim reconciled (it ran).
        assert results == [True, *[b"r0"] * 10, False]
        assert store._pipeline.writes > writes + 1
        assert await store.lookup(h("t1")) == b"record"
        assert not await store.issue(h("jti-1"), later(), h("t2"), b"r", later())
    finally:
        await store.aclose()
        await proxy.stop()
        await server.stop()


@pytest.mark.slow
async def test_a_timeout_fails_every_waiting_command_once_and_the_next_reconnects() -> None:
    connections = 0

    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await reader.read()
        writer.close()

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    store = RedisStore.from_url(f"redis://127.0.0.1:{port}/0?allow_volatile=1", timeout=0.3)
    try:
        started = time.monotonic()
        results = await asyncio.gather(
            store.issue(h("jti"), later(), h("token"), b"r", later()),
            *(store.lookup(h(f"t{i}")) for i in range(5)),
            return_exceptions=True,
        )
        elapsed = time.monotonic() - started
        assert all(isinstance(r, StoreUnavailable) for r in results)
        details = [r.detail for r in results if isinstance(r, StoreUnavailable)]
        assert details[0] == OUTCOME_UNKNOWN  # the claim was sent: never sent again
        assert all(d.endswith(": lookup failed (TimeoutError)") for d in details[1:])
        assert connections == 1  # no retry
        assert elapsed < 1.5  # one timeout (0.3 s), not one per command
        with pytest.raises(StoreUnavailable, match=r"\(TimeoutError\)"):
            await store.lookup(h("token"))
        assert connections == 2  # the aborted connection was replaced
    finally:
        await store.aclose()
        server.close()
        await server.wait_closed()


@pytest.mark.slow
async def test_a_reply_that_cannot_be_parsed_drops_the_connection() -> None:
    connections = 0

    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await reader.read(1)
        writer.write(b"?not redis\r\n")
        await reader.read()
        writer.close()

    server = await asyncio.start_server(garbage, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    store = RedisStore.from_url(f"redis://127.0.0.1:{port}/0", timeout=2)
    try:
        with pytest.raises(StoreUnavailable) as info:
            await store.lookup(h("token"))
        assert info.value.detail.endswith(": lookup failed (InvalidResponse)")
        assert connections == 2  # a read: sent once more on a fresh connection
    finally:
        await store.aclose()
        server.close()
        await server.wait_closed()


@pytest.mark.slow
async def test_password_username_and_database_from_the_url() -> None:
    server = RedisServer(
        "--requirepass",
        "default-pw",
        "--user",
        *("alice", "on", ">alice-pw", "~*", "&*", "+@all"),
        password="default-pw",
    )
    await server.start()
    admin = aioredis.Redis(port=server.port, password="default-pw", db=3)
    stores: list[RedisStore] = []

    def store(url: str) -> RedisStore:
        stores.append(RedisStore.from_url(url + "?allow_volatile=1", timeout=2))
        return stores[-1]

    try:
        for url in (
            f"redis://:default-pw@127.0.0.1:{server.port}/3",
            f"redis://alice:alice-pw@127.0.0.1:{server.port}/3",
        ):
            one = store(url)
            assert await one.issue(h(url), later(), h(f"t-{url}"), b"r", later())
            assert await one.lookup(h(f"t-{url}")) == b"r"
            # In database 3, where the URL put it.
            assert await admin.get(f"trustpub:token:{h(f't-{url}').hex()}") == b"r"
        db0 = aioredis.Redis(port=server.port, password="default-pw", db=0)
        try:
            assert await db0.dbsize() == 0
        finally:
            await db0.aclose()

        # A wrong password: the connection is refused, the command never sent.
        wrong = store(f"redis://alice:wrong-pw@127.0.0.1:{server.port}/3")
        with pytest.raises(StoreUnavailable) as info:
            await wrong.lookup(h("t"))
        assert info.value.detail.endswith(": lookup failed (AuthenticationError)")
        assert "wrong-pw" not in info.value.detail
        # No password where one is required: the command is refused (NOAUTH).
        none = store(f"redis://127.0.0.1:{server.port}/0")
        with pytest.raises(StoreUnavailable, match=r"\(AuthenticationError\)"):
            await none.issue(h("jti"), later(), h("t"), b"r", later())
        with pytest.raises(StoreUnavailable, match=r"\(AuthenticationError\)"):
            await none.lookup_after(h("t"), admin.register_script("return 1"), ["k"], [])
    finally:
        for opened in stores:
            await opened.aclose()
        await admin.aclose()
        await server.stop()


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A directory with a short path: a unix socket's path is limited to ~100 bytes."""
    path = Path(tempfile.mkdtemp(prefix="tp-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.slow
async def test_a_unix_socket_url(short_tmp: Path) -> None:
    sock = short_tmp / "redis.sock"
    server = RedisServer("--unixsocket", str(sock), "--unixsocketperm", "700")
    await server.start()
    store = RedisStore.from_url(f"unix://{sock}?db=2&allow_volatile=1")
    admin = aioredis.Redis(port=server.port, db=2)
    try:
        assert store.location == f"redis unix:{sock}/2"
        await store.ping()
        assert await store.issue(h("jti"), later(), h("t"), b"r", later())
        assert await store.lookup(h("t")) == b"r"
        assert await admin.get(f"trustpub:token:{h('t').hex()}") == b"r"
        clients = await admin.client_list()
        assert any("U" in c["flags"] for c in clients)  # a unix socket client: the store
    finally:
        await admin.aclose()
        await store.aclose()
        await server.stop()


def tls_files(directory: Path) -> tuple[Path, Path, Path]:
    """A CA, and a certificate it signed for 127.0.0.1 with its key."""
    now = datetime.datetime.now(datetime.UTC)

    def cert(
        subject: str,
        key: ec.EllipticCurvePrivateKey,
        issuer: x509.Name | None,
        signer: ec.EllipticCurvePrivateKey,
        ca: bool,
    ) -> x509.Certificate:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
        builder = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(issuer or name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False,
            )
        return builder.sign(signer, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = cert("test ca", ca_key, None, ca_key, True)
    key = ec.generate_private_key(ec.SECP256R1())
    server = cert("127.0.0.1", key, ca.subject, ca_key, False)
    paths = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


@pytest.mark.slow
async def test_a_tls_url_verifies_the_server(tmp_path: Path) -> None:
    ca, cert, key = tls_files(tmp_path)
    tls_port = free_port()
    server = RedisServer(
        "--tls-port",
        str(tls_port),
        "--tls-cert-file",
        str(cert),
        "--tls-key-file",
        str(key),
        "--tls-ca-cert-file",
        str(ca),
        "--tls-auth-clients",
        "no",
    )
    await server.start()
    trusted = RedisStore.from_url(
        f"rediss://127.0.0.1:{tls_port}/0?ssl_ca_certs={ca}&allow_volatile=1"
    )
    # The system's CAs do not know this server: refused before anything is sent.
    untrusted = RedisStore.from_url(f"rediss://127.0.0.1:{tls_port}/0?allow_volatile=1")
    try:
        assert await trusted.issue(h("jti"), later(), h("t"), b"r", later())
        assert await trusted.lookup(h("t")) == b"r"
        with pytest.raises(StoreUnavailable) as info:
            await untrusted.lookup(h("t"))
        assert info.value.detail.endswith(": lookup failed (ConnectionError)")
    finally:
        await trusted.aclose()
        await untrusted.aclose()
        await server.stop()


@pytest.mark.parametrize(
    "anyio_backend", [pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop")]
)
async def test_on_uvloop_as_the_service_runs(
    anyio_backend: object, redis_store: RedisStore, raw_redis: aioredis.Redis
) -> None:
    # uvloop's transports are not asyncio.Transport instances, and run the callbacks
    # of a tick in their own order: the same replies, in one write.
    assert type(asyncio.get_running_loop()).__module__.startswith("uvloop")
    values = {f"t{i}": f"r{i}".encode() for i in range(50)}
    await put_tokens(raw_redis, redis_store, values)
    writes = redis_store._pipeline.writes
    results = await asyncio.gather(*(redis_store.lookup(h(name)) for name in values))
    assert list(results) == list(values.values())
    assert redis_store._pipeline.writes == writes + 1
    assert await redis_store.issue(h("jti"), later(), h("token"), b"r", later())
    script = raw_redis.register_script("return ARGV[1]")
    assert await redis_store.lookup_after(h("token"), script, ["k"], ["1"]) == (b"1", b"r")


async def test_the_pipeline_on_its_own(redis_prefix: str) -> None:
    pipeline = RedisPipeline(Endpoint(host="127.0.0.1", port=6379), timeout=2)
    key = f"{redis_prefix}pipeline"
    try:
        assert await pipeline.execute(("SET", key, "é", "PX", 60_000)) == b"OK"
        replies = await pipeline.execute_many(
            [("GET", key), ("INCR", key), ("STRLEN", key), ("DEL", key)]
        )
        assert replies[0] == "é".encode()
        assert type(replies[1]).__name__ == "ResponseError"  # in its place, not raised
        assert replies[2:] == [2, 1]
    finally:
        await pipeline.aclose()
