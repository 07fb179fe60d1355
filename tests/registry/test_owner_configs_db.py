"""Owner configs in the registry database: the live set across processes, pending
publishers' expiry and claim, and the settings that drive them."""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from trustpub.config import load_settings
from trustpub.errors import ConfigurationError
from trustpub.hop import Hop
from trustpub.oidc.issuers import DEFAULT_ISSUERS
from trustpub.policies import PolicySet
from trustpub.registry.configs import OwnerConfigs, _FreshReads, config_id
from trustpub.registry.db import RegistryDB
from trustpub.registry.db.configs import NewConfig
from trustpub.registry.db.errors import RegistryDataError
from trustpub.registry.db.queries import Connection
from trustpub.registry.db.sqlite import SQLiteEngine

GITHUB = DEFAULT_ISSUERS[0].url


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def new_config(crate: str, workflow: str = "release.yml") -> NewConfig:
    return NewConfig(
        provider="github",
        crate_name=crate,
        issuer=GITHUB,
        repository_owner="octo-org",
        owner_id="131804563",
        repository_name="octo-lib",
        workflow=workflow,
        environment=None,
        extensions={},
    )


def pending(conn: Connection) -> int | None:
    return None


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def dbs(tmp_path: Path, clock: Clock) -> tuple[RegistryDB, RegistryDB]:
    first = RegistryDB(tmp_path / "registry.db", clock=clock)
    second = RegistryDB(tmp_path / "registry.db", clock=clock)
    first.open()
    second.open()
    first.add_user("alice")
    return first, second


@pytest.mark.anyio
async def test_a_change_in_one_process_is_seen_by_the_next_exchange_of_another(
    dbs: tuple[RegistryDB, RegistryDB],
) -> None:
    writer, reader = dbs
    files = PolicySet(())
    live = OwnerConfigs(reader, DEFAULT_ISSUERS)

    async def next_exchange() -> PolicySet:
        # An exchange that arrives after the change: a request of its own, a task of
        # its own, begun once the change is committed.
        return await asyncio.ensure_future(live.combined(files))

    assert len(await next_exchange()) == 0
    alice = writer.users()[0]
    row = writer.create_config(new_config("fresh"), alice.id, pending, pending_ttl=3600)
    current = await next_exchange()
    [policy] = current.candidates(GITHUB, "Octo-Org/Octo-Lib")
    assert config_id(policy) == row.id
    assert policy.owners == ("alice",)
    assert {str(op) for op in policy.operations} == {"publish-new", "publish-update"}
    # Unchanged: the same set, not rebuilt.
    assert await next_exchange() is current
    writer.delete_config(row.id, lambda conn, found: None)
    assert len(await next_exchange()) == 0


@pytest.mark.anyio
async def test_exchanges_of_one_loop_turn_share_a_generation_read_and_later_ones_read_again(
    dbs: tuple[RegistryDB, RegistryDB], monkeypatch: pytest.MonkeyPatch
) -> None:
    writer, reader = dbs
    files = PolicySet(())
    reads: list[int | None] = []
    read_now = reader.config_generation_now

    def counted() -> int | None:
        value = read_now()
        reads.append(value)
        return value

    monkeypatch.setattr(reader, "config_generation_now", counted)
    live = OwnerConfigs(reader, DEFAULT_ISSUERS)
    assert len(await asyncio.ensure_future(live.combined(files))) == 0
    reads.clear()
    # Scheduled together (as the exchanges one store reply wakes): one read for all.
    together = await asyncio.gather(*(live.combined(files) for _ in range(5)))
    assert len(reads) == 1
    assert all(len(found) == 0 for found in together)
    # A change committed now is seen by every exchange scheduled after it.
    alice = writer.users()[0]
    writer.create_config(new_config("fresh"), alice.id, pending, pending_ttl=3600)
    after = await asyncio.gather(*(live.combined(files) for _ in range(3)))
    assert len(reads) == 2
    assert reads[1] != reads[0]
    assert all(len(found) == 1 for found in after)


@pytest.mark.anyio
async def test_a_pending_publisher_expires(
    dbs: tuple[RegistryDB, RegistryDB], clock: Clock
) -> None:
    db, _ = dbs
    alice = db.users()[0]
    db.create_config(new_config("fresh"), alice.id, pending, pending_ttl=3600)
    live = OwnerConfigs(db, DEFAULT_ISSUERS)
    assert len(await live.combined(PolicySet(()))) == 1
    clock.now += 3601
    assert db.live_configs()[1] == []
    assert db.configs_for(None, "fresh", pending=True) == []


def test_the_settings(tmp_path: Path) -> None:
    config = tmp_path / "trustpub.toml"
    config.write_text(
        "[trusted_publishing_configs]\n"
        'github_api_url = "http://127.0.0.1:9/"\n'
        'pending_ttl = "2d"\n'
        'github_api_token = "t0ken"\n'
        "[trusted_publishing_configs.github_api_urls]\n"
        '"https://ghe.example.com/_services/token" = "https://ghe.example.com/api/v3"\n'
    )
    settings = load_settings(config, environ={}).owner_configs
    assert settings.github_api_url == "http://127.0.0.1:9"
    assert settings.pending_ttl == 2 * 86400
    assert settings.github_api_urls == (
        ("https://ghe.example.com/_services/token", "https://ghe.example.com/api/v3"),
    )
    assert "t0ken" not in repr(settings)
    config.write_text('[trusted_publishing_configs]\ngithub_api_url = "ftp://x"\n')
    with pytest.raises(ConfigurationError, match="github_api_url"):
        load_settings(config, environ={})
    config.write_text("[trusted_publishing_configs]\nsurprise = 1\n")
    with pytest.raises(ConfigurationError, match="surprise"):
        load_settings(config, environ={})


@pytest.mark.anyio
@pytest.mark.parametrize("kept", [100_000, 1])
async def test_catching_up_by_changes_gives_the_set_a_full_read_gives(
    dbs: tuple[RegistryDB, RegistryDB], monkeypatch: pytest.MonkeyPatch, kept: int
) -> None:
    from trustpub.registry.db import configs

    # kept=1: the log no longer reaches back, and the reader reads everything instead.
    monkeypatch.setattr(configs, "CHANGES_KEPT", kept)
    writer, reader = dbs
    alice = writer.users()[0]
    files = PolicySet(())
    live = OwnerConfigs(reader, DEFAULT_ISSUERS)
    await live.combined(files)
    made = [
        writer.create_config(
            new_config(f"crate{i}", f"w{i}.yml"), alice.id, pending, pending_ttl=60
        )
        for i in range(5)
    ]
    await live.combined(files)
    writer.delete_config(made[1].id, lambda conn, found: None)
    writer.delete_config(made[3].id, lambda conn, found: None)
    writer.create_config(new_config("later"), alice.id, pending, pending_ttl=60)
    caught_up = await live.combined(files)
    _, rows = reader.live_configs()
    full = OwnerConfigs(reader, DEFAULT_ISSUERS).build(files, rows)
    assert sorted(p.id for p in caught_up) == sorted(p.id for p in full)
    assert len(caught_up) == 4


class GatedReads:
    """A blocking read that waits for the test's word: counts the reads begun, and
    answers the count at the moment it began."""

    def __init__(self) -> None:
        self.begun = 0
        self.release = threading.Event()
        self.fail = False

    def __call__(self) -> int:
        self.begun += 1
        mine = self.begun
        assert self.release.wait(10)
        if self.fail:
            raise RegistryDataError("the database went away")
        return mine


async def _until(condition: Callable[[], bool]) -> None:
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("never happened")


@pytest.mark.anyio
async def test_concurrent_exchanges_share_reads_that_began_after_they_asked() -> None:
    reads = GatedReads()
    shared = _FreshReads(functools.partial(Hop("test-reads").run, reads))
    first = asyncio.ensure_future(shared.get())
    await _until(lambda: reads.begun == 1)
    # These arrive while read 1 runs: it may predate a change they must see, so they
    # wait for read 2, which they share, whatever their number.
    later = [asyncio.ensure_future(shared.get()) for _ in range(20)]
    await asyncio.sleep(0.01)
    assert reads.begun == 1
    reads.release.set()
    assert await first == 1
    assert await asyncio.gather(*later) == [2] * 20
    assert reads.begun == 2
    # Nothing waiting: the next caller begins its own read.
    assert await shared.get() == 3


@pytest.mark.anyio
async def test_a_failed_shared_read_fails_its_callers_and_the_next_caller_reads_again() -> None:
    reads = GatedReads()
    shared = _FreshReads(functools.partial(Hop("test-reads").run, reads))
    reads.fail = True
    first = asyncio.ensure_future(shared.get())
    await _until(lambda: reads.begun == 1)
    waiting = [first, *(asyncio.ensure_future(shared.get()) for _ in range(3))]
    reads.release.set()
    for outcome in await asyncio.gather(*waiting, return_exceptions=True):
        assert isinstance(outcome, RegistryDataError)
    assert reads.begun == 2  # the first caller's read, and the one the others shared
    reads.fail = False
    assert await shared.get() == 3


@pytest.mark.anyio
async def test_a_caller_that_goes_away_does_not_cancel_the_read_others_wait_for() -> None:
    reads = GatedReads()
    shared = _FreshReads(functools.partial(Hop("test-reads").run, reads))
    first = asyncio.ensure_future(shared.get())
    await _until(lambda: reads.begun == 1)
    leaving = asyncio.ensure_future(shared.get())
    staying = asyncio.ensure_future(shared.get())
    await asyncio.sleep(0.01)
    leaving.cancel()
    reads.release.set()
    assert await first == 1
    assert await staying == 2
    assert leaving.cancelled()


@pytest.mark.anyio
async def test_on_sqlite_the_generation_is_read_on_the_loop_and_a_hitch_takes_the_hop(
    dbs: tuple[RegistryDB, RegistryDB], monkeypatch: pytest.MonkeyPatch
) -> None:
    writer, reader = dbs
    files = PolicySet(())
    hops: list[int] = []
    threaded = reader.config_generation

    def counted() -> int:
        hops.append(1)
        return threaded()

    monkeypatch.setattr(reader, "config_generation", counted)
    live = OwnerConfigs(reader, DEFAULT_ISSUERS)
    assert len(await live.combined(files)) == 0
    alice = writer.users()[0]
    row = writer.create_config(new_config("fresh"), alice.id, pending, pending_ttl=3600)
    assert len(await live.combined(files)) == 1
    writer.delete_config(row.id, lambda conn, found: None)
    assert len(await live.combined(files)) == 0  # the deletion, seen at once
    assert hops == []  # no worker thread for the generation
    engine = reader._engine
    assert isinstance(engine, SQLiteEngine)
    assert engine._reads._conn is not None
    engine._reads._conn.close()  # a hitch on the loop's read: an I/O error, say
    assert len(await live.combined(files)) == 0
    assert hops == [1]
