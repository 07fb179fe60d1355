"""``LocalStorage``: the .crate files in a directory, under ``{root}/crates/``
(``file:///PATH``; the default, under the data directory).

Write order. A publish stages the upload in ``{root}/tmp/`` (same file system, so the
final move is an atomic rename) and fsyncs it, then, inside the metadata transaction
and while holding the database's writer lock, renames it into place and commits. So
the index never lists a version whose file is missing; a crash between the rename
and the commit can leave a file without its version, and a crash before, a staged
file. Both are swept when a process opens the store (``open``, ``sweep_orphans``),
and each removal is logged:

- a staged file is removed only if no process holds its lock (each is ``flock``-ed
  by its writer until the publish ends; the kernel drops the lock of a killed
  process), so a worker starting beside another one's publish leaves it alone;
- a ``.crate`` file is an orphan if no version names it; the sweep runs under the
  writer lock, when no publish can be between its rename and its commit.

Files are created owner-only (0600; directories 0700). Every ``OSError`` is raised as
``StorageUnavailable`` (``StorageFull`` when out of space), logged with its path.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import io
import logging
import os
import secrets
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from trustpub.registry.db import StorageFull, StorageUnavailable
from trustpub.registry.storage import StoredFile, crate_key

log = logging.getLogger("trustpub.registry")

_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


@dataclass(frozen=True, slots=True)
class StagedFile:
    """An upload written to ``tmp/``; ``fd`` holds its lock until it is discarded."""

    path: Path
    fd: int = field(repr=False)


CHUNK = 64 * 1024


class LocalStorage:
    """A ``CrateStorage`` in a directory; see the module docstring."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).absolute()
        self._crates = self.root / "crates"
        self._tmp = self.root / "tmp"

    def open(self) -> None:
        """Create the directories (first use), check they can be written, and remove
        staged files no process is writing."""
        with self._errors("cannot open the crate file store"):
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._crates.mkdir(mode=0o700, exist_ok=True)
            self._tmp.mkdir(mode=0o700, exist_ok=True)
            self._probe()
            for leftover in self._tmp.glob("*.part"):
                self._remove_if_abandoned(leftover)

    def check_writable(self, min_free: int) -> None:
        """Raise ``StorageUnavailable`` unless a file can be created in the store, and
        ``StorageFull`` if less than ``min_free`` bytes are free there."""
        with self._errors("the crate file store is not writable"):
            self._probe()
            st = os.statvfs(self._tmp)
        free = st.f_bavail * st.f_frsize
        if free < min_free:
            raise self._failure(f"only {free} bytes free, a publish may need {min_free}", full=True)

    def path(self, name: str, version: str) -> Path:
        """Where a version's file lives. ``name`` is the crate's registered name."""
        return self.root / crate_key(name, version)

    def stage(self, data: bytes) -> StagedFile:
        """Write ``data`` durably to a fresh temporary file, locked until discarded."""
        path = self._tmp / f"{secrets.token_hex(16)}.part"
        with self._errors("cannot stage an upload"):
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            except BaseException:
                with contextlib.suppress(OSError):
                    path.unlink()
                os.close(fd)
                raise
        return StagedFile(path, fd)

    def place(self, staged: StagedFile, name: str, version: str) -> None:
        """Move a staged file to its final path (atomic rename, then fsync the dir)."""
        final = self.path(name, version)
        with self._errors("cannot place a .crate file"):
            # Not parents=True: a store whose directories vanished is not recreated.
            final.parent.mkdir(mode=0o700, exist_ok=True)
            os.replace(staged.path, final)
            _fsync_dir(final.parent)

    def remove(self, name: str, version: str) -> None:
        """Remove a placed file whose version was not recorded. Best effort: called
        while another error is raised, which must not be masked; a file left behind
        is swept at the next start."""
        try:
            self.path(name, version).unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            self._failure(f"cannot remove an unrecorded .crate file: {exc}")

    def discard(self, staged: StagedFile) -> None:
        """Remove the staged file if it is still there, and release its lock."""
        try:
            with contextlib.suppress(FileNotFoundError):
                staged.path.unlink()
        finally:
            os.close(staged.fd)

    def get(self, name: str, version: str) -> StoredFile | None:
        with self._errors("cannot read a .crate file"):
            try:
                file = self.path(name, version).open("rb")
            except FileNotFoundError:
                return None
            try:
                size = os.fstat(file.fileno()).st_size
            except BaseException:
                file.close()
                raise
        return StoredFile(size, self._chunks(file))

    def exists(self, name: str, version: str) -> bool:
        with self._errors("cannot read a .crate file"):
            return self.path(name, version).is_file()

    def list_keys(self) -> list[str]:
        with self._errors("cannot list the .crate files"):
            return sorted(
                p.relative_to(self.root).as_posix() for p in self._crates.glob("*/*.crate")
            )

    def download_url(self, name: str, version: str) -> str | None:
        return None  # a directory has no URL of its own: the registry streams the file

    def sweep_orphans(self, published: Collection[tuple[str, str]]) -> list[str]:
        """Remove the ``.crate`` files no version names; ``published`` holds (crate
        name, version) of every version. Run it holding the database's writer lock."""
        expected = {crate_key(name, num) for name, num in published}
        removed: list[str] = []
        with self._errors("cannot sweep orphan .crate files"):
            for key in self.list_keys():
                if key not in expected:
                    with contextlib.suppress(FileNotFoundError):
                        (self.root / key).unlink()
                    removed.append(key)
        if removed:
            log.warning(
                "removed .crate files that no version names (left by a crash during a publish)",
                extra={"fields": {"files": [str(self.root / key) for key in removed]}},
            )
        return removed

    # -- internals -------------------------------------------------------------------------

    def _chunks(self, file: io.BufferedReader) -> Iterator[bytes]:
        with file, self._errors("cannot read a .crate file"):
            while chunk := file.read(CHUNK):
                yield chunk

    def _probe(self) -> None:
        probe = self._tmp / f".probe-{secrets.token_hex(8)}"
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, b"\0")
        finally:
            os.close(fd)
            probe.unlink()

    def _remove_if_abandoned(self, path: Path) -> None:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return  # another process is publishing it
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            log.info(
                "removed a staged upload left by an interrupted publish",
                extra={"fields": {"file": str(path)}},
            )
        finally:
            os.close(fd)

    def _failure(self, reason: str, *, full: bool = False) -> StorageUnavailable:
        """Log an outage (with the path: for operators) and return the error to raise."""
        detail = f"registry file store {self.root}: {reason}"
        log.warning(detail)
        return StorageFull(detail) if full else StorageUnavailable(detail)

    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except OSError as exc:
            raise self._failure(f"{what}: {exc}", full=exc.errno in _FULL_ERRNOS) from exc


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
