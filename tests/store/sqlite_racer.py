"""A separate process that races on one jti: ``python -m tests.store.sqlite_racer DB GO N``.

Prints "ready" once its store is open, waits until the file GO exists, then issues a
token for the shared jti and prints True or False.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
import time

from trustpub.store.sqlite import SQLiteStore

JTI = hashlib.sha256(b"https://issuer.example\nshared-jti").digest()


def wait_for(path: str) -> None:
    deadline = time.monotonic() + 30
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.001)


async def race(db: str, go: str, n: int) -> None:
    store = SQLiteStore(db)
    await store.ping()
    print("ready", flush=True)
    await asyncio.to_thread(wait_for, go)
    expires = int(time.time()) + 600
    token = hashlib.sha256(f"token-{n}".encode()).digest()
    print(await store.issue(JTI, expires, token, b"r", expires), flush=True)
    await store.aclose()


if __name__ == "__main__":
    asyncio.run(race(sys.argv[1], sys.argv[2], int(sys.argv[3])))
