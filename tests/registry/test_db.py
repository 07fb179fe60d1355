"""The registry database below the HTTP layer: migrations, the engine's guards, file
modes, its own rules, and that it imports nothing from the layers above it."""

from __future__ import annotations

import ast
import os
import sqlite3
import stat
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from trustpub.registry.db import (
    SCHEMA_VERSION,
    CrateNotFound,
    RegistryDB,
    SchemaTooNew,
    StorageUnavailable,
    UserExists,
)
from trustpub.registry.db.schema import Migration, check_ordered, migrate
from trustpub.registry.db.sqlite import SQLiteEngine


@pytest.fixture
def db(tmp_path: Path) -> RegistryDB:
    database = RegistryDB(tmp_path / "registry" / "registry.db")
    database.open()
    return database


def user_version(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        (version,) = conn.execute("PRAGMA user_version").fetchone()
    return int(version)


# -- migrations ------------------------------------------------------------------------


def test_a_new_database_is_at_the_latest_schema_version(db: RegistryDB) -> None:
    db.close()
    assert user_version(db.path) == SCHEMA_VERSION


def test_a_database_from_a_newer_trustpub_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "registry.db"
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    before = path.read_bytes()
    with pytest.raises(SchemaTooNew, match="upgrade trustpub") as caught:
        RegistryDB(path).open()
    assert (caught.value.found, caught.value.supported) == (SCHEMA_VERSION + 1, SCHEMA_VERSION)
    assert path.read_bytes() == before


class Keeper:
    """The SQLite engine's version keeping, on a plain connection."""

    def __init__(self) -> None:
        self.engine = SQLiteEngine(":memory:")

    def read_version(self, conn: sqlite3.Connection) -> int:
        return self.engine.read_version(conn)

    def write_version(self, conn: sqlite3.Connection, version: int) -> None:
        self.engine.write_version(conn, version)

    def transaction(self, conn: sqlite3.Connection) -> AbstractContextManager[None]:
        return self.engine.transaction(conn)


def execute(conn: sqlite3.Connection, statement: str) -> None:
    conn.execute(statement)


STEPS = (
    Migration(1, "a", ("CREATE TABLE a (x INTEGER)",)),
    Migration(2, "b", ("CREATE TABLE b (x INTEGER)", "INSERT INTO b VALUES (2)")),
    Migration(3, "c", ("ALTER TABLE a ADD COLUMN y TEXT",)),
)


def test_pending_migrations_run_in_order_from_the_stored_version(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "m.db", isolation_level=None)
    assert migrate(conn, STEPS[:1], Keeper(), execute) == 0
    # Version 1 is in place: only 2 and 3 run (running 1 again would fail: table exists).
    assert migrate(conn, STEPS, Keeper(), execute) == 1
    assert Keeper().read_version(conn) == 3
    assert conn.execute("SELECT x FROM b").fetchall() == [(2,)]
    assert [r[1] for r in conn.execute("PRAGMA table_info(a)")] == ["x", "y"]
    assert migrate(conn, STEPS, Keeper(), execute) == 3  # nothing left to do


def test_a_failing_migration_leaves_the_database_as_it_was(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "m.db", isolation_level=None)
    migrate(conn, STEPS[:1], Keeper(), execute)
    broken = (*STEPS[:2], Migration(3, "broken", ("ALTER TABLE missing ADD COLUMN y",)))
    with pytest.raises(sqlite3.OperationalError):
        migrate(conn, broken, Keeper(), execute)
    # Migration 2 ran in the same transaction as the failing 3: both are undone.
    assert Keeper().read_version(conn) == 1
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables == {"a"}


def test_migrations_must_be_numbered_in_order() -> None:
    with pytest.raises(ValueError, match=r"numbered 1\.\.N"):
        check_ordered([STEPS[0], STEPS[2]])
    with pytest.raises(ValueError, match=r"numbered 1\.\.N"):
        check_ordered([STEPS[1], STEPS[0]])


def test_a_database_stamped_by_the_old_code_opens_with_its_data(tmp_path: Path) -> None:
    # The code before the version check created the tables, then stamped version 1.
    path = tmp_path / "registry.db"
    first = RegistryDB(path)
    first.open()
    first.add_user("alice")
    first.close()
    again = RegistryDB(path)
    again.open()
    assert [u.login for u in again.users()] == ["alice"]
    again.close()


# -- guards ----------------------------------------------------------------------------------


def test_files_are_created_owner_only(tmp_path: Path) -> None:
    directory = tmp_path / "data" / "registry"
    db = RegistryDB(directory / "registry.db")
    db.open()
    db.add_user("alice")  # the WAL files exist once something was written
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    for name in ("registry.db", "registry.db-wal", "registry.db-shm"):
        assert stat.S_IMODE((directory / name).stat().st_mode) == 0o600, name
    db.close()


def test_a_deleted_database_is_unavailable_and_never_recreated(db: RegistryDB) -> None:
    db.add_user("alice")
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db.path}{suffix}").unlink(missing_ok=True)
    with pytest.raises(StorageUnavailable, match="missing"):
        db.add_user("bob")
    with pytest.raises(StorageUnavailable):
        db.users()
    with pytest.raises(StorageUnavailable):
        db.check_writable()
    assert not db.path.exists()


def test_a_moved_database_is_used_again_when_it_is_back(db: RegistryDB) -> None:
    db.add_user("alice")
    moved = db.path.with_name("moved.db")
    db.close()  # the WAL is folded into the file, so the file alone holds the data
    db.path.rename(moved)
    with pytest.raises(StorageUnavailable):
        db.users()
    moved.rename(db.path)
    assert [u.login for u in db.users()] == ["alice"]


def test_a_database_file_replaced_while_in_use_is_refused_until_a_restart(
    db: RegistryDB, tmp_path: Path
) -> None:
    db.add_user("alice")
    other = RegistryDB(tmp_path / "other.db")
    other.open()
    other.add_user("restored")
    other.close()
    os.replace(other.path, db.path)
    # The -wal beside it is still the old file's: using both would mix two databases.
    with pytest.raises(StorageUnavailable, match="replaced"):
        db.users()
    db.close()
    for suffix in ("-wal", "-shm"):
        Path(f"{db.path}{suffix}").unlink(missing_ok=True)
    restarted = RegistryDB(db.path)
    restarted.open()
    assert [u.login for u in restarted.users()] == ["restored"]
    restarted.close()


def test_storage_errors_are_facts_for_the_layer_above(db: RegistryDB) -> None:
    db.add_user("alice")
    with pytest.raises(UserExists) as exists:
        db.add_user("ALICE")
    assert exists.value.login == "ALICE"
    with pytest.raises(CrateNotFound) as missing:
        db.set_yanked("nope", "1.0.0", True, lambda state: None)
    assert missing.value.name == "nope"


# -- layering --------------------------------------------------------------------------------

ABOVE = (
    "trustpub.api",
    "trustpub.cli",
    "trustpub.registry.actors",
    "trustpub.registry.auth",
    "trustpub.registry.changes",
    "trustpub.registry.errors",
    "trustpub.registry.publish",
    "trustpub.registry.registry",
    "trustpub.registry.views",
    "starlette",
)


def test_the_database_package_imports_nothing_from_the_layers_above() -> None:
    package = Path(__file__).parents[2] / "trustpub" / "registry" / "db"
    for module in sorted(package.glob("*.py")):
        for node in ast.walk(ast.parse(module.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert not name.startswith(ABOVE), f"{module.name} imports {name}"
