"""PostgreSQL for the tests: the server at 127.0.0.1:5432 (trust auth, user postgres).

Each test process (each pytest-xdist worker) creates its own database
(``trustpub_test_<run>_<uuid>``, tests/isolation.py) on first use and drops it at the
end; each test that uses it starts from empty tables. An unreachable
server FAILS the tests (PostgreSQL is a supported configuration), it does not skip them.
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from tests.isolation import new_database_name

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
# Kept by a reset: the registry's schema version (the tables stay migrated).
KEEP = ("trustpub_schema",)


def create_database() -> str:
    """A new, empty database; its URL."""
    name = new_database_name()
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"postgresql://postgres@127.0.0.1:5432/{name}"


def drop_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def empty_tables(url: str) -> None:
    """Every table's rows deleted and its ids restarted, as in a new database."""
    with psycopg.connect(url, autocommit=True) as conn:
        tables = [
            str(r[0])
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            ).fetchall()
            if r[0] not in KEEP
        ]
        if tables:
            names = ", ".join(f'"{t}"' for t in tables)
            conn.execute(f"TRUNCATE {names} RESTART IDENTITY CASCADE")


@pytest.fixture(scope="session")
def pg_session_database() -> Iterator[str]:
    url = create_database()
    yield url
    drop_database(url)


@pytest.fixture
def pg_database(pg_session_database: str) -> str:
    """The run's database, its tables emptied for this test."""
    empty_tables(pg_session_database)
    return pg_session_database
