"""A separate process that races on shared jtis: ``python -m tests.store.pg_racer URL GO N K``.

Prints "ready" once its store is open, waits until the file GO exists, then issues
tokens for the K shared jtis concurrently, in an order of its own (shuffled by N), so
that they go in one batch, and prints the K answers (True or False, in jti order) on
one line, separated by spaces; "unavailable" for a call that failed.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import sys
import time

from trustpub.errors import StoreUnavailable
from trustpub.store.postgresql import PostgreSQLStore


def jti(index: int) -> bytes:
    return hashlib.sha256(f"https://issuer.example\nshared-jti-{index}".encode()).digest()


def wait_for(path: str) -> None:
    deadline = time.monotonic() + 30
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.001)


async def race(url: str, go: str, n: int, count: int) -> None:
    store = PostgreSQLStore(url, timeout=30)
    await store.ping()
    print("ready", flush=True)
    await asyncio.to_thread(wait_for, go)
    expires = int(time.time()) + 600
    order = list(range(count))
    random.Random(n).shuffle(order)

    async def issue(i: int) -> str:
        token = hashlib.sha256(f"token-{n}-{i}".encode()).digest()
        try:
            return str(await store.issue(jti(i), expires, token, f"{n}".encode(), expires))
        except StoreUnavailable:
            return "unavailable"

    answers = dict(zip(order, await asyncio.gather(*(issue(i) for i in order)), strict=True))
    print(" ".join(answers[i] for i in range(count)), flush=True)
    await store.aclose()


if __name__ == "__main__":
    asyncio.run(race(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
