"""The PostgreSQL store's own behaviour (the contract suite runs on it too): expired
rows purged, replicas racing on one jti, failures named without the password."""

from __future__ import annotations

import asyncio
import hashlib

import psycopg
import pytest

from trustpub.errors import StoreUnavailable
from trustpub.store import PostgreSQLStore, open_store
from trustpub.store.postgresql import PURGE_INTERVAL

pytestmark = pytest.mark.anyio


def h(name: str) -> bytes:
    return hashlib.sha256(name.encode()).digest()


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def count_rows(url: str, table: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()  # noqa: S608
    assert row is not None
    return int(row[0])


async def test_open_store_takes_a_postgresql_url(pg_database: str) -> None:
    for url in (pg_database, pg_database.replace("postgresql://", "postgres://", 1)):
        store = open_store(url)
        assert isinstance(store, PostgreSQLStore)
        await store.ping()
        await store.aclose()


async def test_expired_rows_are_purged_at_most_once_a_minute_on_issue(pg_database: str) -> None:
    clock = Clock(1_000_000)
    store = PostgreSQLStore(pg_database, clock=clock)
    await store.issue(h("jti-1"), 1_000_010, h("t1"), b"r", 1_000_010)

    clock.now = 1_000_020  # t1 expired, but the last purge (the first issue) is recent
    await store.issue(h("jti-2"), 1_100_000, h("t2"), b"r", 1_100_000)
    assert count_rows(pg_database, "trustpub_tokens") == 2
    assert await store.lookup(h("t1")) is None  # expired rows are invisible meanwhile

    clock.now = 1_000_000 + PURGE_INTERVAL + 1
    await store.issue(h("jti-3"), 1_100_000, h("t3"), b"r", 1_100_000)
    assert count_rows(pg_database, "trustpub_tokens") == 2
    assert count_rows(pg_database, "trustpub_jtis") == 2
    await store.aclose()


async def test_replicas_racing_on_one_jti_store_exactly_one_token(pg_database: str) -> None:
    # Separate stores: separate pools, as separate trustpub processes have.
    stores = [PostgreSQLStore(pg_database) for _ in range(6)]
    results = await asyncio.gather(
        *(
            s.issue(h("jti"), 2_000_000_000, h(f"token-{i}"), b"r", 2_000_000_000)
            for i, s in enumerate(stores)
        )
    )
    assert sorted(results) == [False] * 5 + [True]
    assert count_rows(pg_database, "trustpub_tokens") == 1
    for s in stores:
        await s.aclose()


async def test_an_unreachable_server_is_unavailable_and_never_named_with_its_password() -> None:
    store = PostgreSQLStore("postgresql://trustpub:hunter2secret@127.0.0.1:1/tokens", timeout=1)
    with pytest.raises(StoreUnavailable) as caught:
        await store.ping()
    await store.aclose()
    assert "127.0.0.1:1/tokens" in caught.value.detail
    assert "hunter2secret" not in caught.value.detail
