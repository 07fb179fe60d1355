"""The .crate files, one per published version, under ``{root}/crates/``.

A publish stages the upload in ``{root}/tmp/`` (same file system, so the final move is
an atomic rename), fsyncs it, and only then renames it into place inside the
metadata transaction. A crash can leave a staged file behind, never a half-written
``.crate`` at a final path; staged leftovers are removed when the store opens.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from trustpub.registry.names import canonical_name


class CrateFiles:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).absolute()
        self._crates = self.root / "crates"
        self._tmp = self.root / "tmp"

    def open(self) -> None:
        self._crates.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._tmp.mkdir(mode=0o700, parents=True, exist_ok=True)
        for leftover in self._tmp.glob("*.part"):
            with contextlib.suppress(OSError):
                leftover.unlink()

    def path(self, name: str, version: str) -> Path:
        """Where a version's file lives. ``name`` is the crate's registered name."""
        directory = canonical_name(name)
        return self._crates / directory / f"{directory}-{version}.crate"

    def stage(self, data: bytes) -> Path:
        """Write ``data`` durably to a fresh temporary file and return its path."""
        path = self._tmp / f"{secrets.token_hex(16)}.part"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        except BaseException:
            with contextlib.suppress(OSError):
                path.unlink()
            raise
        return path

    def place(self, staged: Path, name: str, version: str) -> None:
        """Move a staged file to its final path (atomic rename, then fsync the dir)."""
        final = self.path(name, version)
        final.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.replace(staged, final)
        _fsync_dir(final.parent)

    def remove(self, name: str, version: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path(name, version).unlink()

    def discard(self, staged: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            staged.unlink()

    def read(self, name: str, version: str) -> bytes | None:
        try:
            return self.path(name, version).read_bytes()
        except FileNotFoundError:
            return None


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
