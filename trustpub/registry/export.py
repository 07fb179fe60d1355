"""The sparse index written out as static files, for nginx, a CDN or an object store.

``Exporter`` copies the stored index files (``db.index_files``, built with each change)
and ``config.json`` to a target: a directory (``DirectoryTarget``) or the registry's
S3 bucket under a prefix (``ObjectStoreTarget``). Any static file server then serves the
index at the same paths as ``/index/``; cargo reads ``config.json`` from it, and its
``dl`` and ``api`` still point at the registry (downloads, publish, yank).

- ``resync()`` writes every file and ``config.json``, and removes every file of the
  target that is not a crate's index file (a crate removed from the database, by a
  restore for instance): the target then mirrors the database.
- ``step()`` catches up with the changes since the last resync or step (the index
  generation, as the serving processes do): it writes only the files built since.
  ``watch()`` runs it every ``interval`` seconds, for ever.

Atomic writes: in a directory, each file is written to a temporary name beside it, then
renamed over the old one (a reader sees the old file or the new one, never a part);
an object store replaces an object whole by itself. Files are readable by everyone
(0644, directories 0755): the index is meant to be served.

A private registry (``auth_required``) must not be exported to a public place: the
files hold every version of every crate. The CLI refuses unless the operator says the
target is access-controlled (``--allow-private``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from trustpub.registry.db import RegistryDB, StorageUnavailable
from trustpub.registry.db.index_files import IndexFile

if TYPE_CHECKING:
    from trustpub.registry.storage.s3 import S3Storage

log = logging.getLogger("trustpub.registry")

CONFIG = "config.json"
TEXT = "text/plain; charset=utf-8"
BATCH = 200
"""Files read from the database per query during a resync."""


class IndexTarget(Protocol):
    """Where an export writes: paths are relative (``de/mo/demo``, ``config.json``)."""

    def write(self, path: str, body: bytes, content_type: str, modified: int | None = None) -> None:
        """Put ``body`` at ``path``, replacing what was there, atomically; ``modified``:
        its Last-Modified (unix seconds), where the target keeps one."""

    def remove(self, path: str) -> None: ...

    def paths(self) -> set[str]:
        """Every file the target holds (a directory's temporary files excluded)."""


class DirectoryTarget:
    """An export directory, created if missing."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).absolute()

    def write(self, path: str, body: bytes, content_type: str, modified: int | None = None) -> None:
        final = self.root / path
        final.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        temp = final.with_name(f".{final.name}.tmp-{secrets.token_hex(6)}")
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                os.write(fd, body)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.chmod(temp, 0o644)  # whatever the umask: the index is served
            if modified is not None:
                # A file server's Last-Modified is then the registry's.
                os.utime(temp, (modified, modified))
            os.replace(temp, final)
        except OSError as exc:
            with contextlib.suppress(OSError):
                temp.unlink()
            raise StorageUnavailable(
                f"index export {self.root}: cannot write {path}: {exc}"
            ) from exc

    def remove(self, path: str) -> None:
        target = self.root / path
        try:
            target.unlink(missing_ok=True)
        except OSError as exc:
            raise StorageUnavailable(
                f"index export {self.root}: cannot remove {path}: {exc}"
            ) from exc
        # Drop the directories left empty, up to the root (not the root).
        for parent in target.parents:
            if parent == self.root or self.root not in parent.parents:
                break
            try:
                parent.rmdir()
            except OSError:  # not empty (or not ours to remove): stop there
                break

    def paths(self) -> set[str]:
        found: set[str] = set()
        for directory, _, files in os.walk(self.root):
            for name in files:
                if name.startswith("."):
                    continue  # temporary files (and nothing of ours is hidden)
                found.add(os.path.relpath(os.path.join(directory, name), self.root))
        return found


class ObjectStoreTarget:
    """The registry's S3 bucket, under ``{storage prefix}{prefix}`` (default ``index/``),
    through the registry's own S3 client (``S3Storage``, opened)."""

    def __init__(self, store: S3Storage, prefix: str = "index/") -> None:
        self._store = store
        self.prefix = store.prefix + prefix

    @property
    def location(self) -> str:
        return f"s3://{self._store.bucket}/{self.prefix}"

    def write(self, path: str, body: bytes, content_type: str, modified: int | None = None) -> None:
        # The store sets the object's Last-Modified itself (and its ETag: the MD5).
        with self._store._errors("cannot write an index object"):
            self._store.client.put_object(
                Bucket=self._store.bucket,
                Key=self.prefix + path,
                Body=body,
                ContentType=content_type,
                CacheControl="no-cache",
            )

    def remove(self, path: str) -> None:
        with self._store._errors("cannot remove an index object"):
            self._store.client.delete_object(Bucket=self._store.bucket, Key=self.prefix + path)

    def paths(self) -> set[str]:
        found: set[str] = set()
        with self._store._errors("cannot list the index objects"):
            pages = self._store.client.get_paginator("list_objects_v2").paginate(
                Bucket=self._store.bucket, Prefix=self.prefix
            )
            for page in pages:
                for item in page.get("Contents", []):
                    found.add(item["Key"].removeprefix(self.prefix))
        return found


@dataclass(frozen=True, slots=True)
class Synced:
    """What a resync or a step did."""

    generation: int
    written: int
    removed: int


class Exporter:
    """Keeps ``target`` a copy of the registry's index; see the module docstring."""

    def __init__(self, db: RegistryDB, target: IndexTarget, config_body: bytes) -> None:
        self._db = db
        self.target = target
        self._config = config_body
        self.generation: int | None = None

    def resync(self) -> Synced:
        """Write everything, remove what is not the index's."""
        # Read first: a file built during the resync is written by the next step.
        generation = self._db.index_generation()
        self.target.write(CONFIG, self._config, "application/json")
        present = self.target.paths()
        kept = {CONFIG}
        written = 0
        for found in self._every_file():
            assert found.body is not None
            self.target.write(found.path, found.body, TEXT, found.last_modified)
            kept.add(found.path)
            written += 1
        stale = sorted(present - kept)
        for path in stale:
            self.target.remove(path)
        if stale:
            log.info("index export: removed files no crate has", extra={"fields": {"paths": stale}})
        self.generation = generation
        return Synced(generation, written, len(stale))

    def step(self) -> Synced:
        """Write the files built since the last resync or step (a resync the first time,
        or when the generation went back, as after a database restore)."""
        if self.generation is None:
            return self.resync()
        generation, changed = self._db.index_changes(self.generation)
        if generation < self.generation:
            return self.resync()
        files = self._db.index_files_of(sorted({f.crate_id for f in changed}))
        for found in files:
            assert found.body is not None
            self.target.write(found.path, found.body, TEXT, found.last_modified)
        self.generation = generation
        return Synced(generation, len(files), 0)

    def watch(self, interval: float, stop: threading.Event | None = None) -> None:
        """``step`` every ``interval`` seconds until ``stop`` is set. A failure is logged
        and tried again at the next step (the target keeps its last good files)."""
        stop = stop or threading.Event()
        failing = False
        while not stop.is_set():
            try:
                self.step()
            except StorageUnavailable as exc:
                if not failing:
                    log.warning("index export failed", extra={"fields": {"reason": exc.reason}})
                failing = True
            else:
                failing = False
            stop.wait(interval)

    def _every_file(self) -> Iterator[IndexFile]:
        after = 0
        while True:
            batch = self._db.index_files_after(after, BATCH)
            if not batch:
                return
            yield from batch
            after = batch[-1].crate_id
