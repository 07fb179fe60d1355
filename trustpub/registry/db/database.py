"""``RegistryDB``: the registry's metadata (users and their API tokens, crates,
versions, owners), the one typed face of this package.

Each method is one read or one transaction (``queries``, ``writes``) run by an
``Engine``: connections, transactions, guards, and failures raised as
``StorageUnavailable``: ``sqlite.SQLiteEngine`` for a file (the default), or
``postgresql.PostgreSQLEngine`` for a ``postgresql://`` URL (replicas on several
hosts). Both run the same migrations, queries and writes. Blocking: call it from a
worker thread in async code.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Protocol, TypeVar

from trustpub.postgres import is_postgresql_url
from trustpub.registry.db import queries, writes
from trustpub.registry.db.postgresql import PostgreSQLEngine
from trustpub.registry.db.rows import (
    ApiToken,
    CrateRow,
    CrateState,
    NewVersion,
    OwnersChanged,
    User,
    VersionRow,
)
from trustpub.registry.db.sqlite import SQLiteEngine
from trustpub.registry.db.writes import Authorize, AuthorizePublish

T = TypeVar("T")


class Engine(Protocol):
    """What ``RegistryDB`` needs of a database engine."""

    def open(self) -> None:
        """Connect, create on first use, migrate (``schema.migrate``), check writable."""
        ...

    def close(self) -> None: ...

    def check_writable(self) -> None: ...

    def run(self, fn: Callable[[queries.Connection], T]) -> T:
        """Run ``fn`` with a connection; engine failures raise ``StorageUnavailable``."""
        ...

    def transaction(self, conn: queries.Connection) -> AbstractContextManager[None]:
        """A write transaction that holds the writer lock from its start."""
        ...


class RegistryDB:
    """The metadata database. ``open()`` before use, ``close()`` after.

    Refusals raise ``DataConflict`` errors; outages ``StorageUnavailable`` (and
    ``StorageFull``), never a bare ``sqlite3`` error.
    """

    def __init__(
        self,
        location: str | Path,
        *,
        busy_timeout: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``location``: a SQLite file path, or a ``postgresql://`` URL."""
        self._engine: Engine
        self._path: Path | None = None
        if isinstance(location, str) and is_postgresql_url(location):
            engine = PostgreSQLEngine(location, lock_timeout=busy_timeout)
            self.location = engine.location
            self._engine = engine
        else:
            self._path = Path(location).absolute()
            self.location = str(self._path)
            self._engine = SQLiteEngine(self._path, busy_timeout=busy_timeout)
        self._clock = clock

    @property
    def path(self) -> Path:
        """The SQLite file (``ValueError`` on PostgreSQL)."""
        if self._path is None:
            raise ValueError(f"{self.location} is not a file")
        return self._path

    # -- lifecycle -----------------------------------------------------------------------

    def open(self) -> None:
        """Create (first use), migrate and check the database; ``StorageUnavailable``
        if it cannot be written, ``SchemaTooNew`` if a newer trustpub migrated it."""
        self._engine.open()

    def close(self) -> None:
        self._engine.close()

    def check_writable(self) -> None:
        """Raise ``StorageUnavailable`` unless a write could be made now."""
        self._engine.check_writable()

    def now(self) -> int:
        return int(self._clock())

    def call(self, fn: Callable[[queries.Connection], T]) -> T:
        """Run ``fn`` with the engine's connection and guards (tests, maintenance)."""
        return self._engine.run(fn)

    def holding_write_lock(self, fn: Callable[[set[tuple[str, str]]], T]) -> T:
        """Run ``fn(published)`` while holding the writer lock, so no publish is in
        flight anywhere; ``published`` is every version as (crate name, number)."""

        def run(conn: queries.Connection) -> T:
            with self._engine.transaction(conn):
                return fn(queries.published_files(conn))

        return self._engine.run(run)

    # -- users and API tokens ------------------------------------------------------------

    def add_user(self, login: str) -> User:
        return self._write(lambda c, tx: writes.add_user(c, tx, login, self.now()))

    def users(self) -> list[User]:
        return self._engine.run(queries.users)

    def add_token(
        self,
        login: str,
        name: str,
        token_hash: bytes,
        scopes: Sequence[str],
        crates: Sequence[str],
        expires_at: int | None,
    ) -> ApiToken:
        return self._write(
            lambda c, tx: writes.add_token(
                c, tx, login, name, token_hash, scopes, crates, expires_at, self.now()
            )
        )

    def tokens(self, login: str | None = None) -> list[ApiToken]:
        return self._engine.run(lambda c: queries.tokens(c, login))

    def revoke_token(self, token_id: int) -> bool:
        return self._write(lambda c, tx: writes.revoke_token(c, tx, token_id, self.now()))

    def use_token(self, token_hash: bytes) -> ApiToken | None:
        """The active token with this hash (its last use recorded), else None."""
        return self._engine.run(lambda c: writes.use_token(c, token_hash, self.now()))

    # -- reading crates ------------------------------------------------------------------

    def crate(self, name: str) -> CrateRow | None:
        """The crate ``name`` denotes, up to case and ``-``/``_``."""
        return self._engine.run(lambda c: queries.crate(c, name))

    def crate_state(self, name: str) -> CrateState | None:
        """The crate ``name`` denotes and its owners, as stored now."""

        def read(conn: queries.Connection) -> CrateState | None:
            found = queries.crate(conn, name)
            return queries.state_of(conn, found) if found is not None else None

        return self._engine.run(read)

    def index_crate(self, lower_name: str) -> tuple[CrateRow, list[VersionRow]] | None:
        """The crate whose index file is ``lower_name`` (exact up to case), with its
        versions in publication order."""

        def read(conn: queries.Connection) -> tuple[CrateRow, list[VersionRow]] | None:
            found = queries.crate_by_index_name(conn, lower_name)
            return (found, queries.versions(conn, found.id)) if found is not None else None

        return self._engine.run(read)

    def crate_with_versions(self, name: str) -> tuple[CrateRow, list[VersionRow]] | None:
        def read(conn: queries.Connection) -> tuple[CrateRow, list[VersionRow]] | None:
            found = queries.crate(conn, name)
            return (found, queries.versions(conn, found.id)) if found is not None else None

        return self._engine.run(read)

    def version(self, name: str, num: str) -> VersionRow | None:
        def read(conn: queries.Connection) -> VersionRow | None:
            found = queries.crate(conn, name)
            return queries.version(conn, found.id, num) if found is not None else None

        return self._engine.run(read)

    def owners(self, name: str) -> list[User] | None:
        def read(conn: queries.Connection) -> list[User] | None:
            found = queries.crate(conn, name)
            return queries.owner_users(conn, found.id) if found is not None else None

        return self._engine.run(read)

    def search(self, query: str, limit: int, offset: int) -> tuple[list[CrateRow], int]:
        return self._engine.run(lambda c: queries.search(c, query, limit, offset))

    def versions_of(self, crate_ids: Sequence[int]) -> dict[int, list[VersionRow]]:
        return self._engine.run(lambda c: {cid: queries.versions(c, cid) for cid in crate_ids})

    # -- changes (writes.py: one transaction each, ``authorize`` inside it) ---------------

    def publish(
        self,
        new: NewVersion,
        authorize: AuthorizePublish,
        place_file: Callable[[str], None],
        remove_file: Callable[[str], None],
    ) -> VersionRow:
        return self._write(
            lambda c, tx: writes.publish(c, tx, new, authorize, place_file, remove_file, self.now())
        )

    def set_yanked(self, name: str, num: str, yanked: bool, authorize: Authorize) -> None:
        self._write(
            lambda c, tx: writes.set_yanked(c, tx, name, num, yanked, authorize, self.now())
        )

    def change_owners(
        self, name: str, logins: Sequence[str], add: bool, authorize: Authorize
    ) -> OwnersChanged:
        return self._write(
            lambda c, tx: writes.change_owners(c, tx, name, logins, add, authorize, self.now())
        )

    def set_trustpub_only(self, name: str, value: bool, authorize: Authorize) -> CrateRow:
        return self._write(
            lambda c, tx: writes.set_trustpub_only(c, tx, name, value, authorize, self.now())
        )

    def _write(self, fn: Callable[[queries.Connection, writes.Transaction], T]) -> T:
        return self._engine.run(lambda c: fn(c, self._engine.transaction))
