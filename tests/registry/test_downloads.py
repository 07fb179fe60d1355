"""Download counts: counted in memory at each successful download, written in batches
(one transaction each), shown as crates.io shows them. Every test runs on SQLite and
PostgreSQL (tests/registry/conftest.py); the clock is injected, so days are exact."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.testclient import TestClient

from tests.registry.conftest import PUBLIC_URL, FakeAuthority, RegistryEnv, detail
from tests.registry.helpers import dep
from tests.registry.s3server import S3Server
from trustpub.registry import Registry
from trustpub.registry.db import RegistryDB
from trustpub.registry.downloads import DAY, FlushPolicy
from trustpub.registry.storage import StorageSettings
from trustpub.web import ErrorBoundary, exception_handlers

# 2026-03-10 23:59:00 UTC: a minute before a day boundary.
T0 = 1773187140.0
D0, D1 = "2026-03-10", "2026-03-11"
# Flushed when the test says so, unless a test asks otherwise.
MANUAL = FlushPolicy(interval=3600)


@dataclass
class Clock:
    now: float = T0

    def __call__(self) -> float:
        return self.now


@dataclass
class Env(RegistryEnv):
    clock: Clock = field(default_factory=Clock)

    def flush(self) -> bool:
        """Write the counts now (on the app's event loop, as its task does)."""
        written: bool = self.client.portal.call(self.registry.downloads.flush)  # type: ignore[union-attr]
        return written

    def download(self, name: str, vers: str, token: str | None = None) -> int:
        headers = {"Authorization": token} if token else {}
        path = f"/api/v1/crates/{name}/{vers}/download"
        status: int = self.client.get(path, headers=headers).status_code
        return status

    def get(self, path: str, token: str | None = None) -> Any:
        headers = {"Authorization": token} if token else {}
        response = self.client.get(path, headers=headers)
        assert response.status_code == 200, response.text
        return response.json()

    def counts(self, stage: str) -> float:
        return self.registry.metrics.download_counts.value(stage)


Make = Callable[..., Env]


@pytest.fixture
def make_env(tmp_path: Path, database: str | None) -> Iterator[Callable[..., Env]]:
    """A registry app on an injected clock: ``make_env(auth_required=..., policy=...)``."""
    stack = contextlib.ExitStack()

    def make(
        *,
        auth_required: bool = False,
        policy: FlushPolicy = MANUAL,
        storage: StorageSettings | None = None,
    ) -> Env:
        clock = Clock()
        authority = FakeAuthority()
        registry = Registry(
            tmp_path,
            PUBLIC_URL,
            clock=clock,
            database=database,
            auth_required=auth_required,
            download_flush=policy,
            storage=storage,
        )

        @contextlib.asynccontextmanager
        async def lifespan(app: Starlette) -> AsyncIterator[None]:
            async with registry.open(authority):
                yield

        app = Starlette(
            routes=registry.routes,
            middleware=[Middleware(ErrorBoundary)],
            exception_handlers=exception_handlers(),
            lifespan=lifespan,
        )
        client = stack.enter_context(TestClient(app))
        return Env(client, registry, authority, tmp_path, clock=clock)

    with stack:
        yield make


@pytest.fixture
def env(make_env: Make) -> Env:
    return make_env()


def published(env: Env, *versions: str, name: str = "demo") -> str:
    env.user("alice")
    alice = env.token("alice")
    for vers in versions:
        assert env.publish(alice, name, vers).status_code == 200
    return alice


@contextlib.contextmanager
def table_gone(env: Env) -> Iterator[Callable[[], None]]:
    """A real database failure: ``version_downloads`` is renamed away while the
    registry runs. Call the function given to bring it back (it is back after the
    block in any case: the PostgreSQL database outlives the test)."""
    away = True

    def rename(old: str, new: str) -> None:
        env.registry.db.call(lambda c: c.execute(f"ALTER TABLE {old} RENAME TO {new}"))

    def restore() -> None:
        nonlocal away
        if away:
            rename("version_downloads_away", "version_downloads")
            away = False

    rename("version_downloads", "version_downloads_away")
    try:
        yield restore
    finally:
        restore()


def version_ids(env: Env, name: str = "demo") -> dict[str, int]:
    found = env.get(f"/api/v1/crates/{name}/versions")["versions"]
    return {v["num"]: v["id"] for v in found}


def test_downloads_are_counted_in_memory_and_shown_after_a_flush(env: Env) -> None:
    published(env, "1.0.0", "1.1.0")
    ids = version_ids(env)
    for vers in ("1.0.0", "1.0.0", "1.0.0", "1.1.0"):
        assert env.download("demo", vers) == 200

    # Not written yet: the downloads did not wait for the database.
    assert env.registry.downloads.pending == 4
    assert env.get("/api/v1/crates/demo")["crate"]["downloads"] == 0

    assert env.flush() is True
    assert env.registry.downloads.pending == 0
    info = env.get("/api/v1/crates/demo")
    assert (info["crate"]["downloads"], info["crate"]["recent_downloads"]) == (4, 4)
    assert {v["num"]: v["downloads"] for v in info["versions"]} == {"1.1.0": 1, "1.0.0": 3}
    assert env.get("/api/v1/crates/demo/1.0.0")["version"]["downloads"] == 3
    (hit,) = env.get("/api/v1/crates?q=demo")["crates"]
    assert (hit["downloads"], hit["recent_downloads"]) == (4, 4)

    assert env.get("/api/v1/crates/demo/downloads") == {
        "version_downloads": [
            {"version": ids["1.0.0"], "downloads": 3, "date": D0},
            {"version": ids["1.1.0"], "downloads": 1, "date": D0},
        ],
        "meta": {"extra_downloads": []},
    }
    assert env.get("/api/v1/crates/demo/1.1.0/downloads") == {
        "version_downloads": [{"version": ids["1.1.0"], "downloads": 1, "date": D0}]
    }
    assert (env.counts("counted"), env.counts("flushed"), env.counts("dropped")) == (4, 4, 0)

    # A second batch adds to the day's row and to the totals.
    assert env.download("demo", "1.0.0") == 200
    assert env.flush() is True
    assert env.get("/api/v1/crates/demo/1.0.0")["version"]["downloads"] == 4
    assert env.get("/api/v1/crates/demo")["crate"]["downloads"] == 5


def test_batches_of_several_workers_add_up(env: Env, database: str | None, tmp_path: Path) -> None:
    # Each worker process writes its own batches to the one database.
    published(env, "1.0.0")
    vid = version_ids(env)["1.0.0"]
    other = RegistryDB(database or tmp_path / "registry.db")
    other.open()
    try:
        assert other.add_downloads({(vid, D0): 2}) == 2
        assert env.registry.db.add_downloads({(vid, D0): 3, (vid, D1): 1}) == 4
    finally:
        other.close()
    assert env.get("/api/v1/crates/demo/1.0.0")["version"]["downloads"] == 6
    days = env.get("/api/v1/crates/demo/1.0.0/downloads?before_date=2026-03-11")
    assert [(d["date"], d["downloads"]) for d in days["version_downloads"]] == [(D0, 5), (D1, 1)]

    # A version gone since it was counted is skipped; the rest of the batch is written.
    assert env.registry.db.add_downloads({(vid + 1000, D0): 7, (vid, D1): 1}) == 1
    assert env.get("/api/v1/crates/demo")["crate"]["downloads"] == 7


def test_refused_downloads_are_not_counted(make_env: Make) -> None:
    env = make_env(auth_required=True)
    alice = published(env, "1.0.0")
    assert env.download("demo", "9.9.9", alice) == 404
    assert env.download("nope", "1.0.0", alice) == 404
    assert env.download("demo", "1.0.0") == 401  # no token
    assert env.download("demo", "1.0.0", "tpreg_" + "x" * 40) == 401  # not a valid one
    assert env.registry.downloads.pending == 0

    assert env.download("demo", "1.0.0", alice) == 200
    assert env.flush() is True
    assert env.get("/api/v1/crates/demo", alice)["crate"]["downloads"] == 1
    assert env.counts("counted") == 1


def test_the_counts_of_a_private_registry_need_a_token(make_env: Make) -> None:
    env = make_env(auth_required=True)
    alice = published(env, "1.0.0")
    for path in ("/api/v1/crates/demo/downloads", "/api/v1/crates/demo/1.0.0/downloads"):
        anonymous = env.client.get(path)
        assert anonymous.status_code == 401, path
        assert "version_downloads" not in anonymous.text
        assert "version_downloads" in env.get(path, alice)


def test_unknown_crates_and_versions_are_404_and_bad_dates_400(env: Env) -> None:
    published(env, "1.0.0")
    for path, expected in (
        ("/api/v1/crates/nope/downloads", "crate `nope` does not exist"),
        ("/api/v1/crates/demo/2.0.0/downloads", "crate `demo` does not have a version `2.0.0`"),
        ("/api/v1/crates/nope/1.0.0/downloads", "crate `nope` does not have a version `1.0.0`"),
    ):
        response = env.client.get(path)
        assert response.status_code == 404, path
        assert detail(response) == expected
    for bad in (
        "2026-3-10",
        "2026-02-30",
        "20260310",
        "2026-03-10T00:00",
        "\uff12\uff10\uff12\uff16-03-10",
    ):
        response = env.client.get(f"/api/v1/crates/demo/1.0.0/downloads?before_date={bad}")
        assert response.status_code == 400, bad
        assert detail(response) == "`before_date` must be a date as YYYY-MM-DD"


def test_a_failed_flush_keeps_its_counts_for_the_next_one(env: Env) -> None:
    published(env, "1.0.0")
    assert env.download("demo", "1.0.0") == 200
    assert env.download("demo", "1.0.0") == 200

    with table_gone(env) as restore:
        assert env.flush() is False
        # Downloads go on, and are counted, while the counts cannot be written.
        assert env.download("demo", "1.0.0") == 200
        assert env.registry.downloads.pending == 3
        assert env.counts("flushed") == 0
        restore()
        assert env.flush() is True
    assert env.get("/api/v1/crates/demo")["crate"]["downloads"] == 3
    assert (env.counts("counted"), env.counts("flushed"), env.counts("dropped")) == (3, 3, 0)


def test_memory_is_bounded_and_what_is_dropped_is_counted(make_env: Make) -> None:
    env = make_env(policy=FlushPolicy(interval=3600, max_keys=1))
    published(env, "1.0.0", "2.0.0")
    with table_gone(env) as restore:
        assert env.download("demo", "1.0.0") == 200
        assert env.download("demo", "1.0.0") == 200  # the same (version, day): no new key
        assert env.download("demo", "2.0.0") == 200  # a new key beyond the bound: dropped
        assert env.flush() is False
        assert env.registry.downloads.pending == 2
        assert env.counts("dropped") == 1
        restore()
        assert env.flush() is True
    versions = {v["num"]: v["downloads"] for v in env.get("/api/v1/crates/demo")["versions"]}
    assert versions == {"1.0.0": 2, "2.0.0": 0}
    # Every download counted; each then written or dropped.
    assert (env.counts("counted"), env.counts("flushed"), env.counts("dropped")) == (3, 2, 1)


def test_recent_and_total_downloads_across_day_boundaries(env: Env) -> None:
    published(env, "1.0.0")
    vid = version_ids(env)["1.0.0"]
    assert env.download("demo", "1.0.0") == 200
    assert env.download("demo", "1.0.0") == 200
    env.clock.now = T0 + 120  # 00:01 the next day
    assert env.download("demo", "1.0.0") == 200
    assert env.flush() is True
    assert env.get("/api/v1/crates/demo/downloads")["version_downloads"] == [
        {"version": vid, "downloads": 2, "date": D0},
        {"version": vid, "downloads": 1, "date": D1},
    ]

    def crate() -> tuple[int, int]:
        found = env.get("/api/v1/crates/demo")["crate"]
        return found["downloads"], found["recent_downloads"]

    # 90 days, today included: D0 is the first of them 89 days later...
    env.clock.now = T0 + 89 * DAY
    assert crate() == (3, 3)
    # ...and out of them a day later; the total keeps it.
    env.clock.now = T0 + 90 * DAY
    assert crate() == (3, 1)
    assert env.get("/api/v1/crates/demo/downloads")["version_downloads"] == [
        {"version": vid, "downloads": 1, "date": D1}
    ]
    assert env.get("/api/v1/crates/demo/1.0.0/downloads")["version_downloads"] == [
        {"version": vid, "downloads": 1, "date": D1}
    ]
    # `before_date` ends the window on that day, included.
    assert env.get("/api/v1/crates/demo/1.0.0/downloads?before_date=2026-03-10") == {
        "version_downloads": [{"version": vid, "downloads": 2, "date": D0}]
    }


def test_the_five_highest_versions_are_listed_and_the_others_added_up(env: Env) -> None:
    # Published out of order: "highest" is semver precedence, not publication order.
    versions = ("1.0.0", "0.9.0", "1.10.0", "1.2.0", "2.0.0-rc.1", "1.9.0", "0.1.0")
    published(env, *versions)
    ids = version_ids(env)
    for vers in versions:
        assert env.download("demo", vers) == 200
    env.clock.now = T0 + 120
    assert env.download("demo", "0.1.0") == 200
    assert env.flush() is True

    found = env.get("/api/v1/crates/demo/downloads")
    listed = {d["version"] for d in found["version_downloads"]}
    assert listed == {ids[v] for v in ("2.0.0-rc.1", "1.10.0", "1.9.0", "1.2.0", "1.0.0")}
    assert all(d["date"] == D0 and d["downloads"] == 1 for d in found["version_downloads"])
    # 0.9.0 and 0.1.0 on the first day, 0.1.0 on the second.
    assert found["meta"] == {
        "extra_downloads": [{"date": D0, "downloads": 2}, {"date": D1, "downloads": 1}]
    }


def test_a_batch_is_written_without_waiting_for_the_interval(make_env: Make) -> None:
    env = make_env(policy=FlushPolicy(interval=3600, batch=3))
    published(env, "1.0.0")
    for _ in range(3):
        assert env.download("demo", "1.0.0") == 200
    # Written by the registry's own task (no flush called here).
    deadline = time.monotonic() + 10
    while env.get("/api/v1/crates/demo")["crate"]["downloads"] != 3:
        assert time.monotonic() < deadline, "the batch was not written"
        time.sleep(0.01)
    assert env.counts("flushed") == 3


def test_counts_waiting_at_shutdown_are_written(
    make_env: Make, database: str | None, tmp_path: Path
) -> None:
    env = make_env()
    published(env, "1.0.0")
    assert env.download("demo", "1.0.0") == 200
    assert env.download("demo", "1.0.0") == 200
    env.client.__exit__(None, None, None)  # the app's lifespan ends

    db = RegistryDB(database or tmp_path / "registry.db")
    db.open()
    try:
        found = db.crate("demo")
        assert found is not None
        assert found.downloads == 2
    finally:
        db.close()


def test_counts_that_cannot_be_written_at_shutdown_are_counted_as_dropped(
    make_env: Make,
) -> None:
    env = make_env()
    published(env, "1.0.0")
    assert env.download("demo", "1.0.0") == 200
    with table_gone(env):
        env.client.__exit__(None, None, None)  # the app's lifespan ends
        assert env.registry.downloads.pending == 0
        assert (env.counts("counted"), env.counts("flushed"), env.counts("dropped")) == (1, 0, 1)
    env.registry.close_storage()  # the restore opened it again


def test_a_batch_larger_than_one_statement_is_written_whole(env: Env) -> None:
    from trustpub.registry.db.downloads import CHUNK
    from trustpub.registry.downloads import utc_day

    published(env, "1.0.0", "2.0.0")
    ids = version_ids(env)
    days = CHUNK // 2 + 10  # two versions: more pairs than one statement takes
    batch = {(vid, utc_day(T0 - d * DAY)): 1 for vid in ids.values() for d in range(days)}
    assert len(batch) > CHUNK
    assert env.registry.db.add_downloads(batch) == 2 * days
    info = env.get("/api/v1/crates/demo")
    assert info["crate"]["downloads"] == 2 * days
    assert info["crate"]["recent_downloads"] == 2 * 90
    assert {v["num"]: v["downloads"] for v in info["versions"]} == {"1.0.0": days, "2.0.0": days}


def test_a_redirected_download_is_counted(make_env: Make, s3_server: S3Server) -> None:
    # S3 storage with `downloads = "redirect"`: the registry answers 302, never the file.
    env = make_env(storage=s3_server.storage(downloads="redirect"))
    published(env, "1.0.0")
    response = env.client.get("/api/v1/crates/demo/1.0.0/download", follow_redirects=False)
    assert response.status_code == 302
    assert env.client.get("/api/v1/crates/demo/2.0.0/download").status_code == 404
    assert env.flush() is True
    assert env.get("/api/v1/crates/demo/1.0.0")["version"]["downloads"] == 1


def test_search_sorts_by_total_and_by_recent_downloads(env: Env) -> None:
    """`sort=downloads` orders by all-time downloads, `sort=recent-downloads` by the
    last 90 days' (crates.io's two sorts); the name breaks ties."""
    alice = published(env, "1.0.0", name="old-hit")
    for name in ("new-hit", "a-quiet"):
        assert env.publish(alice, name, "1.0.0").status_code == 200
    for _ in range(3):
        assert env.download("old-hit", "1.0.0") == 200
    assert env.flush() is True
    env.clock.now = T0 + 100 * DAY  # old-hit's downloads are out of the recent window
    for _ in range(2):
        assert env.download("new-hit", "1.0.0") == 200
    assert env.flush() is True

    def order(sort: str) -> list[tuple[str, int, int]]:
        found = env.get(f"/api/v1/crates?sort={sort}")["crates"]
        return [(c["name"], c["downloads"], c["recent_downloads"]) for c in found]

    assert order("downloads") == [("old-hit", 3, 0), ("new-hit", 2, 2), ("a-quiet", 0, 0)]
    assert order("recent-downloads") == [
        ("new-hit", 2, 2),
        ("a-quiet", 0, 0),
        ("old-hit", 3, 0),
    ]


def test_reverse_dependencies_go_most_downloaded_first_with_their_downloads(env: Env) -> None:
    """As crates.io: the dependents by their crate's downloads, each dependency's
    `downloads` that crate's; a version's own dependencies show 0."""
    alice = published(env, "1.0.0", name="base")
    for name in ("a-dependent", "b-dependent"):
        response = env.publish(alice, name, "1.0.0", deps=[dep("base")])
        assert response.status_code == 200, response.text
    for _ in range(2):
        assert env.download("b-dependent", "1.0.0") == 200
    assert env.flush() is True
    found = env.get("/api/v1/crates/base/reverse_dependencies")
    assert [
        (v["crate"], d["downloads"])
        for d, v in zip(found["dependencies"], found["versions"], strict=True)
    ] == [
        ("b-dependent", 2),
        ("a-dependent", 0),
    ]
    own = env.get("/api/v1/crates/b-dependent/1.0.0/dependencies")["dependencies"]
    assert [d["downloads"] for d in own] == [0]
