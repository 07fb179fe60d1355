"""Registry logins: what a login may look like, and when two spellings are one user.

The one rule for policy ``owners``, ``trustpub registry user add`` and the owners a
token names. Logins are compared case-insensitively in ASCII only, exactly as the
registry's ``users.login`` column (``COLLATE NOCASE``) compares them: a fold that also
lowered non-ASCII letters would merge two users (``É``, ``é``) the database keeps apart.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from trustpub.text import fold

__all__ = ["LOGIN_RULE", "fold_login", "is_login", "unique_logins"]

_LOGIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
LOGIN_RULE = "ASCII letters, digits, `.`, `_` and `-`, starting with a letter or digit, at most 64"


def is_login(value: str) -> bool:
    return _LOGIN.fullmatch(value) is not None


def fold_login(login: str) -> str:
    """The form two logins are compared in: ASCII letters lowered, nothing else."""
    return fold(login)


def unique_logins(logins: Iterable[str]) -> tuple[str, ...]:
    """Each login once, in first-seen order; ``Alice`` and ``alice`` are one user (the
    first spelling wins)."""
    seen: dict[str, str] = {}
    for login in logins:
        seen.setdefault(fold_login(login), login)
    return tuple(seen.values())
