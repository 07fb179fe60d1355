from __future__ import annotations

from pathlib import Path

import pytest

from trustpub.cli.serve import redact_url, start_banner
from trustpub.config import DEFAULT_STORE, Settings


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///data/trustpub.db",  # relative: ./data/trustpub.db
        "sqlite:////var/lib/trustpub/trustpub.db",  # absolute
        "data/trustpub.db",
        "/var/lib/trustpub.db",
    ],
)
def test_sqlite_urls_and_paths_are_printed_as_given(url: str) -> None:
    assert redact_url(url) == url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:s3cret@cache.internal:6380/2", "redis://cache.internal:6380/2"),
        ("rediss://user:s3cret@cache.internal/0", "rediss://cache.internal/0"),
        ("redis://127.0.0.1:6379/0?prefix=tp:&password=s3cret", "redis://127.0.0.1:6379/0"),
        ("redis://:s3cret@[::1]:6379/0", "redis://[::1]:6379/0"),
        ("redis://:s3cret@cache.internal:nope/0", "redis://cache.internal/0"),
    ],
)
def test_redis_urls_lose_their_credentials_and_query(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert "s3cret" not in redact_url(url)


def test_the_banner_shows_the_default_store_as_configured() -> None:
    banner = start_banner(Settings(), 3)
    assert f"store {DEFAULT_STORE})" in banner
    assert "sqlite:///data/trustpub.db" in banner


@pytest.mark.parametrize(
    ("count", "words"), [(0, "0 policies"), (1, "1 policy"), (2, "2 policies")]
)
def test_the_banner_counts_policies_in_good_english(count: int, words: str) -> None:
    banner = start_banner(Settings(policy_dir=Path("policies")), count)
    assert f"(audience 'localhost:8080', {words} from policies, store " in banner


def test_the_banner_names_an_object_store_without_its_credentials() -> None:
    from trustpub.registry.storage import S3Settings, StorageSettings

    s3 = S3Settings(access_key_id="AKIA1", secret_access_key="s3cret-key")
    storage = StorageSettings("s3://crates/prod", "redirect", s3)
    banner = start_banner(Settings(registry_storage=storage), 1)
    assert banner.endswith("store sqlite:///data/trustpub.db, crate files s3://crates/prod)")
    assert "s3cret" not in banner
    assert "AKIA1" not in banner
