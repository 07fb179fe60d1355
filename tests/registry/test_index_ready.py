"""Index files kept ready: built with each change, served from memory, the same on
every replica within ``MAX_STALENESS``, backfilled for a database from before."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.testclient import TestClient

from tests.pg import create_database, drop_database
from tests.registry.conftest import PUBLIC_URL, FakeAuthority
from tests.registry.helpers import body_for
from trustpub.registry import Registry, create_registry_app
from trustpub.registry.actors import SCOPES
from trustpub.registry.auth import generate_user_token, user_token_hash
from trustpub.registry.db import StorageUnavailable
from trustpub.registry.db.postgresql import PostgreSQLEngine
from trustpub.registry.db.queries import Connection
from trustpub.registry.db.schema import SQLITE_MIGRATIONS
from trustpub.registry.db.sqlite import SQLiteEngine
from trustpub.registry.index import MAX_STALENESS, MISS_RECHECK, ReadyIndex
from trustpub.registry.registry import READ_CHECK_TTL
from trustpub.web import ErrorBoundary, exception_handlers

T = TypeVar("T")
DEMO = "/index/de/mo/demo"


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class CountingEngine:
    """The registry's engine, its calls counted; ``closed`` makes each call fail as a
    database that cannot be reached does."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls = 0
        self.closed = False

    def run(self, fn: Callable[[Connection], T]) -> T:
        self.calls += 1
        if self.closed:
            raise StorageUnavailable("closed by the test")
        result: T = self.inner.run(fn)
        return result

    def transaction(self, conn: Connection) -> AbstractContextManager[None]:
        found: AbstractContextManager[None] = self.inner.transaction(conn)
        return found

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class Replica:
    """One registry process: its app, its clock, its engine (counted)."""

    def __init__(self, client: TestClient, registry: Registry, clock: Clock | None) -> None:
        self.client = client
        self.registry = registry
        self.clock = clock
        engine = CountingEngine(registry.db._engine)
        registry.db._engine = engine
        self.engine = engine

    def get(self, path: str = DEMO, **headers: str) -> httpx.Response:
        response: httpx.Response = self.client.get(path, headers=headers)
        return response

    def lines(self) -> list[dict[str, Any]]:
        response = self.get()
        assert response.status_code == 200, response.text
        return [json.loads(line) for line in response.text.splitlines()]

    def later(self, seconds: float) -> None:
        assert self.clock is not None
        self.clock.now += seconds


@pytest.fixture
def replicas(tmp_path: Path, database: str | None) -> Iterator[Callable[..., Replica]]:
    """A factory of registry processes sharing one database (and file store): each
    with a clock of its own (``clock=True``, its catch-ups then only on demand) or the
    real clock and background catch-up (``clock=False``)."""
    with ExitStack() as stack:

        def start(clock: bool = True, private: bool = False) -> Replica:
            app = create_registry_app(
                tmp_path,
                PUBLIC_URL,
                authority=FakeAuthority(),
                database=database,
                auth_required=private,
            )
            registry: Registry = app.state.registry
            fake = Clock() if clock else None
            if fake is not None:
                # No background catch-up within the test: only the staleness bound acts.
                registry.index = ReadyIndex(registry.db, poll_interval=3600, clock=fake)
            client = stack.enter_context(TestClient(app))
            return Replica(client, registry, fake)

        yield start


def api_token(replica: Replica) -> str:
    db = replica.registry.db
    if not any(u.login == "alice" for u in db.users()):
        db.add_user("alice")
    token = generate_user_token()
    db.add_token("alice", "test", user_token_hash(token), SCOPES, (), None)
    return token


def publish(replica: Replica, token: str, vers: str) -> None:
    response = replica.client.put(
        "/api/v1/crates/new", content=body_for("demo", vers), headers={"Authorization": token}
    )
    assert response.status_code == 200, response.text


def set_yanked(replica: Replica, token: str, vers: str, yanked: bool) -> None:
    path = f"/api/v1/crates/demo/{vers}/{'yank' if yanked else 'unyank'}"
    call = replica.client.delete if yanked else replica.client.put
    response = call(path, headers={"Authorization": token})
    assert response.status_code == 200, response.text


def test_the_index_is_served_without_a_database_query(
    replicas: Callable[..., Replica],
) -> None:
    one = replicas()
    token = api_token(one)
    publish(one, token, "1.0.0")
    first = one.get()
    assert first.status_code == 200
    config = one.get("/index/config.json")

    # The database unreachable: every index answer still comes from memory.
    one.engine.closed = True
    one.engine.calls = 0
    again = one.get()
    assert again.status_code == 200
    assert again.content == first.content
    assert again.headers["etag"] == first.headers["etag"]
    assert again.headers["last-modified"] == first.headers["last-modified"]
    assert one.get(**{"If-None-Match": first.headers["etag"]}).status_code == 304
    assert one.get(**{"If-Modified-Since": first.headers["last-modified"]}).status_code == 304
    assert one.get("/index/no/th/nothing").status_code == 404
    assert one.get("/index/config.json").content == config.content
    assert one.engine.calls == 0
    one.engine.closed = False

    # After a yank, an unyank and a publish: the new file, then from memory again.
    changes: tuple[Callable[[], None], ...] = (
        lambda: set_yanked(one, token, "1.0.0", True),
        lambda: set_yanked(one, token, "1.0.0", False),
        lambda: publish(one, token, "1.1.0"),
    )
    for change in changes:
        before = one.get().headers["etag"]
        change()
        changed = one.get()
        assert changed.headers["etag"] != before
        one.engine.closed = True
        one.engine.calls = 0
        assert one.get().content == changed.content
        assert one.get(**{"If-None-Match": changed.headers["etag"]}).status_code == 304
        assert one.engine.calls == 0
        one.engine.closed = False
    assert [(line["vers"], line["yanked"]) for line in one.lines()] == [
        ("1.0.0", False),
        ("1.1.0", False),
    ]


def test_the_fast_lane_answers_exactly_as_the_route_does(
    replicas: Callable[..., Replica],
) -> None:
    one = replicas()
    publish(one, api_token(one), "1.0.0")
    etag = one.get().headers["etag"]
    # The same registry behind the router alone: index_file answers every request there.
    routed = TestClient(
        Starlette(
            routes=one.registry.routes,
            middleware=[Middleware(ErrorBoundary)],
            exception_handlers=exception_handlers(),
        )
    )
    requests: list[dict[str, str]] = [
        {},
        {"If-None-Match": etag},
        {"If-None-Match": f'W/{etag}, "other"'},
        {"If-None-Match": '"other"'},
        {"If-Modified-Since": one.get().headers["last-modified"]},
        {"If-Modified-Since": "not a date"},
    ]
    for headers in requests:
        scope = {
            "path": DEMO,
            "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        }
        assert one.registry.fast_index(scope) is not None, headers  # the lane takes it
        fast = one.get(**headers)
        slow = routed.get(DEMO, headers=headers)
        assert fast.status_code == slow.status_code
        assert fast.headers.multi_items() == slow.headers.multi_items()
        assert fast.content == slow.content
    # Not the lane's business: the route answers (a miss, config.json, a private index).
    for path in ("/index/no/th/nothing", "/index/config.json", "/index/de/mo/dem"):
        assert one.registry.fast_index({"path": path, "headers": []}) is None
    private = replicas(private=True)
    assert private.registry.fast_index({"path": DEMO, "headers": []}) is None
    assert private.get().status_code == 401


def test_a_private_index_checks_a_token_once_a_second(
    replicas: Callable[..., Replica],
) -> None:
    one = replicas(private=True)
    token = api_token(one)
    publish(one, token, "1.0.0")
    assert one.get().status_code == 401
    assert one.get(Authorization=token).status_code == 200

    # Within READ_CHECK_TTL of its check, the token reads without a query...
    one.engine.closed = True
    one.engine.calls = 0
    assert one.get(Authorization=token).status_code == 200
    assert one.get("/index/config.json", Authorization=token).status_code == 200
    assert one.get().status_code == 401  # ...and no token is still no read
    assert one.engine.calls == 0
    one.engine.closed = False

    # Revoked: refused once the second is over.
    (listed,) = one.registry.db.tokens("alice")
    assert one.registry.db.revoke_token(listed.id)
    one.later(READ_CHECK_TTL + 0.01)
    refused = one.get(Authorization=token)
    assert refused.status_code == 401
    assert "invalid, expired or revoked" in refused.text


def test_a_replica_serves_another_ones_changes_within_the_bound(
    replicas: Callable[..., Replica],
) -> None:
    a, b = replicas(), replicas()
    token = api_token(a)
    publish(a, token, "1.0.0")
    # A new crate: B looks a missing file up again at most once per MISS_RECHECK...
    assert b.get().status_code == 404
    # ...so it finds the crate long before the staleness bound.
    b.later(MISS_RECHECK + 0.01)
    served = b.get()
    assert served.status_code == 200
    assert served.content == a.get().content
    b.engine.calls = 0
    assert b.get("/index/no/th/nothing").status_code == 404  # not again so soon
    assert b.engine.calls == 0

    # A new version: within the bound, B may still serve the file it read last...
    publish(a, token, "1.1.0")
    assert [line["vers"] for line in b.lines()] == ["1.0.0"]
    # ...past it, B catches up before answering.
    b.later(MAX_STALENESS + 0.01)
    assert [line["vers"] for line in b.lines()] == ["1.0.0", "1.1.0"]
    served = b.get()
    assert served.content == a.get().content
    etag = served.headers["etag"]
    assert a.get(**{"If-None-Match": etag}).status_code == 304

    # A yank through B: A's ETag no longer matches once A is past the bound.
    set_yanked(b, token, "1.0.0", True)
    assert b.lines()[0]["yanked"] is True
    assert a.get(**{"If-None-Match": etag}).status_code == 304  # within the bound
    a.later(MAX_STALENESS + 0.01)
    fresh = a.get(**{"If-None-Match": etag})
    assert fresh.status_code == 200
    assert json.loads(fresh.text.splitlines()[0])["yanked"] is True
    assert fresh.headers["etag"] == b.get().headers["etag"]


def test_a_replica_that_cannot_catch_up_refuses_rather_than_serve_stale(
    replicas: Callable[..., Replica],
) -> None:
    a = replicas()
    publish(a, api_token(a), "1.0.0")
    assert a.get().status_code == 200
    a.engine.closed = True
    a.later(MAX_STALENESS / 2)
    assert a.get().status_code == 200  # within the bound: from memory
    a.later(MAX_STALENESS)
    refused = a.get()
    assert refused.status_code == 503
    a.engine.closed = False
    assert a.get().status_code == 200


def test_background_catch_up_shows_a_change_on_another_replica_within_a_second(
    replicas: Callable[..., Replica],
) -> None:
    a, b = replicas(clock=False), replicas(clock=False)
    publish(a, api_token(a), "1.0.0")
    committed = time.monotonic()
    while b.get().status_code != 200:
        assert time.monotonic() - committed <= MAX_STALENESS + 0.5
        time.sleep(0.02)
    assert b.get().content == a.get().content


# -- the backfill of a database from before the index files were kept ------------------------

OLD = SQLITE_MIGRATIONS[:4]  # the schema before the index files


def fill_old_database(engine: SQLiteEngine | PostgreSQLEngine) -> None:
    """Users, a crate and its versions as a trustpub of schema 4 wrote them."""

    def fill(conn: Connection) -> None:
        with engine.transaction(conn):
            conn.execute("INSERT INTO users (login, created_at) VALUES ('alice', 100)")
            conn.execute(
                "INSERT INTO crates (name, canonical, created_at, updated_at, index_updated_at)"
                " VALUES ('Old-Lib', 'old-lib', 100, 300, 1700000000)"
            )
            for n, (num, yanked) in enumerate((("0.1.0", 1), ("0.2.0", 0))):
                entry = {"name": "Old-Lib", "vers": num, "deps": [], "cksum": f"{n:064x}"}
                conn.execute(
                    "INSERT INTO versions (crate_id, num, num_no_build, entry, cksum, size,"
                    " yanked, created_at, updated_at) VALUES (1, ?, ?, ?, ?, 10, ?, 100, 100)",
                    (num, num, json.dumps(entry), f"{n:064x}", yanked),
                )

    engine.open()
    try:
        engine.run(fill)
    finally:
        engine.close()


@pytest.fixture
def old_database(engine: str, tmp_path: Path) -> Iterator[str | None]:
    """A database at schema 4 holding a crate (None: the SQLite file of tmp_path)."""
    if engine == "sqlite":
        fill_old_database(SQLiteEngine(tmp_path / "registry.db", migrations=OLD))
        yield None
        return
    url = create_database()  # its own: the run's shared database is at the latest schema
    try:
        fill_old_database(PostgreSQLEngine(url, migrations=OLD))
        yield url
    finally:
        drop_database(url)


def test_a_database_from_before_gets_its_index_files_built(
    tmp_path: Path, old_database: str | None
) -> None:
    app = create_registry_app(tmp_path, PUBLIC_URL, database=old_database)
    with TestClient(app) as client:
        response = client.get("/index/ol/d-/old-lib")
        assert response.status_code == 200, response.text
        lines = [json.loads(line) for line in response.text.splitlines()]
        assert [(x["vers"], x["yanked"]) for x in lines] == [("0.1.0", True), ("0.2.0", False)]
        assert lines[0] == {
            "name": "Old-Lib",
            "vers": "0.1.0",
            "deps": [],
            "cksum": f"{0:064x}",
            "yanked": True,
        }
        # Last-Modified is the crate's, as it was served before.
        assert response.headers["last-modified"] == "Tue, 14 Nov 2023 22:13:20 GMT"
        registry: Registry = app.state.registry
        assert (
            registry.db.call(lambda c: c.execute("SELECT COUNT(*) FROM index_files").fetchone()[0])
            == 1
        )

        # An older trustpub, still running during the upgrade, unyanks as it did then
        # (no index file built): the next start of any process rebuilds the file.
        def unyank_as_before(conn: Connection) -> None:
            conn.execute("UPDATE versions SET yanked = 0")
            conn.execute("UPDATE crates SET index_updated_at = index_updated_at + 10")

        registry.db.call(unyank_as_before)
    app = create_registry_app(tmp_path, PUBLIC_URL, database=old_database)
    with TestClient(app) as client:
        lines = [json.loads(x) for x in client.get("/index/ol/d-/old-lib").text.splitlines()]
        assert [x["yanked"] for x in lines] == [False, False]


DOWNLOAD = "/api/v1/crates/demo/1.0.0/download"


def test_the_download_lane_answers_and_counts_exactly_as_the_route_does(
    replicas: Callable[..., Replica],
) -> None:
    one = replicas()
    token = api_token(one)
    publish(one, token, "1.0.0")
    registry = one.registry
    assert registry.hot_files is not None
    routed = TestClient(
        Starlette(
            routes=registry.routes,
            middleware=[Middleware(ErrorBoundary)],
            exception_handlers=exception_handlers(),
        )
    )
    lane = {"path": DOWNLOAD, "headers": []}
    assert registry.fast_download(lane) is None  # nothing kept before a first download
    streamed_max = registry.hot_files.max_file
    registry.hot_files.max_file = 0  # as a big file: streamed by the route, never kept
    streamed = routed.get(DOWNLOAD)
    assert streamed.status_code == 200
    assert registry.fast_download(lane) is None
    registry.hot_files.max_file = streamed_max
    first = one.get(DOWNLOAD)  # the route, which keeps it
    assert registry.fast_download(lane) is not None  # the lane takes the next one
    before = registry.downloads.pending
    fast = one.get(DOWNLOAD)
    assert registry.downloads.pending == before + 1  # counted as the route counts
    for slow in (first, streamed):
        assert fast.status_code == slow.status_code == 200
        assert fast.headers.multi_items() == slow.headers.multi_items()
        assert fast.content == slow.content
    assert fast.headers["content-type"] == "application/gzip"
    assert int(fast.headers["content-length"]) == len(fast.content) > 0

    # From memory: no database query.
    one.engine.closed = True
    one.engine.calls = 0
    assert one.get(DOWNLOAD).content == fast.content
    assert one.engine.calls == 0
    one.engine.closed = False

    # A change of the crate (a yank): the lane lets go, the route answers (crates.io
    # serves a yanked version's file too) and keeps it anew.
    set_yanked(one, token, "1.0.0", True)
    assert registry.fast_download(lane) is None
    yanked = one.get(DOWNLOAD)
    assert yanked.status_code == 200
    assert yanked.content == fast.content
    assert registry.fast_download(lane) is not None
    # Unknown versions and crates: the route's 404, never the lane.
    for path in ("/api/v1/crates/demo/9.9.9/download", "/api/v1/crates/nothing/1.0.0/download"):
        assert one.get(path).status_code == 404
        assert registry.fast_download({"path": path, "headers": []}) is None
    # A private registry keeps nothing: each download checks its token on the route.
    private = replicas(private=True)
    assert private.registry.hot_files is None
    assert private.registry.fast_download(lane) is None
