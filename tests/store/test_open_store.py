"""open_store: which URL opens which backend, and which URLs are refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from trustpub.errors import ConfigurationError
from trustpub.store import RedisStore, SQLiteStore, open_store


def test_redis_url_opens_a_redis_store_with_the_default_prefix() -> None:
    store = open_store("redis://127.0.0.1:6379/0")
    assert isinstance(store, RedisStore)
    assert store.prefix == "trustpub:"


def test_rediss_url_opens_a_redis_store() -> None:
    assert isinstance(open_store("rediss://redis.internal:6380/1"), RedisStore)


def test_prefix_query_sets_the_key_prefix_and_is_not_passed_to_redis() -> None:
    store = open_store("redis://127.0.0.1:6379/2?prefix=registry-a:&socket_keepalive=true")
    assert isinstance(store, RedisStore)
    assert store.prefix == "registry-a:"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://127.0.0.1/0?prefix=", "must not be empty"),
        ("redis://127.0.0.1/0?prefix=a&prefix=b", "more than once"),
    ],
)
def test_bad_redis_prefix_is_a_configuration_error(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        open_store(url)


def test_sqlite_url_with_three_slashes_is_relative() -> None:
    store = open_store("sqlite:///data/trustpub.db")
    assert isinstance(store, SQLiteStore)
    assert store.path == Path.cwd() / "data" / "trustpub.db"


def test_sqlite_url_with_four_slashes_is_absolute(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/x.db")
    assert isinstance(store, SQLiteStore)
    assert store.path == tmp_path / "x.db"


@pytest.mark.parametrize("path", ["trustpub.db", "/var/lib/trustpub/trustpub.db"])
def test_plain_path_opens_a_sqlite_store(path: str) -> None:
    store = open_store(path)
    assert isinstance(store, SQLiteStore)
    assert store.path == Path(path).absolute()


def test_open_store_does_no_io(tmp_path: Path) -> None:
    open_store(str(tmp_path / "not" / "yet" / "there.db"))
    assert not (tmp_path / "not").exists()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("", "empty store URL"),
        ("   ", "empty store URL"),
        ("memcached://127.0.0.1:11211", "unsupported store URL scheme 'memcached'"),
        ("sqlite://", "invalid SQLite URL"),
        ("sqlite:///", "invalid SQLite URL"),
        ("sqlite://relative.db", "invalid SQLite URL"),
        ("sqlite:///x.db?mode=ro", "no query"),
        (":memory:", "needs a file path"),
    ],
)
def test_unusable_url_is_a_configuration_error(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        open_store(url)


def test_refusal_does_not_repeat_credentials() -> None:
    with pytest.raises(ConfigurationError) as info:
        open_store("mysql://admin:hunter2@db.internal/trustpub")
    assert "hunter2" not in info.value.detail


@pytest.mark.parametrize("url", ["redis://127.0.0.1:notaport/0", "redis://:pw@127.0.0.1:99999/0"])
def test_unparseable_redis_url_is_a_configuration_error_without_credentials(url: str) -> None:
    with pytest.raises(ConfigurationError, match="invalid redis store URL") as info:
        open_store(url)
    assert ":pw@" not in info.value.detail
