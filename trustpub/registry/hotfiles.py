"""The ``.crate`` files downloaded most, kept in memory with what their answer needs.

A download through the router costs a database query (the version), a worker-thread
hop to open the file and one per chunk read: several times a trivial request
(bench/RESULTS.md). Most downloads are of a few versions (the latest ones of popular
crates), and ``.crate`` files are small, so a download answered once through the route
keeps here its bytes, its version's id (to count it) and its response headers; the
next one is answered past the router (``Registry.fast_download``).

Never stale: an entry remembers the generation of its crate's index file as it was
*before* the route read the version. Every change of a crate (publish, yank, unyank,
delete, rename of its files) builds its index file anew, so a later generation in the
kept-current index (``trustpub.registry.index``) drops the entry and the request goes
the usual way. Bounded: files up to ``MAX_FILE`` bytes only, ``MAX_BYTES`` in all, the
least recently used out first. Hand-written: a dictionary in insertion order is the
whole of it (``functools.lru_cache`` bounds a count, not bytes, and cannot drop one
entry).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

MAX_FILE = 1024 * 1024
"""Bigger files are streamed by the route each time, never kept."""
MAX_BYTES = 32 * 1024 * 1024
"""The bytes of all kept files, per process."""


@dataclass(frozen=True)
class HotFile:
    """A download's answer: the index file generation it is good for, the version to
    count, the headers as sent and the file."""

    index_path: str
    generation: int
    version_id: int
    headers: Sequence[tuple[bytes, bytes]]
    body: bytes = field(repr=False)


class HotFiles:
    """Kept answers by ``"{name}/{version}"`` as requested (see the module docstring)."""

    def __init__(self, max_bytes: int = MAX_BYTES, max_file: int = MAX_FILE) -> None:
        self.max_bytes = max_bytes
        self.max_file = max_file
        self._files: OrderedDict[str, HotFile] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._files)

    def get(self, key: str) -> HotFile | None:
        found = self._files.get(key)
        if found is not None:
            self._files.move_to_end(key)
        return found

    def keep(self, key: str, hot: HotFile) -> None:
        if len(hot.body) > self.max_file:
            return
        self.drop(key)
        self._files[key] = hot
        self._bytes += len(hot.body)
        while self._bytes > self.max_bytes:
            _, out = self._files.popitem(last=False)
            self._bytes -= len(out.body)

    def drop(self, key: str) -> None:
        out = self._files.pop(key, None)
        if out is not None:
            self._bytes -= len(out.body)
