"""A separate process that races on shared jtis: ``python -m tests.store.sqlite_racer DB GO N [K]``.

Prints "ready" once its store is open, waits until the file GO exists, then issues
tokens for the K shared jtis (1 by default) concurrently, so that they go in one batch,
and prints the K answers (True or False) on one line, separated by spaces.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
import time

from trustpub.store.sqlite import SQLiteStore


def jti(index: int) -> bytes:
    suffix = "" if index == 0 else f"-{index}"
    return hashlib.sha256(f"https://issuer.example\nshared-jti{suffix}".encode()).digest()


def wait_for(path: str) -> None:
    deadline = time.monotonic() + 30
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.001)


async def race(db: str, go: str, n: int, count: int) -> None:
    store = SQLiteStore(db)
    await store.ping()
    print("ready", flush=True)
    await asyncio.to_thread(wait_for, go)
    expires = int(time.time()) + 600
    results = await asyncio.gather(
        *(
            store.issue(
                jti(i), expires, hashlib.sha256(f"token-{n}-{i}".encode()).digest(), b"r", expires
            )
            for i in range(count)
        )
    )
    print(" ".join(str(result) for result in results), flush=True)
    await store.aclose()


if __name__ == "__main__":
    count = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    asyncio.run(race(sys.argv[1], sys.argv[2], int(sys.argv[3]), count))
