"""The PostgreSQL store's own behaviour (the contract suite runs on it too): expired
rows purged, replicas and processes racing on jtis, failures named without the password,
batches of lookups (one query) and of issues (one transaction), a COMMIT cut on the wire
(``CommitCutter``, tests/pgproxy.py), cancelled callers."""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.pgproxy import CommitCutter, Mode
from trustpub.errors import StoreUnavailable
from trustpub.store import PostgreSQLStore, open_store, postgresql
from trustpub.store.postgresql import PURGE_INTERVAL
from trustpub.store.redis import OUTCOME_UNKNOWN

pytestmark = pytest.mark.anyio

REPO_ROOT = Path(__file__).resolve().parents[2]


def h(name: str) -> bytes:
    return hashlib.sha256(name.encode()).digest()


def later(seconds: int = 600) -> int:
    return int(time.time()) + seconds


def earlier(seconds: int = 600) -> int:
    return int(time.time()) - seconds


def transactions(url: str, table: str) -> int:
    """How many transactions wrote the table's rows (the server's own record: xmin)."""
    with psycopg.connect(url) as conn:
        row = conn.execute(f"SELECT count(DISTINCT xmin::text) FROM {table}").fetchone()  # noqa: S608
    assert row is not None
    return int(row[0])


@pytest.fixture
async def pg_store(pg_database: str) -> AsyncIterator[PostgreSQLStore]:
    store = PostgreSQLStore(pg_database, timeout=10)
    await store.ping()  # the pool open, the tables there
    yield store
    await store.aclose()


@pytest.fixture
def statements(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The text of every statement a store sends from now on, with psycopg's
    ``execute`` or the store's own wire calls for its batches (they still go to the
    server)."""
    sent: list[str] = []
    execute = psycopg.AsyncConnection.execute

    async def spy(self: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
        sent.append(str(query))
        return await execute(self, query, *args, **kwargs)

    monkeypatch.setattr(psycopg.AsyncConnection, "execute", spy)
    for name in ("_query", "_begin_query"):
        wire = getattr(postgresql, name)

        async def wire_spy(conn: Any, sql: bytes, *args: Any, _wire: Any = wire) -> Any:
            sent.append(sql.decode())
            return await _wire(conn, sql, *args)

        monkeypatch.setattr(postgresql, name, wire_spy)
    return sent


def lookups_sent(statements: list[str]) -> int:
    return sum("FROM trustpub_tokens WHERE hash" in s for s in statements)


async def until_blocked(url: str, backends: int = 1) -> None:
    """Until ``backends`` sessions of the database wait for a lock."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        for _ in range(2000):
            row = await (
                await conn.execute(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            ).fetchone()
            if row is not None and int(row[0]) >= backends:
                return
            await asyncio.sleep(0.005)
    raise AssertionError("no session waits for a lock")


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


async def test_concurrent_lookups_are_answered_by_one_query_each_with_its_own_answer(
    pg_store: PostgreSQLStore, statements: list[str]
) -> None:
    for i in range(10):
        assert await pg_store.issue(h(f"jti-{i}"), later(), h(f"t{i}"), f"r{i}".encode(), later())
    assert await pg_store.issue(h("jti-old"), later(), h("expired"), b"old", earlier())
    asked = [h(f"t{i}") for i in range(10)] + [h("t3"), h("t3"), h("unknown"), h("expired")]
    statements.clear()
    found = await asyncio.gather(*(pg_store.lookup(token) for token in asked))
    assert found == [f"r{i}".encode() for i in range(10)] + [b"r3", b"r3", None, None]
    assert lookups_sent(statements) == 1


async def test_lookups_asked_while_a_batch_is_in_flight_go_together_in_the_next(
    pg_store: PostgreSQLStore, pg_database: str, statements: list[str]
) -> None:
    for i in range(6):
        assert await pg_store.issue(h(f"jti-{i}"), later(), h(f"t{i}"), f"r{i}".encode(), later())
    statements.clear()
    async with await psycopg.AsyncConnection.connect(pg_database) as holder:
        # Holds off every read of the tokens until its transaction ends.
        await holder.execute("LOCK TABLE trustpub_tokens IN ACCESS EXCLUSIVE MODE")
        in_flight = [asyncio.ensure_future(pg_store.lookup(h(f"t{i}"))) for i in range(2)]
        await until_blocked(pg_database)
        waiting = [asyncio.ensure_future(pg_store.lookup(h(f"t{i}"))) for i in range(2, 6)]
        await asyncio.sleep(0.01)
        in_flight[0].cancel()
        waiting[1].cancel()
        await asyncio.sleep(0.01)
        await holder.rollback()
    assert await asyncio.wait_for(in_flight[1], 30) == b"r1"
    assert [await asyncio.wait_for(waiting[i], 30) for i in (0, 2, 3)] == [b"r2", b"r4", b"r5"]
    for cancelled in (in_flight[0], waiting[1]):
        with pytest.raises(asyncio.CancelledError):
            await cancelled
    assert lookups_sent(statements) == 2


async def test_failing_lookups_of_a_batch_all_fail_and_never_name_the_password() -> None:
    store = PostgreSQLStore("postgresql://trustpub:hunter2secret@127.0.0.1:1/tokens", timeout=1)
    results = await asyncio.gather(
        *(store.lookup(h(f"t{i}")) for i in range(5)), return_exceptions=True
    )
    await store.aclose()
    assert all(isinstance(r, StoreUnavailable) for r in results)
    assert all("hunter2secret" not in r.detail for r in results if isinstance(r, StoreUnavailable))


async def test_concurrent_issues_of_distinct_jtis_are_committed_in_one_transaction(
    pg_store: PostgreSQLStore, pg_database: str
) -> None:
    results = await asyncio.gather(
        *(
            pg_store.issue(h(f"jti-{i}"), later(), h(f"t{i}"), f"r{i}".encode(), later())
            for i in range(20)
        )
    )
    assert results == [True] * 20
    assert count_rows(pg_database, "trustpub_tokens") == 20
    assert transactions(pg_database, "trustpub_tokens") == 1
    assert transactions(pg_database, "trustpub_jtis") == 1
    for i in range(20):
        assert await pg_store.lookup(h(f"t{i}")) == f"r{i}".encode()


async def test_a_jti_twice_in_one_batch_goes_to_its_first_caller_alone(
    pg_store: PostgreSQLStore, pg_database: str
) -> None:
    results = await asyncio.gather(
        *(
            pg_store.issue(h("jti"), later(), h(f"t{i}"), f"r{i}".encode(), later())
            for i in range(5)
        ),
        pg_store.issue(h("other"), later(), h("t-other"), b"other", later()),
    )
    assert results == [True, False, False, False, False, True]
    assert await pg_store.lookup(h("t0")) == b"r0"
    assert [await pg_store.lookup(h(f"t{i}")) for i in range(1, 5)] == [None] * 4
    assert count_rows(pg_database, "trustpub_tokens") == 2
    assert transactions(pg_database, "trustpub_tokens") == 1


async def test_a_failure_in_a_batchs_transaction_fails_all_its_issues_and_stores_none(
    pg_store: PostgreSQLStore, pg_database: str
) -> None:
    assert await pg_store.issue(h("jti-0"), later(), h("taken"), b"first", later())
    # One issue of the batch breaks the transaction (its token's hash is taken).
    results = await asyncio.gather(
        *(
            pg_store.issue(h(f"jti-{i}"), later(), h("taken" if i == 3 else f"t{i}"), b"r", later())
            for i in range(1, 6)
        ),
        return_exceptions=True,
    )
    assert all(isinstance(r, StoreUnavailable) for r in results), results
    assert count_rows(pg_database, "trustpub_tokens") == 1
    assert count_rows(pg_database, "trustpub_jtis") == 1
    # No jti of the batch was used up.
    again = [
        pg_store.issue(h(f"jti-{i}"), later(), h(f"t{i}"), b"r", later()) for i in (1, 2, 4, 5)
    ]
    assert await asyncio.gather(*again) == [True] * 4


@pytest.fixture
def cutter() -> Iterator[CommitCutter]:
    proxy = CommitCutter()
    yield proxy
    proxy.close()


@pytest.mark.parametrize("mode", ["after", "before", "hold"])
async def test_a_batch_whose_commit_is_cut_is_read_back_or_answered_as_unknown(
    pg_database: str, cutter: CommitCutter, mode: Mode
) -> None:
    store = PostgreSQLStore(cutter.url(pg_database), timeout=10)
    await store.ping()
    assert await store.issue(h("used"), later(), h("t-used"), b"used", later())
    cutter.arm(mode)
    results = await asyncio.gather(
        store.issue(h("a"), later(), h("t-a"), b"a", later()),
        store.issue(h("b"), later(), h("t-b"), b"b", later()),
        store.issue(h("a"), later(), h("t-a2"), b"a2", later()),  # a again: loses to the first
        store.issue(h("used"), later(), h("t-used2"), b"used2", later()),  # a replay
        return_exceptions=True,
    )
    assert cutter.fired.is_set()
    if mode == "after":
        # The server committed; the answers lost on the wire are read back.
        assert list(results) == [True, True, False, False]
        assert await store.lookup(h("t-a")) == b"a"
        assert await store.lookup(h("t-b")) == b"b"
    else:
        # Not committed (or not yet: held): the claimed issues cannot be told.
        for unknown in results[:2]:
            assert isinstance(unknown, StoreUnavailable)
            assert unknown.detail == OUTCOME_UNKNOWN
        # The later caller of a: no token for it, whatever the COMMIT did.
        assert isinstance(results[2], StoreUnavailable)
        assert results[2].detail != OUTCOME_UNKNOWN
        # The replay was refused by a committed claim: that stands.
        assert results[3] is False
        cutter.release()
        # Rolled back: the jtis are free again.
        direct = PostgreSQLStore(pg_database, timeout=30)
        assert await direct.issue(h("a"), later(), h("t-a3"), b"a3", later())
        assert await direct.issue(h("b"), later(), h("t-b3"), b"b3", later())
        assert await direct.lookup(h("t-a")) is None
        await direct.aclose()
    await store.aclose()


async def test_cancelled_callers_do_not_break_the_batches_of_the_others(
    pg_store: PostgreSQLStore, pg_database: str
) -> None:
    async with await psycopg.AsyncConnection.connect(pg_database) as holder:
        # An uncommitted claim of "a": a batch claiming it waits for the holder.
        await holder.execute(
            "INSERT INTO trustpub_jtis (key, expires_at) VALUES (%s, %s)", (h("a"), later())
        )
        running = asyncio.ensure_future(pg_store.issue(h("a"), later(), h("t-a"), b"a", later()))
        beside = asyncio.ensure_future(pg_store.issue(h("e"), later(), h("t-e"), b"e", later()))
        await until_blocked(pg_database)
        waiting = {
            name: asyncio.ensure_future(
                pg_store.issue(h(name), later(), h(f"t-{name}"), name.encode(), later())
            )
            for name in ("b", "c", "d")
        }
        await asyncio.sleep(0.01)
        running.cancel()
        waiting["c"].cancel()
        await asyncio.sleep(0.01)
        await holder.rollback()
    # (A time limit: a batch broken by a cancelled caller would leave the others waiting.)
    assert await asyncio.wait_for(beside, 30) is True
    assert await asyncio.wait_for(waiting["b"], 30) is True
    assert await asyncio.wait_for(waiting["d"], 30) is True
    for cancelled in (running, waiting["c"]):
        with pytest.raises(asyncio.CancelledError):
            await cancelled
    # The running batch went on without its caller; the waiting caller was left out.
    assert await pg_store.lookup(h("t-a")) == b"a"
    assert await pg_store.lookup(h("t-c")) is None
    assert count_rows(pg_database, "trustpub_jtis") == 4
    assert transactions(pg_database, "trustpub_tokens") == 2  # the running batch and the next
    assert await pg_store.issue(h("c"), later(), h("t-c"), b"c", later())


async def run_racers(url: str, tmp_path: Path, processes: int, jtis: int) -> list[list[str]]:
    """Each process's answers for the shared jtis (``tests.store.pg_racer``)."""
    go = tmp_path / "go"
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.store.pg_racer",
            url,
            str(go),
            str(n),
            str(jtis),
            cwd=REPO_ROOT,
            env=env,
            stdout=asyncio.subprocess.PIPE,
        )
        for n in range(processes)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            assert await asyncio.wait_for(proc.stdout.readline(), 60) == b"ready\n"
        go.touch()
        outputs = [
            (await asyncio.wait_for(proc.communicate(), 60))[0].decode().split() for proc in procs
        ]
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    assert all(proc.returncode == 0 for proc in procs)
    return outputs


async def test_processes_racing_with_batches_of_claims_take_each_jti_once(
    pg_database: str, tmp_path: Path
) -> None:
    # Each process claims the same 40 jtis in one batch, each in its own order: each jti
    # goes to one process, and no batch fails (claims in key order cannot deadlock).
    outputs = await run_racers(pg_database, tmp_path, processes=6, jtis=40)
    for i in range(40):
        assert sorted(output[i] for output in outputs) == ["False"] * 5 + ["True"], outputs
    assert count_rows(pg_database, "trustpub_tokens") == 40


async def test_replicas_claiming_the_same_jtis_in_opposite_orders_do_not_deadlock(
    pg_database: str,
) -> None:
    # A holds "a" and waits for "h" (held by a third session); B holds "b" and waits
    # too. Once "h" is free, whichever gets it next needs the other's key: a deadlock,
    # had each batch claimed its jtis in its callers' order rather than in key order.
    one, two = PostgreSQLStore(pg_database, timeout=30), PostgreSQLStore(pg_database, timeout=30)
    await one.ping()
    await two.ping()

    def batch(store: PostgreSQLStore, names: str) -> list[asyncio.Future[bool]]:
        return [
            asyncio.ensure_future(
                store.issue(h(name), later(), h(f"{id(store)}-{name}"), b"r", later())
            )
            for name in names
        ]

    async with await psycopg.AsyncConnection.connect(pg_database) as holder:
        await holder.execute(
            "INSERT INTO trustpub_jtis (key, expires_at) VALUES (%s, %s)", (h("h"), later())
        )
        first = batch(one, "ahb")
        await until_blocked(pg_database, 1)
        second = batch(two, "bha")
        await until_blocked(pg_database, 2)
        await holder.rollback()
    answers = await asyncio.wait_for(asyncio.gather(*first, *second), 30)
    by_jti = {name: [answers[i], answers[5 - i]] for i, name in enumerate("ahb")}
    assert all(sorted(pair) == [False, True] for pair in by_jti.values()), by_jti
    assert count_rows(pg_database, "trustpub_tokens") == 3
    await one.aclose()
    await two.aclose()


def end_sessions(url: str) -> int:
    """Ends every other session of the database, as a restart of the server would."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    assert all(row[0] for row in rows)
    return len(rows)


async def test_batches_on_connections_lost_since_they_last_answered_go_again_on_checked_ones(
    pg_store: PostgreSQLStore, pg_database: str, statements: list[str]
) -> None:
    assert await pg_store.issue(h("jti-0"), later(), h("t0"), b"r0", later())
    assert await pg_store.lookup(h("t0")) == b"r0"
    # The pool's connections answered just now: the next batches take them unchecked.
    assert end_sessions(pg_database) >= 1
    statements.clear()
    found = await asyncio.wait_for(
        asyncio.gather(pg_store.lookup(h("t0")), pg_store.lookup(h("unknown"))), 30
    )
    assert list(found) == [b"r0", None]
    assert lookups_sent(statements) == 2  # on the lost connection, then on a checked one

    assert await pg_store.lookup(h("t0")) == b"r0"
    assert end_sessions(pg_database) >= 1
    results = await asyncio.wait_for(
        asyncio.gather(
            *(
                pg_store.issue(h(f"jti-{i}"), later(), h(f"t{i}"), f"r{i}".encode(), later())
                for i in range(1, 6)
            ),
            pg_store.issue(h("jti-0"), later(), h("t-replay"), b"replay", later()),
        ),
        30,
    )
    # Lost before its COMMIT was sent: rolled back, then once more, committed once.
    assert results == [True] * 5 + [False]
    assert count_rows(pg_database, "trustpub_tokens") == 6
    assert transactions(pg_database, "trustpub_tokens") == 2
    for i in range(6):
        assert await pg_store.lookup(h(f"t{i}")) == f"r{i}".encode()


@pytest.mark.parametrize("kind", ["lookup", "issue"])
async def test_a_batch_whose_second_try_fails_fails_every_caller_and_stores_nothing(
    pg_database: str, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    store = PostgreSQLStore(pg_database, timeout=2)
    assert await store.issue(h("jti-0"), later(), h("t0"), b"r0", later())
    assert await store.lookup(h("t0")) == b"r0"
    batch_run = store._batch_run
    tried: list[str] = []

    async def closing_run(what: str, op: Any, *, trust: bool = True) -> Any:
        if not trust:  # the second try: the store's pool closed under it
            tried.append(what)
            assert store._pool is not None
            await store._pool.close()
        return await batch_run(what, op, trust=trust)

    monkeypatch.setattr(store, "_batch_run", closing_run)
    end_sessions(pg_database)
    calls: list[Awaitable[object]] = []
    for i in range(5):
        if kind == "lookup":
            calls.append(store.lookup(h(f"t{i}")))
        else:
            calls.append(store.issue(h(f"jti-{i}"), later(), h(f"t{i}"), b"r", later()))
    results = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 30)
    assert all(isinstance(r, StoreUnavailable) for r in results), results
    assert tried == [kind]
    assert count_rows(pg_database, "trustpub_tokens") == 1
    assert count_rows(pg_database, "trustpub_jtis") == 1
    await asyncio.wait_for(store.aclose(), 30)


@pytest.mark.parametrize("kind", ["lookup", "issue"])
async def test_a_batch_whose_connection_is_cut_with_no_server_to_go_to_fails_every_caller(
    pg_database: str, cutter: CommitCutter, kind: str
) -> None:
    store = PostgreSQLStore(cutter.url(pg_database), timeout=2)
    assert await store.issue(h("jti-0"), later(), h("t0"), b"r0", later())
    assert await store.lookup(h("t0")) == b"r0"
    cutter.close()  # every connection cut, and no new one accepted
    calls: list[Awaitable[object]] = []
    for i in range(5):
        if kind == "lookup":
            calls.append(store.lookup(h(f"t{i}")))
        else:
            calls.append(store.issue(h(f"jti-{i}"), later(), h(f"t{i}"), b"r", later()))
    results = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 30)
    assert all(isinstance(r, StoreUnavailable) for r in results), results
    assert count_rows(pg_database, "trustpub_tokens") == 1
    await asyncio.wait_for(store.aclose(), 30)


async def test_a_batch_larger_than_a_sockets_buffer_goes_whole(
    pg_store: PostgreSQLStore, pg_database: str
) -> None:
    # MAX_BATCH issues of 16 KiB records: megabytes to send in one statement.
    records = [os.urandom(16384) for _ in range(postgresql.MAX_BATCH)]
    results = await asyncio.wait_for(
        asyncio.gather(
            *(
                pg_store.issue(h(f"jti-{i}"), later(), h(f"t{i}"), record, later())
                for i, record in enumerate(records)
            )
        ),
        60,
    )
    assert results == [True] * len(records)
    assert transactions(pg_database, "trustpub_tokens") == 1
    found = await asyncio.wait_for(
        asyncio.gather(*(pg_store.lookup(h(f"t{i}")) for i in range(len(records)))), 60
    )
    assert list(found) == records
