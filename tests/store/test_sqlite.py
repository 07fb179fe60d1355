"""SQLite-specific behaviour: file layout, purging, several processes, failure and recovery."""

from __future__ import annotations

import asyncio
import hashlib
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from trustpub.errors import StoreUnavailable
from trustpub.store.sqlite import PURGE_INTERVAL, SCHEMA_VERSION, SQLiteStore

pytestmark = pytest.mark.anyio

REPO_ROOT = Path(__file__).resolve().parents[2]


def h(name: str) -> bytes:
    return hashlib.sha256(name.encode()).digest()


def later(seconds: int = 600) -> int:
    return int(time.time()) + seconds


def count_rows(db: Path, table: str) -> int:
    conn = sqlite3.connect(db)
    try:
        (n,) = conn.execute(f"SELECT count(*) FROM {table}").fetchone()  # noqa: S608
        return int(n)
    finally:
        conn.close()


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def test_open_creates_parent_directory_wal_file_and_versioned_schema(
    tmp_path: Path,
) -> None:
    db = tmp_path / "a" / "b" / "trustpub.db"
    store = SQLiteStore(db)
    await store.ping()
    await store.aclose()
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    finally:
        conn.close()
    assert {"tokens", "jtis", "namespace_pins"} <= tables


async def test_reopening_keeps_the_data(tmp_path: Path) -> None:
    db = tmp_path / "trustpub.db"
    first = SQLiteStore(db)
    await first.issue(h("jti"), later(), h("token"), b"r", later())
    await first.aclose()
    second = SQLiteStore(db)
    assert await second.lookup(h("token")) == b"r"
    assert not await second.issue(h("jti"), later(), h("other"), b"r", later())
    await second.aclose()


async def test_database_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "trustpub.db"
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    store = SQLiteStore(db)
    with pytest.raises(StoreUnavailable, match="newer than this trustpub supports"):
        await store.ping()
    await store.aclose()


async def test_expired_rows_are_purged_on_open(tmp_path: Path) -> None:
    db = tmp_path / "trustpub.db"
    clock = Clock(1_000_000)
    store = SQLiteStore(db, clock=clock)
    await store.issue(h("jti"), 1_000_100, h("token"), b"r", 1_000_050)
    await store.aclose()
    assert count_rows(db, "tokens") == 1

    reopened = SQLiteStore(db, clock=Clock(1_000_200))
    await reopened.ping()
    await reopened.aclose()
    assert count_rows(db, "tokens") == 0
    assert count_rows(db, "jtis") == 0


async def test_expired_rows_are_purged_at_most_once_a_minute_on_write(tmp_path: Path) -> None:
    db = tmp_path / "trustpub.db"
    clock = Clock(1_000_000)
    store = SQLiteStore(db, clock=clock)
    await store.issue(h("jti-1"), 1_000_010, h("t1"), b"r", 1_000_010)

    clock.now = 1_000_020  # t1 expired, but the last purge (on open) is recent
    await store.issue(h("jti-2"), 1_100_000, h("t2"), b"r", 1_100_000)
    assert count_rows(db, "tokens") == 2
    assert await store.lookup(h("t1")) is None  # expired rows are invisible meanwhile

    clock.now = 1_000_000 + PURGE_INTERVAL + 1
    await store.issue(h("jti-3"), 1_100_000, h("t3"), b"r", 1_100_000)
    assert count_rows(db, "tokens") == 2
    assert count_rows(db, "jtis") == 2
    await store.aclose()


async def run_racers(tmp_path: Path, processes: int, jtis: int) -> list[list[str]]:
    """Each process's answers for the shared jtis (``tests.store.sqlite_racer``)."""
    db = tmp_path / "trustpub.db"
    go = tmp_path / "go"
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.store.sqlite_racer",
            str(db),
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


async def test_processes_racing_on_one_jti_store_exactly_one_token(tmp_path: Path) -> None:
    outputs = await run_racers(tmp_path, processes=6, jtis=1)
    assert sorted(outputs) == [["False"]] * 5 + [["True"]]
    assert count_rows(tmp_path / "trustpub.db", "tokens") == 1


async def test_processes_racing_with_batches_of_issues_claim_each_jti_once(
    tmp_path: Path,
) -> None:
    # Each process issues the 20 shared jtis at once (group commits), racing the others.
    outputs = await run_racers(tmp_path, processes=4, jtis=20)
    assert all(len(answers) == 20 for answers in outputs)
    for index in range(20):
        assert [answers[index] for answers in outputs].count("True") == 1, index
    assert count_rows(tmp_path / "trustpub.db", "tokens") == 20
    assert count_rows(tmp_path / "trustpub.db", "jtis") == 20


async def test_write_locked_beyond_busy_timeout_is_unavailable_then_recovers(
    tmp_path: Path,
) -> None:
    db = tmp_path / "trustpub.db"
    store = SQLiteStore(db, busy_timeout=0.2)
    await store.issue(h("jti-1"), later(), h("t1"), b"r", later())
    # The wait before giving up is SQLite's busy timeout, as configured (in ms); timing
    # it here would fail on a loaded machine.
    assert store._conn is not None
    assert store._conn.execute("PRAGMA busy_timeout").fetchone() == (200,)
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreUnavailable, match="locked"):
            await store.issue(h("jti-2"), later(), h("t2"), b"r", later())
        # WAL: readers are not blocked by a writer.
        assert await store.lookup(h("t1")) == b"r"
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert await store.issue(h("jti-2"), later(), h("t2"), b"r", later())
    await store.aclose()


async def test_waiting_for_the_lock_does_not_block_the_event_loop(tmp_path: Path) -> None:
    db = tmp_path / "trustpub.db"
    store = SQLiteStore(db, busy_timeout=0.5)
    await store.ping()
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        for _ in range(10):
            await asyncio.sleep(0.02)
            ticks += 1

    try:
        results = await asyncio.gather(
            store.issue(h("jti"), later(), h("t"), b"r", later()), tick(), return_exceptions=True
        )
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert isinstance(results[0], StoreUnavailable)
    assert ticks == 10
    await store.aclose()


async def test_removed_directory_is_unavailable_not_recreated_and_recovers(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "data"
    store = SQLiteStore(directory / "trustpub.db")
    await store.issue(h("jti"), later(), h("token"), b"r", later())
    moved = tmp_path / "data.moved"
    directory.rename(moved)

    with pytest.raises(StoreUnavailable, match="missing"):
        await store.issue(h("jti-2"), later(), h("t2"), b"r", later())
    with pytest.raises(StoreUnavailable, match="missing"):
        await store.lookup(h("token"))
    # An empty new database would forget the claimed jtis: it must not appear.
    assert not directory.exists()

    moved.rename(directory)
    assert await store.lookup(h("token")) == b"r"
    assert not await store.issue(h("jti"), later(), h("again"), b"r", later())
    assert await store.issue(h("jti-2"), later(), h("t2"), b"r", later())
    await store.aclose()


async def test_deleted_database_file_is_not_silently_replaced(tmp_path: Path) -> None:
    db = tmp_path / "trustpub.db"
    store = SQLiteStore(db)
    await store.issue(h("jti"), later(), h("token"), b"r", later())
    for name in ("trustpub.db", "trustpub.db-wal", "trustpub.db-shm"):
        (tmp_path / name).unlink(missing_ok=True)
    with pytest.raises(StoreUnavailable, match="missing"):
        await store.issue(h("jti"), later(), h("again"), b"r", later())
    assert not db.exists()
    await store.aclose()


async def test_file_replaced_by_garbage_is_unavailable_then_recovers(tmp_path: Path) -> None:
    data, aside = tmp_path / "data", tmp_path / "aside"
    store = SQLiteStore(data / "trustpub.db")
    await store.issue(h("jti"), later(), h("token"), b"r", later())
    data.rename(aside)
    data.mkdir()
    (data / "trustpub.db").write_bytes(b"this is not a database" * 100)

    with pytest.raises(StoreUnavailable, match="not a database"):
        await store.lookup(h("token"))

    (data / "trustpub.db").unlink()
    data.rmdir()
    aside.rename(data)
    assert await store.lookup(h("token")) == b"r"
    await store.aclose()


@contextmanager
def unwritable(path: Path) -> Iterator[None]:
    """Make ``path`` unwritable, for root too (chmod alone does not bind root)."""
    path.chmod(0o444)
    immutable = False
    if os.geteuid() == 0:
        result = subprocess.run(["chattr", "+i", str(path)], capture_output=True, check=False)
        if result.returncode != 0:
            path.chmod(0o644)
            pytest.skip("running as root and chattr +i is not supported here")
        immutable = True
    try:
        yield
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(path)], check=True)
        path.chmod(0o644)


async def test_unwritable_file_is_unavailable_then_recovers(tmp_path: Path) -> None:
    db = tmp_path / "trustpub.db"
    first = SQLiteStore(db)
    await first.issue(h("jti"), later(), h("token"), b"r", later())
    await first.aclose()

    store = SQLiteStore(db)
    with unwritable(db):
        with pytest.raises(StoreUnavailable, match="SQLite database") as info:
            await store.issue(h("jti-2"), later(), h("t2"), b"r", later())
        assert "readonly" in info.value.detail or "unable to open" in info.value.detail
    assert await store.issue(h("jti-2"), later(), h("t2"), b"r", later())
    assert await store.lookup(h("token")) == b"r"
    await store.aclose()


# -- batches and group commit -------------------------------------------------------------


async def traced(store: SQLiteStore) -> list[str]:
    """The SQL statements the store's connection runs from now on (opened by a ping)."""
    await store.ping()
    assert store._conn is not None
    statements: list[str] = []
    store._conn.set_trace_callback(statements.append)
    return statements


def batch_sizes(store: SQLiteStore, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of calls in each batch (thread hop) the store runs from now on."""
    sizes: list[int] = []
    run_batch = store._run_batch

    def counted(calls: list[Any]) -> None:
        sizes.append(len(calls))
        run_batch(calls)

    monkeypatch.setattr(store, "_run_batch", counted)
    return sizes


async def test_concurrent_issues_share_one_transaction_and_all_succeed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SQLiteStore(tmp_path / "trustpub.db")
    statements = await traced(store)
    sizes = batch_sizes(store, monkeypatch)
    results = await asyncio.gather(
        *(store.issue(h(f"jti-{i}"), later(), h(f"t-{i}"), b"%d" % i, later()) for i in range(20))
    )
    assert results == [True] * 20
    # Called in one loop tick, so one batch: one transaction, one commit (one fsync).
    assert sizes == [20]
    assert statements.count("BEGIN IMMEDIATE") == 1
    assert statements.count("COMMIT") == 1
    assert [await store.lookup(h(f"t-{i}")) for i in range(20)] == [b"%d" % i for i in range(20)]
    await store.aclose()
    assert count_rows(tmp_path / "trustpub.db", "tokens") == 20


async def test_two_issues_of_one_jti_in_one_batch_store_exactly_one_token(
    tmp_path: Path,
) -> None:
    store = SQLiteStore(tmp_path / "trustpub.db")
    statements = await traced(store)
    results = await asyncio.gather(
        store.issue(h("jti"), later(), h("first"), b"first", later()),
        store.issue(h("other"), later(), h("t-other"), b"other", later()),
        store.issue(h("jti"), later(), h("second"), b"second", later()),
    )
    assert statements.count("COMMIT") == 1  # the same batch
    assert list(results) == [True, True, False]  # arrival order
    assert await store.lookup(h("first")) == b"first"
    assert await store.lookup(h("second")) is None
    assert await store.lookup(h("t-other")) == b"other"
    await store.aclose()
    assert count_rows(tmp_path / "trustpub.db", "tokens") == 2


async def test_a_large_batch_claims_free_and_expired_jtis_once_and_refuses_taken_ones(
    tmp_path: Path,
) -> None:
    db = tmp_path / "trustpub.db"
    store = SQLiteStore(db)
    statements = await traced(store)
    # Claimed before: jti-0..49 still taken, jti-50..99 claimed but expired.
    conn = sqlite3.connect(db)
    with conn:
        conn.executemany(
            "INSERT INTO jtis (key, expires_at) VALUES (?, ?)",
            [(h(f"jti-{i}"), later() if i < 50 else int(time.time()) - 10) for i in range(100)],
        )
    conn.close()
    statements.clear()
    # 450 issues (more than one statement's rows), jti-300..349 named twice.
    names = [f"jti-{i}" for i in range(400)] + [f"jti-{i}" for i in range(300, 350)]
    results = await asyncio.gather(
        *(
            store.issue(h(name), later(), h(f"t-{n}"), b"%d" % n, later())
            for n, name in enumerate(names)
        )
    )
    expected = [not (i < 50) for i in range(400)] + [False] * 50
    assert list(results) == expected
    assert statements.count("COMMIT") == 1
    # A statement per step of the batch (and per 200 rows), not two per issue.
    assert len(statements) < 12
    for n, issued in enumerate(expected):
        assert (await store.lookup(h(f"t-{n}"))) == (b"%d" % n if issued else None)
    await store.aclose()
    assert count_rows(db, "tokens") == 350
    assert count_rows(db, "jtis") == 400


@contextmanager
def file_size_limit(limit: int) -> Iterator[None]:
    """Writes beyond ``limit`` bytes fail with EFBIG in this process (RLIMIT_FSIZE)."""
    import resource
    import signal

    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the process dies
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


async def test_failed_commit_fails_every_issue_of_the_batch_and_stores_none(
    tmp_path: Path,
) -> None:
    db = tmp_path / "trustpub.db"
    store = SQLiteStore(db)
    assert await store.issue(h("before"), later(), h("t-before"), b"r", later())
    statements = await traced(store)
    wal = db.with_name("trustpub.db-wal")
    # The commit appends the batch's pages to the write-ahead log: make that fail.
    with file_size_limit(wal.stat().st_size):
        results = await asyncio.gather(
            *(store.issue(h(f"jti-{i}"), later(), h(f"t-{i}"), b"r", later()) for i in range(5)),
            return_exceptions=True,
        )
    # The statements ran, the COMMIT was tried and failed.
    assert statements.count("COMMIT") == 1
    assert all(isinstance(result, StoreUnavailable) for result in results), results
    assert len({id(result) for result in results}) == 5  # each caller its own exception
    assert store._conn is None  # dropped, as after any failure

    assert [await store.lookup(h(f"t-{i}")) for i in range(5)] == [None] * 5
    assert await store.lookup(h("t-before")) == b"r"
    assert count_rows(db, "tokens") == 1
    # Nothing was claimed: the same JWT ids can be exchanged now.
    assert all(
        [await store.issue(h(f"jti-{i}"), later(), h(f"t-{i}"), b"r", later()) for i in range(5)]
    )
    await store.aclose()


async def test_a_failing_read_does_not_fail_the_rest_of_its_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "trustpub.db"
    store = SQLiteStore(db)
    assert await store.issue(h("jti"), later(), h("token"), b"r", later())
    sizes = batch_sizes(store, monkeypatch)
    conn = sqlite3.connect(db)
    conn.execute("DROP TABLE namespace_pins")  # pin reads now fail
    conn.commit()
    conn.close()
    results = await asyncio.gather(
        store.lookup(h("token")),  # read on the loop's thread: in no batch
        store.get_namespace_pin("https://gitlab.com\ngroup/project"),
        store.ping(),
        store.issue(h("jti-2"), later(), h("t2"), b"r2", later()),
        store.ping(),
        return_exceptions=True,
    )
    assert sizes == [4]
    lookup, pin, ping, issued, again = results
    assert isinstance(pin, StoreUnavailable)
    assert "no such table" in pin.detail
    assert (lookup, ping, issued, again) == (b"r", None, True, None)
    assert await store.lookup(h("t2")) == b"r2"
    await store.aclose()


async def test_cancelled_callers_do_not_break_the_batches_of_the_others(tmp_path: Path) -> None:
    db = tmp_path / "trustpub.db"
    store = SQLiteStore(db, busy_timeout=30)
    statements = await traced(store)
    assert store._conn is not None
    began = asyncio.Event()
    loop = asyncio.get_running_loop()

    def trace(statement: str) -> None:  # in the worker thread
        statements.append(statement)
        if statement == "BEGIN IMMEDIATE":
            loop.call_soon_threadsafe(began.set)

    store._conn.set_trace_callback(trace)
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        # A batch runs (waiting for the writer lock the holder has)...
        running = asyncio.ensure_future(store.issue(h("a"), later(), h("t-a"), b"a", later()))
        await asyncio.wait_for(began.wait(), 10)
        # ... while the next one gathers.
        waiting = {
            name: asyncio.ensure_future(
                store.issue(h(name), later(), h(f"t-{name}"), name.encode(), later())
            )
            for name in ("b", "c", "d")
        }
        await asyncio.sleep(0.01)
        running.cancel()
        waiting["c"].cancel()
        await asyncio.sleep(0.01)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    # (A time limit: a batch broken by a cancelled caller would leave the others waiting.)
    assert await asyncio.wait_for(waiting["b"], 30) is True
    assert await asyncio.wait_for(waiting["d"], 30) is True
    for cancelled in (running, waiting["c"]):
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(cancelled, 30)
    assert statements.count("COMMIT") == 2  # the running batch and the next
    # The running batch went on without its caller; the waiting caller was left out.
    assert await store.lookup(h("t-a")) == b"a"
    assert await store.lookup(h("t-c")) is None
    assert await store.issue(h("c"), later(), h("t-c"), b"c", later())
    assert [await store.lookup(h(f"t-{name}")) for name in "bd"] == [b"b", b"d"]
    await store.aclose()


async def test_a_second_event_loop_using_the_store_meanwhile_is_served_too(
    tmp_path: Path,
) -> None:
    # trustpub uses a store from one loop; another (a test client's, say) is served
    # call by call, serialised with the first loop's batches.
    store = SQLiteStore(tmp_path / "trustpub.db")
    await store.ping()

    async def issue_all(side: str) -> list[bool]:
        return list(
            await asyncio.gather(
                store.issue(h("shared"), later(), h(f"shared-{side}"), b"r", later()),
                *(
                    store.issue(h(f"{side}-{i}"), later(), h(f"t-{side}-{i}"), b"r", later())
                    for i in range(10)
                ),
            )
        )

    other = asyncio.to_thread(asyncio.run, issue_all("other"))
    mine, theirs = await asyncio.wait_for(asyncio.gather(issue_all("mine"), other), 30)
    assert mine[1:] == theirs[1:] == [True] * 10
    assert [mine[0], theirs[0]].count(True) == 1
    await store.aclose()
    assert count_rows(tmp_path / "trustpub.db", "tokens") == 21


def test_a_store_serves_one_event_loop_after_another(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "trustpub.db")
    assert asyncio.run(store.issue(h("jti"), later(), h("token"), b"r", later()))

    async def issue_batched() -> bool:
        issued = await store.issue(h("jti-2"), later(), h("token-2"), b"r2", later())
        assert store._loop is asyncio.get_running_loop()  # batching moved to this loop
        return issued

    assert asyncio.run(issue_batched())
    assert asyncio.run(store.lookup(h("token"))) == b"r"
    asyncio.run(store.aclose())


async def test_a_lookup_reads_on_the_loop_without_waiting_for_a_writer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "trustpub.db"
    store = SQLiteStore(db, busy_timeout=30)
    assert await store.issue(h("jti"), later(), h("token"), b"r", later())
    sizes = batch_sizes(store, monkeypatch)
    # Another process is in the middle of a write, holding the writer lock.
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute(
        "INSERT INTO tokens (hash, record, expires_at) VALUES (?, ?, ?)",
        (h("uncommitted"), b"u", later()),
    )
    try:
        assert await asyncio.wait_for(store.lookup(h("token")), 1) == b"r"
        # It reads what is committed, only that.
        assert await asyncio.wait_for(store.lookup(h("uncommitted")), 1) is None
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert sizes == []  # no thread hop was taken
    await store.aclose()


async def test_lookups_of_one_loop_turn_look_at_the_file_once_and_a_replaced_file_is_seen_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import trustpub.sqlite_reads as sqlite_reads

    db = tmp_path / "trustpub.db"
    store = SQLiteStore(db)
    assert await store.issue(h("jti"), later(), h("token"), b"r", later())
    looked: list[Path] = []
    identity = sqlite_reads.file_identity

    def counted(path: Path) -> tuple[int, int] | None:
        looked.append(path)
        return identity(path)

    monkeypatch.setattr(sqlite_reads, "file_identity", counted)
    await asyncio.sleep(0)  # a new turn
    assert await asyncio.gather(*(store.lookup(h("token")) for _ in range(10))) == [b"r"] * 10
    assert looked == [db]  # one look for the ten reads of that turn
    # The file is replaced (a restore, say): the next turn's reads see it is not the
    # file the store has open, and none is answered from it on the loop.
    replacement = tmp_path / "other.db"
    other = SQLiteStore(replacement)
    assert await other.issue(h("jti2"), later(), h("token"), b"from-the-replacement", later())
    await other.aclose()
    os.replace(replacement, db)
    await asyncio.sleep(0)
    assert await store.lookup(h("token")) != b"from-the-replacement"
    assert len(looked) == 2
    await store.aclose()


async def test_a_revocation_is_seen_by_the_next_lookup_read_on_the_loop(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "trustpub.db")
    assert await store.issue(h("jti"), later(), h("token"), b"r", later())
    assert await store.lookup(h("token")) == b"r"
    other = SQLiteStore(tmp_path / "trustpub.db")  # another worker process's store
    assert await other.revoke(h("token"))
    assert await store.lookup(h("token")) is None
    await other.aclose()
    await store.aclose()


async def test_a_lookup_whose_read_on_the_loop_fails_takes_the_hop_instead(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SQLiteStore(tmp_path / "trustpub.db")
    assert await store.issue(h("jti"), later(), h("token"), b"r", later())
    assert await store.lookup(h("token")) == b"r"
    sizes = batch_sizes(store, monkeypatch)
    assert store._reads._conn is not None
    store._reads._conn.close()  # any failure of the loop's read: an I/O error, say
    assert await store.lookup(h("token")) == b"r"
    assert sizes == [1]  # answered through the worker thread
    assert await store.lookup(h("token")) == b"r"
    assert sizes == [1]  # and the next read is on the loop again, on a new connection
    await store.aclose()
