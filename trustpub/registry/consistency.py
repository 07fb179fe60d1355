"""Do the .crate files match the versions? ``check_files`` compares the file store
(``CrateStorage.list_keys``) with the database's versions (``queries.published_files``):

- an **orphan** is a file no version names: left by a crash between a publish's
  rename and its COMMIT, or kept on purpose when a COMMIT failed and its outcome could
  not be read back (``PublishOutcomeUnknown``). Harmless: the index never lists it, and
  every start sweeps it (``sweep_orphans``, under the writer lock);
- a **missing** file is a version the index lists without its file: downloads fail.
  The registry never deletes such a file itself; it comes from outside (a lost or
  partly restored data directory or bucket). Restore it from a copy (its checksum is
  the index's ``cksum``); a published version is never replaced, so publishing it
  again is refused, as on crates.io.

Without removal the check takes no lock: the versions are read before and after the
listing, so a version recorded during it is never reported missing, and a file is an
orphan only if no version named it after the listing (a publish in flight at that very
moment may show as one). ``remove_orphans`` runs the whole check holding the writer
lock, when no publish can be between its rename and its COMMIT (publishes wait).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from trustpub.registry.db import RegistryDB
from trustpub.registry.db.queries import published_files
from trustpub.registry.storage import CrateStorage, crate_key


@dataclass(frozen=True, slots=True)
class FileCheck:
    """Keys (``crates/NAME/NAME-VERSION.crate``) sorted; ``missing`` as (crate, version)."""

    orphans: tuple[str, ...]
    missing: tuple[tuple[str, str], ...]
    removed: tuple[str, ...]

    @property
    def consistent(self) -> bool:
        return not self.missing and len(self.removed) == len(self.orphans)


def check_files(db: RegistryDB, files: CrateStorage[Any], *, remove_orphans: bool) -> FileCheck:
    """Compare the store with the versions (blocking; ``StorageUnavailable`` on failure)."""
    if remove_orphans:

        def locked(published: set[tuple[str, str]]) -> FileCheck:
            found = _compare(published, files.list_keys(), published)
            removed = files.sweep_orphans(published) if found.orphans else []
            return FileCheck(found.orphans, found.missing, tuple(removed))

        return db.holding_write_lock(locked)
    before = db.call(published_files)
    keys = files.list_keys()
    after = db.call(published_files)
    return _compare(before, keys, after)


def _compare(
    before: set[tuple[str, str]], keys: list[str], after: set[tuple[str, str]]
) -> FileCheck:
    listed = set(keys)
    named = {crate_key(name, num) for name, num in after}
    orphans = tuple(sorted(listed - named))
    missing = tuple(sorted(v for v in before if crate_key(*v) not in listed))
    return FileCheck(orphans, missing, ())
