"""The behaviour every store backend guarantees, run against each real backend."""

from __future__ import annotations

import asyncio
import hashlib
import time

import pytest

from tests.store.conftest import StoreFactory
from trustpub.store import Store

pytestmark = pytest.mark.anyio


def h(name: str) -> bytes:
    return hashlib.sha256(name.encode()).digest()


def later(seconds: int = 600) -> int:
    return int(time.time()) + seconds


def earlier(seconds: int = 600) -> int:
    return int(time.time()) - seconds


async def test_issued_token_is_found_by_its_hash(store: Store) -> None:
    assert await store.issue(h("jti"), later(), h("token"), b'{"r":1}', later())
    assert await store.lookup(h("token")) == b'{"r":1}'


async def test_unknown_token_is_not_found(store: Store) -> None:
    assert await store.lookup(h("never issued")) is None


async def test_replayed_jti_is_refused_and_nothing_is_stored(store: Store) -> None:
    assert await store.issue(h("jti"), later(), h("first"), b"first", later())
    assert not await store.issue(h("jti"), later(), h("second"), b"second", later())
    assert await store.lookup(h("second")) is None
    assert await store.lookup(h("first")) == b"first"


async def test_distinct_jtis_issue_independently(store: Store) -> None:
    assert await store.issue(h("jti-1"), later(), h("t1"), b"1", later())
    assert await store.issue(h("jti-2"), later(), h("t2"), b"2", later())
    assert await store.lookup(h("t1")) == b"1"
    assert await store.lookup(h("t2")) == b"2"


async def test_token_with_past_expiry_is_gone(store: Store) -> None:
    assert await store.issue(h("jti"), later(), h("token"), b"r", earlier())
    assert await store.lookup(h("token")) is None


async def test_jti_claim_still_holds_after_its_token_expired(store: Store) -> None:
    assert await store.issue(h("jti"), later(), h("token"), b"r", earlier())
    assert not await store.issue(h("jti"), later(), h("other"), b"r", later())


async def test_expired_jti_claim_no_longer_blocks(store: Store) -> None:
    assert await store.issue(h("jti"), earlier(), h("t1"), b"1", later())
    assert await store.issue(h("jti"), later(), h("t2"), b"2", later())
    assert await store.lookup(h("t2")) == b"2"


async def test_revoke_deletes_an_active_token(store: Store) -> None:
    await store.issue(h("jti"), later(), h("token"), b"r", later())
    assert await store.revoke(h("token"))
    assert await store.lookup(h("token")) is None
    assert not await store.revoke(h("token"))


async def test_revoke_of_unknown_token_is_false(store: Store) -> None:
    assert not await store.revoke(h("never issued"))


async def test_revoke_of_expired_token_is_false(store: Store) -> None:
    await store.issue(h("jti"), later(), h("token"), b"r", earlier())
    assert not await store.revoke(h("token"))


async def test_revoking_a_token_does_not_release_its_jti(store: Store) -> None:
    await store.issue(h("jti"), later(), h("token"), b"r", later())
    await store.revoke(h("token"))
    assert not await store.issue(h("jti"), later(), h("again"), b"r", later())


@pytest.mark.parametrize("bad", [0, -5, 1.5])
async def test_non_positive_or_fractional_expiry_is_a_caller_bug(store: Store, bad: int) -> None:
    with pytest.raises(ValueError, match="expiry"):
        await store.issue(h("jti"), bad, h("token"), b"r", later())
    with pytest.raises(ValueError, match="expiry"):
        await store.issue(h("jti"), later(), h("token"), b"r", bad)
    assert await store.issue(h("jti"), later(), h("token"), b"r", later())


async def test_namespace_pin_is_absent_until_set(store: Store) -> None:
    assert await store.get_namespace_pin("https://gitlab.com\ngroup/project") is None


async def test_namespace_pin_is_set_if_absent(store: Store) -> None:
    key = "https://gitlab.com\ngroup/project"
    assert await store.pin_namespace(key, "4242") == "4242"
    assert await store.pin_namespace(key, "6666") == "4242"
    assert await store.get_namespace_pin(key) == "4242"
    assert await store.get_namespace_pin("https://gitlab.com\nother/project") is None


async def test_concurrent_namespace_pins_agree_on_one_winner(store: Store) -> None:
    key = "https://gitlab.com\ngroup/project"
    results = await asyncio.gather(*(store.pin_namespace(key, str(i)) for i in range(20)))
    assert len(set(results)) == 1
    assert await store.get_namespace_pin(key) == results[0]


async def test_fifty_concurrent_issues_of_one_jti_store_exactly_one_token(store: Store) -> None:
    results = await asyncio.gather(
        *(
            store.issue(h("jti"), later(), h(f"token-{i}"), str(i).encode(), later())
            for i in range(50)
        )
    )
    assert results.count(True) == 1
    found = [await store.lookup(h(f"token-{i}")) for i in range(50)]
    winner = results.index(True)
    assert found[winner] == str(winner).encode()
    assert sum(value is not None for value in found) == 1


async def test_separate_connections_racing_on_one_jti_store_exactly_one_token(
    store_factory: StoreFactory,
) -> None:
    stores = [await store_factory() for _ in range(8)]
    results = await asyncio.gather(
        *(
            s.issue(h("jti"), later(), h(f"token-{i}"), b"r", later())
            for i, s in enumerate(stores)
            for _ in range(3)
        )
    )
    assert results.count(True) == 1


async def test_data_is_shared_between_connections(store_factory: StoreFactory) -> None:
    one, two = await store_factory(), await store_factory()
    await one.issue(h("jti"), later(), h("token"), b"r", later())
    await one.pin_namespace("k", "1")
    assert await two.lookup(h("token")) == b"r"
    assert await two.get_namespace_pin("k") == "1"
    assert await two.revoke(h("token"))
    assert await one.lookup(h("token")) is None


async def test_ping_succeeds_on_a_working_store(store: Store) -> None:
    await store.ping()
