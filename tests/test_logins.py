"""Registry logins: one pattern, one case-insensitive comparison (ASCII only)."""

from __future__ import annotations

import pytest

from trustpub.logins import fold_login, is_login, unique_logins


def test_each_login_once_compared_ascii_case_insensitively() -> None:
    assert unique_logins(["Alice", "bob", "alice", "ALICE", "Bob", "carol"]) == (
        "Alice",
        "bob",
        "carol",
    )


def test_logins_the_database_keeps_apart_are_not_merged() -> None:
    # The login column folds ASCII only: these are two users and stay two owners.
    assert unique_logins(["\u00c9mile", "\u00e9mile"]) == ("\u00c9mile", "\u00e9mile")
    assert fold_login("\u00c9mile") != fold_login("\u00e9mile")
    # The Kelvin sign lowers to "k" in Unicode; to the database it is not "k".
    assert fold_login("\u212a") != fold_login("K")


@pytest.mark.parametrize("login", ["a", "alice", "Alice-1", "a.b_c", "9lives", "x" * 64])
def test_valid_logins(login: str) -> None:
    assert is_login(login)


@pytest.mark.parametrize("login", ["", "-alice", ".a", "a b", "al/ice", "x" * 65, "\u00e9mile"])
def test_invalid_logins(login: str) -> None:
    assert not is_login(login)
