"""Crate names: what may be registered, when two names are the same crate, and where a
crate's file lives in the sparse index."""

from __future__ import annotations

import re

from trustpub.registry.errors import bad_request
from trustpub.text import fold, shown

MAX_NAME_LENGTH = 64

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")

# Names a new crate may not take: the crates shipped with Rust (a dependency on one of
# them would shadow the real thing) and names Windows cannot use as file names (the
# index and the file store keep one file per crate).
RESERVED_NAMES = frozenset(
    {
        "alloc",
        "core",
        "proc_macro",
        "std",
        "test",
        "rustc",
        "cargo",
        "con",
        "prn",
        "aux",
        "nul",
        *(f"com{i}" for i in range(10)),
        *(f"lpt{i}" for i in range(10)),
    }
)


def canonical_name(name: str) -> str:
    """Two names are the same crate when they differ only in case or ``-``/``_``."""
    return fold(name).replace("-", "_")


def check_crate_name(name: str) -> None:
    """Refuse a name cargo users could not depend on, or that is reserved."""
    if not name:
        raise bad_request("The crate name is empty")
    if len(name) > MAX_NAME_LENGTH:
        raise bad_request(
            f"The crate name `{shown(name, MAX_NAME_LENGTH)}` is too long "
            f"(max {MAX_NAME_LENGTH} characters)"
        )
    if not (name[0].isascii() and name[0].isalpha()):
        raise bad_request(
            f"Invalid crate name `{shown(name)}`: the name must start with an ASCII letter"
        )
    if not _NAME.fullmatch(name):
        raise bad_request(
            f"Invalid crate name `{shown(name)}`: only ASCII letters, digits, `-` and `_` "
            "are allowed"
        )
    if canonical_name(name) in {canonical_name(r) for r in RESERVED_NAMES}:
        raise bad_request(f"The crate name `{name}` is reserved")


def index_path(name: str) -> str:
    """The crate's file in the sparse index, relative to the index root (lower-cased)."""
    lower = fold(name)
    if len(lower) == 1:
        return f"1/{lower}"
    if len(lower) == 2:
        return f"2/{lower}"
    if len(lower) == 3:
        return f"3/{lower[0]}/{lower}"
    return f"{lower[0:2]}/{lower[2:4]}/{lower}"
