"""Where the ``.crate`` files live, behind one small protocol, ``CrateStorage``:

- ``local``: ``LocalStorage``, a directory (``file:///PATH``; the default, under the
  data directory);
- ``s3``: ``S3Storage``, an S3-compatible object store (``s3://BUCKET/PREFIX``);
- ``settings``: ``[registry] storage``, ``downloads`` and ``[registry.s3]``.

Every method blocks: the registry calls them in worker threads. Both backends keep the
publish ordering of ``trustpub.registry.db.writes.publish``: the file is written
(``place``) inside the metadata transaction, before its commit, and removed
(``remove``) if the transaction fails before its COMMIT, or if a failed COMMIT is
read back as not recorded (``RegistryDB.publish``), so no version is ever indexed
without its file; a crash between the two, or a COMMIT whose outcome could not be
read back, leaves a file that no version names, which ``sweep_orphans``
removes at the next start, holding the database's writer lock. Failures are raised as
``StorageUnavailable`` (``StorageFull`` when out of space) and name no secret.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from trustpub.registry.names import canonical_name
from trustpub.registry.storage.settings import S3Settings, StorageSettings

StagedT = TypeVar("StagedT")

#: How long a presigned download URL stays valid: long enough for cargo to follow the
#: redirect, short enough that a leaked URL soon stops working.
PRESIGNED_URL_SECONDS = 300


def crate_key(name: str, version: str) -> str:
    """A version's file, relative to the store: ``crates/{name}/{name}-{version}.crate``
    with the crate's canonical name (lower case, ``-`` for ``_``)."""
    directory = canonical_name(name)
    return f"crates/{directory}/{directory}-{version}.crate"


@dataclass(frozen=True, slots=True)
class StoredFile:
    """A file being read: its size and its bytes, in chunks (read in a worker thread)."""

    size: int
    chunks: Iterator[bytes] = field(repr=False)


class CrateStorage(Protocol[StagedT]):
    """What the registry needs of a file store. ``StagedT`` is the backend's handle on
    an upload written (``stage``) but not yet in place."""

    def open(self) -> None:
        """Check the store can be used (creating a local one on first use)."""

    def check_writable(self, min_free: int) -> None:
        """Raise ``StorageUnavailable`` unless a file can be written now (``StorageFull``
        when less than ``min_free`` bytes are free, where that can be known)."""

    def stage(self, data: bytes) -> StagedT:
        """Hold an upload durably, ready to be placed, before the transaction."""

    def place(self, staged: StagedT, name: str, version: str) -> None:
        """Put a staged upload at its version's key (inside the transaction)."""

    def remove(self, name: str, version: str) -> None:
        """Remove a placed file whose version was not recorded. Best effort: called
        while another error is raised; what it leaves is swept at the next start."""

    def discard(self, staged: StagedT) -> None:
        """Release a staged upload (placed or not)."""

    def get(self, name: str, version: str) -> StoredFile | None:
        """The file of a version, or None if it is missing."""

    def exists(self, name: str, version: str) -> bool: ...

    def list_keys(self) -> list[str]:
        """Every ``.crate`` key in the store (``crates/...``), sorted."""

    def sweep_orphans(self, published: Collection[tuple[str, str]]) -> list[str]:
        """Remove the files no version names; ``published`` holds (crate name, version)
        of every version. Run it holding the database's writer lock."""

    def download_url(self, name: str, version: str) -> str | None:
        """A short-lived URL the client can fetch the file from, or None when the store
        has none (files are then streamed)."""


def open_storage(settings: StorageSettings, default_root: Path) -> CrateStorage[Any]:
    """The backend ``settings`` names (not opened yet)."""
    root = settings.local_root(default_root)
    if root is not None:
        from trustpub.registry.storage.local import LocalStorage

        return LocalStorage(root)
    from trustpub.registry.storage.s3 import S3Storage

    bucket, prefix = settings.s3_location()
    return S3Storage(bucket, prefix, settings.s3)


__all__ = [
    "PRESIGNED_URL_SECONDS",
    "CrateStorage",
    "S3Settings",
    "StorageSettings",
    "StoredFile",
    "crate_key",
    "open_storage",
]
