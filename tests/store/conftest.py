"""Store fixtures: the real backends.

Redis tests use the server at 127.0.0.1:6379 under a per-run unique key prefix and
delete every key under it afterwards. An unreachable Redis FAILS the tests (it is part
of the supported configuration), it does not skip them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from tests.isolation import new_redis_prefix
from tests.pg import pg_database, pg_session_database  # noqa: F401 (fixtures)
from trustpub.store import PostgreSQLStore, RedisStore, SQLiteStore, Store

REDIS_URL = "redis://127.0.0.1:6379/0"
# The shared test server runs without persistence: the stores under test opt in.
STORE_URL = f"{REDIS_URL}?allow_volatile=1"

StoreFactory = Callable[[], Awaitable[Store]]


async def delete_prefix(prefix: str) -> None:
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=500)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    prefix = new_redis_prefix()
    yield prefix
    await delete_prefix(prefix)


@pytest.fixture
async def redis_store(redis_prefix: str) -> AsyncIterator[RedisStore]:
    store = RedisStore.from_url(STORE_URL, prefix=redis_prefix)
    # Fails (not skips) when no Redis runs at 127.0.0.1:6379.
    await store.ping()
    yield store
    await store.aclose()


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    store = SQLiteStore(tmp_path / "store" / "trustpub.db")
    yield store
    await store.aclose()


@pytest.fixture(params=["sqlite", "redis", "postgresql"])
async def store_factory(
    request: pytest.FixtureRequest, tmp_path: Path, redis_prefix: str
) -> AsyncIterator[StoreFactory]:
    """Opens further stores on the same backend data (separate connections)."""
    opened: list[Store] = []

    async def make() -> Store:
        store: Store
        if request.param == "redis":
            store = RedisStore.from_url(STORE_URL, prefix=redis_prefix)
        elif request.param == "postgresql":
            store = PostgreSQLStore(request.getfixturevalue("pg_database"))
        else:
            store = SQLiteStore(tmp_path / "store" / "trustpub.db")
        opened.append(store)
        await store.ping()
        return store

    yield make
    for store in opened:
        await store.aclose()


@pytest.fixture
async def store(store_factory: StoreFactory) -> Store:
    return await store_factory()
