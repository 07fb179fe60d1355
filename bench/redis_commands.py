"""CPU per Redis operation of the store and the rate limiter, as the service runs them.

    .venv/bin/python bench/redis_commands.py [--url redis://127.0.0.1:6379/0] [--repeats 5]

Runs on uvloop (as the service does) against a running Redis, in one process, each
operation at 1 and at 32 concurrent callers:

    lookup          ``RedisStore.lookup`` (a GET): introspection without a gate
    lookup_after    ``RedisStore.lookup_after``: the failed-authentication script and
                    the GET in one round trip, as introspection sends them
    rate limit      ``RateLimiter.exchange_from`` on the store (``limiter_for``): the
                    GCRA script, as every exchange runs it twice (by address, then by
                    repository)
    issue           ``RedisStore.issue``: the claim-and-store script of an exchange

Only public calls, so the same script measures any version of the store. Prints the
median CPU time (this process only, not Redis's) per operation over ``--repeats``
runs. Keys go under a fresh ``bench:`` prefix and are deleted at the end.

The numbers of the former pool path (redis-py's ``BlockingConnectionPool``, measured by
an earlier version of this script) are in ``trustpub.store.redis_pipeline``'s docstring.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import itertools
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
import uvloop

from trustpub.ratelimit import Limit, RateLimits, limiter_for
from trustpub.store import RedisStore

OPS_PER_RUN = 20_000


async def cpu_per_op(op: Callable[[int], Awaitable[object]], concurrency: int) -> float:
    """Microseconds of this process's CPU per ``op``, ``OPS_PER_RUN`` of them spread
    over ``concurrency`` tasks (after one unmeasured round, to connect and warm up)."""
    each = OPS_PER_RUN // concurrency
    numbers = itertools.count()  # each operation its own number (issue: its own jti)

    async def worker() -> None:
        for _ in range(each):
            await op(next(numbers))

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    started = time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return (time.process_time() - started) / (each * concurrency) * 1e6


async def main(url: str, repeats: int) -> None:
    prefix = f"bench:{uuid.uuid4().hex[:8]}:"
    admin = aioredis.Redis.from_url(url)
    store = RedisStore.from_url(f"{url}?allow_volatile=1", prefix=prefix)
    # The failed-authentication limit's own script, as introspection's gate sends it.
    limiter = limiter_for(
        store,
        RateLimits(
            exchange_per_client=Limit("exchange-client", 1_000_000_000, 60),
            failed_auth_per_client=Limit("failed-auth-client", 120, 60),
        ),
    )
    gate_call = limiter.auth_gate("192.0.2.1").call
    assert gate_call is not None
    token = hashlib.sha256(b"bench").digest()
    key = f"{prefix}token:{token.hex()}"
    await admin.set(key, b"x" * 300, ex=600)
    record = b'{"v": 1, "bench": "' + b"r" * 280 + b'"}'
    run = uuid.uuid4().hex

    async def issue(i: int) -> None:
        now = int(time.time())
        jti = hashlib.sha256(f"{run}:jti:{i}".encode()).digest()
        digest = hashlib.sha256(f"{run}:token:{i}".encode()).digest()
        assert await store.issue(jti, now + 120, digest, record, now + 60)

    ops: dict[str, Callable[[int], Awaitable[Any]]] = {
        "lookup": lambda i: store.lookup(token),
        "lookup_after": lambda i: store.lookup_after(token, *gate_call),
        "rate limit": lambda i: limiter.exchange_from(f"192.0.2.{i % 250}"),
        "issue": issue,
    }
    results: dict[tuple[str, int], list[float]] = {}
    try:
        for _ in range(repeats):
            for op_name, op in ops.items():
                for concurrency in (1, 32):
                    run = uuid.uuid4().hex
                    us = await cpu_per_op(op, concurrency)
                    results.setdefault((op_name, concurrency), []).append(us)
    finally:
        keys = [k async for k in admin.scan_iter(match=f"{prefix}*", count=1000)]
        for start in range(0, len(keys), 1000):
            await admin.delete(*keys[start : start + 1000])
        await admin.aclose()
        await store.aclose()

    print(f"CPU us per operation (median of {repeats} runs of {OPS_PER_RUN}), uvloop")
    print(f"{'operation':<16}{'1 caller':>10}{'32 callers':>12}")
    for op_name in ops:
        one = statistics.median(results[(op_name, 1)])
        many = statistics.median(results[(op_name, 32)])
        print(f"{op_name:<16}{one:>10.1f}{many:>12.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--repeats", type=int, default=5)
    options = parser.parse_args()
    uvloop.run(main(options.url, options.repeats))
