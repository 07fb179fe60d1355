"""The registry database's own rules, below the HTTP layer."""

from __future__ import annotations

from trustpub.registry.db import unique_logins


def test_new_crate_owner_logins_are_deduplicated_ascii_case_insensitively() -> None:
    assert unique_logins(["Alice", "bob", "alice", "ALICE", "Bob", "carol"]) == [
        "Alice",
        "bob",
        "carol",
    ]


def test_logins_the_database_keeps_apart_are_not_merged() -> None:
    # The login column folds ASCII only: these are two users and stay two owners.
    assert unique_logins(["\u00c9mile", "\u00e9mile"]) == ["\u00c9mile", "\u00e9mile"]
