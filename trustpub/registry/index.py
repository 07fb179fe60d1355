"""The sparse index served from memory: files built ahead, no database query per request.

Why this shape. The index is what a registry serves most (every ``cargo build`` asks
for the file of every dependency), and building a file per request (read the versions,
serialise them, hash them) cost most of each request. So a file is built once, when
its crate changes, in the very transaction of the change (``db.index_files``), and
stored with its ETag and Last-Modified in the database, which stays the one source of
truth every replica shares (SQLite for the worker processes of one host, PostgreSQL for
several hosts; a shared disk is not required there, and a file in the database commits
with the change that made it). Each process keeps:

- the *heads* of every file (path, ETag, Last-Modified, generation: a few hundred
  bytes a crate), all of them, so a 404 and a ``304 Not Modified`` are answered from
  memory;
- the bytes of the files asked for recently, in a cache bounded by ``cache_bytes``
  (least recently used first out); a file not in it is read by one query on its path
  (then kept), so memory does not grow with the registry.

Staleness. A background task reads the index generation every ``POLL_INTERVAL``
(0.5 s) and, when it moved, the heads of the files built since (one indexed query; a
moved file's cached bytes are no longer served, their generation no longer matching).
A request is answered from memory only while the last successful catch-up *started*
less than ``MAX_STALENESS`` (1 s) ago; otherwise the request catches up itself first
(one query; 503 if the database cannot be read). So a replica never serves an index
more than 1 s older than the database, and a change made through this process is
served by it at once (the write path catches up after its commit). A path with no file
catches up first too (at most once per ``MISS_RECHECK``, 50 ms), so a crate just
published through another replica is found at once rather than answered 404: cargo
treats a 404 as "no such crate", while an older file only lacks the newest version
for a moment. A polled number was
chosen over PostgreSQL's LISTEN/NOTIFY or SQLite's ``data_version``: it is the same
for both engines, survives lost connections without a resubscription protocol, and
costs one indexed read per process every half second.

Never torn: the bytes, the ETag and the Last-Modified of a response come from one
stored row (written whole in one transaction), never from two reads.

Static serving goes one step further: ``trustpub.registry.export`` writes the same
files to a directory or the object store for nginx, a CDN or S3 to serve.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

import anyio
import anyio.to_thread

from trustpub.registry.db import RegistryDB, StorageUnavailable
from trustpub.registry.db.index_files import IndexFile
from trustpub.web import paths, render_json

log = logging.getLogger("trustpub.registry")

POLL_INTERVAL = 0.5
"""Seconds between two catch-ups of the background task."""
MAX_STALENESS = 1.0
"""A file is served from memory only if the last catch-up started within this many
seconds; past it the request catches up first."""
MISS_RECHECK = 0.05
"""A path with no file is looked up again (a catch-up) if the last catch-up started more
than this many seconds ago: a new crate is found at once, and a flood of 404s costs at
most one query per this interval."""
CACHE_BYTES = 64 * 1024 * 1024
"""The file bytes kept in memory per process (heads are always all kept)."""


def config_json(public_url: str, auth_required: bool) -> bytes:
    """The index's ``config.json``: downloads and the API at ``public_url``."""
    base = public_url.rstrip("/")
    return render_json({"dl": f"{base}{paths.CRATES}", "api": base, "auth-required": auth_required})


class ReadyIndex:
    """The index files of one registry database, kept current in memory; see the
    module docstring. ``catch_up`` (blocking) reads the changes; ``keep_current``
    runs it every ``poll_interval``; the lookups never block."""

    def __init__(
        self,
        db: RegistryDB,
        *,
        poll_interval: float = POLL_INTERVAL,
        max_staleness: float = MAX_STALENESS,
        miss_recheck: float = MISS_RECHECK,
        cache_bytes: int = CACHE_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._db = db
        self.poll_interval = poll_interval
        self.max_staleness = max_staleness
        self.miss_recheck = miss_recheck
        self._cache_bytes = cache_bytes
        self.clock = clock
        self._heads: dict[str, IndexFile] = {}
        self._generation: int | None = None
        self._current_at = -math.inf
        self._catching_up = threading.Lock()
        # Touched on the event loop only (lookups and `keep`), never from a thread.
        self._bytes: OrderedDict[str, IndexFile] = OrderedDict()
        self._held = 0

    @property
    def generation(self) -> int | None:
        """The index generation this process has caught up with (None: not yet)."""
        return self._generation

    def reset(self) -> None:
        """Forget everything (the database was closed); the next catch-up reads all."""
        with self._catching_up:
            self._generation = None
            self._current_at = -math.inf
            self._heads = {}

    def catch_up(self) -> list[IndexFile]:
        """Blocking: read what changed since the last catch-up (everything, the first
        time); the heads of the files that changed. ``StorageUnavailable`` if the
        database cannot be read (nothing is changed then)."""
        with self._catching_up:
            started = self.clock()
            if self._generation is not None:
                generation, changed = self._db.index_changes(self._generation)
            if self._generation is None or generation < self._generation:
                # The first time, or the count went back (a restored database): all.
                generation, changed = self._db.index_heads()
                self._heads = {f.path: f for f in changed}
            else:
                for found in changed:
                    known = self._heads.get(found.path)
                    if known is None or known.generation < found.generation:
                        self._heads[found.path] = found
            self._generation = generation
            self._current_at = started
            return changed

    def is_current(self) -> bool:
        """Whether the last catch-up started within ``max_staleness`` seconds."""
        return self.clock() - self._current_at <= self.max_staleness

    def may_have_missed(self) -> bool:
        """Whether a path without a file should be looked up again (``MISS_RECHECK``)."""
        return self.clock() - self._current_at > self.miss_recheck

    def head(self, path: str) -> IndexFile | None:
        """The headers of the file at ``path`` (no bytes), None if there is none."""
        return self._heads.get(path)

    def cached(self, head: IndexFile) -> IndexFile | None:
        """The file ``head`` describes, bytes included, if they are in memory."""
        found = self._bytes.get(head.path)
        # The ETag too: generations restart with a restored database.
        if found is None or found.generation != head.generation or found.etag != head.etag:
            return None
        self._bytes.move_to_end(head.path)
        return found

    def read(self, path: str) -> IndexFile | None:
        """Blocking: the file at ``path`` from the database (then ``keep`` it)."""
        return self._db.index_file(path)

    def keep(self, found: IndexFile) -> None:
        """Hold ``found``'s bytes in memory, dropping the least recently used past
        the bound. A file larger than the whole bound is not kept."""
        assert found.body is not None
        size = len(found.body)
        if size > self._cache_bytes:
            return
        old = self._bytes.pop(found.path, None)
        if old is not None and old.body is not None:
            self._held -= len(old.body)
        self._bytes[found.path] = found
        self._held += size
        while self._held > self._cache_bytes:
            _, dropped = self._bytes.popitem(last=False)
            assert dropped.body is not None
            self._held -= len(dropped.body)

    async def keep_current(self) -> None:
        """Catch up every ``poll_interval`` seconds, for ever (cancel to stop). A
        failure is logged once until the database answers again; meanwhile requests
        catch up themselves (and are refused while it cannot be read)."""
        failing = False
        while True:
            try:
                await anyio.to_thread.run_sync(self.catch_up)
            except StorageUnavailable as exc:
                if not failing:
                    log.warning(
                        "cannot read the index generation",
                        extra={"fields": {"reason": exc.reason}},
                    )
                failing = True
            else:
                if failing:
                    log.info("reading the index generation again")
                failing = False
            await anyio.sleep(self.poll_interval)
