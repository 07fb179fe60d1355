"""CPU per Redis command: the store's pipelined connection against redis-py's pool.

    .venv/bin/python bench/redis_commands.py [--url redis://127.0.0.1:6379/0] [--repeats 5]

Runs on uvloop (as the service does) against a running Redis, in one process, side by
side: a GET, and the store's ``lookup_after`` (a rate limit script and a GET in one
round trip, as introspection sends them), at 1 and at 32 concurrent callers. The pool
path is the store's command path before the pipeline (take a connection from a
BlockingConnectionPool, send, read, give it back), swapped into the same ``RedisStore``,
so everything but the way commands travel is the same; it runs once with redis-py's
hiredis parser (what it picks now that hiredis is installed) and once with its Python
parser (what it had before). Prints the median CPU time (this process only, not
Redis's) per operation over ``--repeats`` runs.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
import uvloop
from redis._parsers import _AsyncHiredisParser, _AsyncRESP2Parser
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ResponseError
from redis.typing import EncodableT

from trustpub.store import RedisStore

OPS_PER_RUN = 20_000


class PooledPath:
    """The store's former ``_send_and_read`` / ``_send_and_read_all`` (failure
    handling left out: nothing fails here)."""

    def __init__(self, url: str, parser: type) -> None:
        self.pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=64,
            timeout=2.0,
            socket_connect_timeout=2.0,
            socket_timeout=2.0,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=30,
            parser_class=parser,
        )

    async def send_and_read(self, args: tuple[EncodableT, ...], idempotent: bool) -> object:
        connection: AbstractConnection = await self.pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            await connection.send_command(*args)
            return await connection.read_response()
        finally:
            await self.pool.release(connection)

    async def send_and_read_all(self, commands: list[tuple[EncodableT, ...]]) -> list[object]:
        connection: AbstractConnection = await self.pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            await connection.send_packed_command(connection.pack_commands(commands))
            replies: list[object] = []
            for _ in commands:
                try:
                    replies.append(await connection.read_response())
                except ResponseError as exc:
                    replies.append(exc)
            return replies
        finally:
            await self.pool.release(connection)

    def install(self, store: RedisStore) -> None:
        store._send_and_read = self.send_and_read  # type: ignore[method-assign]
        store._send_and_read_all = self.send_and_read_all  # type: ignore[method-assign]

    async def aclose(self) -> None:
        await self.pool.aclose()


async def cpu_per_op(op: Callable[[int], Awaitable[object]], concurrency: int) -> float:
    """Microseconds of this process's CPU per ``op``, ``OPS_PER_RUN`` of them spread
    over ``concurrency`` tasks."""
    each = OPS_PER_RUN // concurrency

    async def worker(n: int) -> None:
        for i in range(each):
            await op(n * each + i)

    await asyncio.gather(*(worker(n) for n in range(concurrency)))  # warm up, connect
    started = time.process_time()
    await asyncio.gather(*(worker(n) for n in range(concurrency)))
    return (time.process_time() - started) / (each * concurrency) * 1e6


async def main(url: str, repeats: int) -> None:
    prefix = f"bench:{uuid.uuid4().hex[:8]}:"
    admin = aioredis.Redis.from_url(url)
    store = RedisStore.from_url(url, prefix=prefix)
    script = store.client.register_script("return ARGV[1]")
    await admin.script_load(script.script)
    token = hashlib.sha256(b"bench").digest()
    await admin.set(f"{prefix}token:{token.hex()}", b"x" * 300, ex=600)
    key = f"{prefix}token:{token.hex()}"

    paths: dict[str, PooledPath | None] = {
        "pipeline": None,
        "pool, hiredis parser": PooledPath(url, _AsyncHiredisParser),
        "pool, python parser": PooledPath(url, _AsyncRESP2Parser),
    }
    original = store._send_and_read, store._send_and_read_all
    ops: dict[str, Callable[[int], Awaitable[Any]]] = {
        "GET": lambda i: store._execute("lookup", "GET", key),
        "lookup_after": lambda i: store.lookup_after(token, script, [f"{prefix}rl"], ["0"]),
    }
    results: dict[tuple[str, str, int], list[float]] = {}
    try:
        for _ in range(repeats):
            for name, path in paths.items():
                if path is None:
                    store._send_and_read, store._send_and_read_all = original  # type: ignore[method-assign]
                else:
                    path.install(store)
                for op_name, op in ops.items():
                    for concurrency in (1, 32):
                        us = await cpu_per_op(op, concurrency)
                        results.setdefault((op_name, name, concurrency), []).append(us)
    finally:
        for path in paths.values():
            if path is not None:
                await path.aclose()
        await admin.delete(key)
        await admin.aclose()
        await store.aclose()

    print(f"CPU us per operation (median of {repeats} runs of {OPS_PER_RUN}), uvloop")
    print(f"{'operation':<14}{'path':<24}{'1 caller':>10}{'32 callers':>12}")
    for op_name in ops:
        for name in paths:
            one = statistics.median(results[(op_name, name, 1)])
            many = statistics.median(results[(op_name, name, 32)])
            print(f"{op_name:<14}{name:<24}{one:>10.1f}{many:>12.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--repeats", type=int, default=5)
    options = parser.parse_args()
    uvloop.run(main(options.url, options.repeats))
