"""The registry database on both engines: the same rules hold on SQLite and PostgreSQL,
the migrations give both the same columns, and PostgreSQL's own guards (its version
check, its writer lock across connections, its failures named without a password)."""

from __future__ import annotations

import functools
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import psycopg
import pytest

from tests.pg import create_database, drop_database
from trustpub.registry.db import (
    SCHEMA_VERSION,
    NewVersion,
    RegistryDB,
    SchemaTooNew,
    StorageUnavailable,
    UserExists,
    VersionExists,
    VersionRow,
)
from trustpub.registry.db.postgresql import VERSION_TABLE, translate
from trustpub.registry.db.schema import SQLITE_MIGRATIONS, Migration, postgresql_statements

T = TypeVar("T")


@pytest.fixture
def any_db(tmp_path: Path, database: str | None) -> Iterator[RegistryDB]:
    db = RegistryDB(database or tmp_path / "registry.db")
    db.open()
    yield db
    db.close()


def open_twin(db: RegistryDB) -> RegistryDB:
    """Another RegistryDB on the same data: another process or replica."""
    twin = RegistryDB(_url_of(db) if db.location.startswith("postgresql") else db.path)
    twin.open()
    return twin


def _url_of(db: RegistryDB) -> str:
    engine = db._engine  # the URL (not its safe form) is the engine's
    url: str = engine.url  # type: ignore[attr-defined]
    return url


def new_version(crate: str, num: str, cksum: str = "0" * 64) -> NewVersion:
    return NewVersion(
        crate=crate,
        num=num,
        num_no_build=num,
        index_entry={"name": crate, "vers": num, "deps": [], "cksum": cksum},
        cksum=cksum,
        size=1,
        owner_logins=("alice",),
    )


def in_threads(calls: list[Callable[[], T]]) -> list[T | BaseException]:
    results: list[T | BaseException] = [RuntimeError("not run")] * len(calls)
    start = threading.Barrier(len(calls))

    def run(i: int) -> None:
        start.wait()
        try:
            results[i] = calls[i]()
        except BaseException as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_logins_are_unique_up_to_ascii_case_on_both_engines(any_db: RegistryDB) -> None:
    any_db.add_user("alice")
    with pytest.raises(UserExists):
        any_db.add_user("ALICE")
    # The Kelvin sign lowers to k in PostgreSQL's lower(): never the same login.
    any_db.add_user("kate")
    assert [u.login for u in any_db.users()] == ["alice", "kate"]
    assert any_db.tokens("\u212aate") == []
    assert any_db.index_crate("\u212aate") is None


def test_concurrent_publishes_of_one_version_keep_exactly_one(any_db: RegistryDB) -> None:
    any_db.add_user("alice")
    twins = [open_twin(any_db) for _ in range(4)]
    try:
        results = in_threads(
            [
                functools.partial(publish, t, new_version("demo", "1.0.0", f"{i}" * 64))
                for i, t in enumerate(twins)
            ]
        )
    finally:
        for t in twins:
            t.close()
    kept = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, VersionExists)]
    assert (len(kept), len(refused)) == (1, 3), results
    found = any_db.crate_with_versions("demo")
    assert found is not None
    assert [v.num for v in found[1]] == ["1.0.0"]


def test_concurrent_publishes_of_the_same_crate_record_it_once_and_refuse_the_others(
    any_db: RegistryDB,
) -> None:
    # The same bytes: a retry racing its first attempt. One records it; the others are
    # told it exists (as on crates.io, a version is never published twice).
    any_db.add_user("alice")
    twins = [open_twin(any_db) for _ in range(3)]
    try:
        results = in_threads(
            [functools.partial(publish, t, new_version("demo", "1.0.0")) for t in twins]
        )
    finally:
        for t in twins:
            t.close()
    assert len([r for r in results if isinstance(r, VersionRow)]) == 1, results
    assert len([r for r in results if isinstance(r, VersionExists)]) == 2, results
    found = any_db.crate_with_versions("demo")
    assert found is not None
    assert [v.num for v in found[1]] == ["1.0.0"]


def test_concurrent_publishes_of_distinct_versions_are_all_kept(any_db: RegistryDB) -> None:
    any_db.add_user("alice")
    any_db.publish(new_version("demo", "0.1.0"), _allow, _noop, _noop)
    twins = [open_twin(any_db) for _ in range(4)]
    try:
        results = in_threads(
            [
                functools.partial(publish, t, new_version("demo", f"1.{i}.0"))
                for i, t in enumerate(twins)
            ]
        )
    finally:
        for t in twins:
            t.close()
    assert not [r for r in results if isinstance(r, BaseException)], results
    found = any_db.crate_with_versions("demo")
    assert found is not None
    assert sorted(v.num for v in found[1]) == ["0.1.0", "1.0.0", "1.1.0", "1.2.0", "1.3.0"]


def publish(db: RegistryDB, new: NewVersion) -> object:
    return db.publish(new, _allow, _noop, _noop)


def _allow(state: object) -> None:
    return None


def _noop(crate: str) -> None:
    return None


# -- the schema on both engines ------------------------------------------------------------


def sqlite_columns(path: Path) -> dict[str, list[str]]:
    with sqlite3.connect(path) as conn:
        tables = [
            r[0]
            for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            if not r[0].startswith("sqlite_")
        ]
        return {t: [r[1] for r in conn.execute(f"PRAGMA table_info({t})")] for t in tables}


def postgresql_columns(url: str) -> dict[str, list[str]]:
    with psycopg.connect(url) as conn:
        found = conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns"
            " WHERE table_schema = 'public' AND table_name <> %s"
            " ORDER BY table_name, ordinal_position",
            (VERSION_TABLE,),
        ).fetchall()
    columns: dict[str, list[str]] = {}
    for table, column in found:
        columns.setdefault(str(table), []).append(str(column))
    return columns


def test_every_migration_gives_both_engines_the_same_columns(tmp_path: Path) -> None:
    lite = RegistryDB(tmp_path / "registry.db")
    lite.open()
    lite.close()
    url = create_database()
    try:
        pg = RegistryDB(url)
        pg.open()
        pg.close()
        assert postgresql_columns(url) == sqlite_columns(tmp_path / "registry.db")
        with psycopg.connect(url) as conn:
            row = conn.execute(f"SELECT version FROM {VERSION_TABLE}").fetchone()  # noqa: S608
        assert row is not None
        assert row[0] == SCHEMA_VERSION
    finally:
        drop_database(url)


def test_a_postgresql_database_from_a_newer_trustpub_is_refused(pg_database: str) -> None:
    db = RegistryDB(pg_database)
    db.open()
    db.add_user("alice")
    db.close()
    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute(f"UPDATE {VERSION_TABLE} SET version = %s", (SCHEMA_VERSION + 1,))  # noqa: S608
    try:
        with pytest.raises(SchemaTooNew, match="upgrade trustpub"):
            RegistryDB(pg_database).open()
    finally:
        with psycopg.connect(pg_database, autocommit=True) as conn:
            conn.execute(f"UPDATE {VERSION_TABLE} SET version = %s", (SCHEMA_VERSION,))  # noqa: S608


def test_replicas_starting_together_migrate_a_new_database_once() -> None:
    url = create_database()
    try:
        dbs = [RegistryDB(url) for _ in range(4)]
        results = in_threads([db.open for db in dbs])
        assert results == [None] * 4
        dbs[0].add_user("alice")
        assert [u.login for u in dbs[3].users()] == ["alice"]
        for db in dbs:
            db.close()
    finally:
        drop_database(url)


def test_an_unreachable_server_is_unavailable_and_never_named_with_its_password() -> None:
    # Port 1: nothing listens there.
    db = RegistryDB("postgresql://trustpub:hunter2secret@127.0.0.1:1/registry?connect_timeout=1")
    with pytest.raises(StorageUnavailable) as caught:
        db.open()
    db.close()
    assert "127.0.0.1:1/registry" in caught.value.reason
    assert "hunter2secret" not in caught.value.reason


def test_placeholders_are_numbered_outside_quotes_only() -> None:
    sql = "SELECT '?', \"a?\" FROM t WHERE a = ? AND b LIKE '%?%' AND c = ?"
    assert translate(sql) == "SELECT '?', \"a?\" FROM t WHERE a = $1 AND b LIKE '%?%' AND c = $2"
    assert translate("SELECT 'it''s ?' WHERE x = ?") == "SELECT 'it''s ?' WHERE x = $1"


def test_a_portable_migration_runs_on_postgresql_with_its_types_replaced() -> None:
    portable = Migration(
        9,
        "audit",
        (
            "CREATE TABLE audit (id INTEGER PRIMARY KEY, at INTEGER NOT NULL, body BLOB,"
            " score REAL) WITHOUT ROWID",
        ),
    )
    (statement,) = postgresql_statements(portable)
    assert statement == (
        "CREATE TABLE audit (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"
        " at BIGINT NOT NULL, body BYTEA, score DOUBLE PRECISION)"
    )
    sqlite_only = Migration(9, "names", ("CREATE TABLE n (x TEXT UNIQUE COLLATE NOCASE)",))
    with pytest.raises(ValueError, match=r"COLLATE NOCASE.*POSTGRESQL_VARIANTS"):
        postgresql_statements(sqlite_only)


def test_every_migration_has_postgresql_statements() -> None:
    # A migration appended without thought for PostgreSQL fails here, by its number.
    for migration in SQLITE_MIGRATIONS:
        assert postgresql_statements(migration)


@pytest.mark.anyio
async def test_the_generation_is_read_on_the_loop_on_postgresql_and_recovers_from_a_lost_connection(
    pg_database: str,
) -> None:
    db = RegistryDB(pg_database)
    db.open()
    try:
        first = await db.config_generation_async()
        assert first == db.config_generation()
        engine = db._engine
        reads = engine._loop_reads  # type: ignore[attr-defined]
        conn = reads._conn
        assert conn is not None
        # The server ends the session (a restart, a failover): that read fails with
        # StorageUnavailable, the next opens a new connection.
        with psycopg.connect(pg_database, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (conn.info.backend_pid,))
        with pytest.raises(StorageUnavailable):
            await db.config_generation_async()
        assert await db.config_generation_async() == first
        assert reads._conn is not conn
    finally:
        db.close()


def test_the_generation_read_on_the_loop_follows_the_loop_and_is_none_on_sqlite(
    tmp_path: Path, pg_database: str
) -> None:
    import asyncio

    sqlite = RegistryDB(tmp_path / "registry.db")
    sqlite.open()
    pg = RegistryDB(pg_database)
    pg.open()
    try:
        assert asyncio.run(sqlite.config_generation_async()) is None
        # One loop after another (each test's own): each read on its own connection.
        assert asyncio.run(pg.config_generation_async()) == pg.config_generation()
        assert asyncio.run(pg.config_generation_async()) == pg.config_generation()
    finally:
        sqlite.close()
        pg.close()


def test_the_generation_read_on_the_loop_fails_as_unavailable_without_a_server() -> None:
    import asyncio

    db = RegistryDB("postgresql://trustpub:secret-password@127.0.0.1:1/registry")
    with pytest.raises(StorageUnavailable) as caught:
        asyncio.run(db.config_generation_async())
    assert "secret-password" not in str(caught.value)
    db.close()
