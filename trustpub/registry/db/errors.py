"""What the registry's storage raises: facts, with the names and numbers involved.

    RegistryDataError          base class
    ├── StorageUnavailable     cannot read or write now: file missing or replaced, read-only,
    │   │                      I/O error, locked too long (HTTP 503)
    │   ├── StorageFull        no space left for the write (HTTP 507)
    │   ├── CommitFailed       a COMMIT failed: the change may have been recorded or not
    │   └── PublishOutcomeUnknown  a publish's COMMIT failed and it could not be read
    │                          back: its file is kept (HTTP 503, retryable)
    └── DataConflict           the stored data refuses the change
        ├── UserExists, UnknownUser
        ├── CrateNotFound, VersionNotFound, VersionExists, NameConflict
        ├── UnknownDependency
        ├── AlreadyOwner, NotOwner, LastOwners, NoOwners
        ├── InvitationNotFound, InvitationExpired
        └── TooManyTokens

The storage words no message for users: the layer that speaks to them
(``trustpub.registry.changes``) does, from these fields. ``StorageUnavailable.reason``
is for operators' logs: it may name files, so it is never sent to a client.
"""

from __future__ import annotations


class RegistryDataError(Exception):
    """Base class of the storage's errors."""


class StorageUnavailable(RegistryDataError):
    """The database or the file store cannot be used now; the next call tries again."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class StorageFull(StorageUnavailable):
    """A write found no space left (or hit a file size limit); nothing was recorded."""


class CommitFailed(StorageUnavailable):
    """The COMMIT itself failed, so the outcome is UNKNOWN: PostgreSQL may have committed
    before the connection dropped (the answer lost on the way), SQLite may have written
    its commit record before an I/O error. ``failure`` is the engine's error as it would
    have been raised (``StorageFull`` included) for when the change proves unrecorded.
    Raised by the engines' ``transaction``; a write that undid a side effect outside the
    database on failure must first read back what was recorded (``RegistryDB.publish``)."""

    def __init__(self, failure: StorageUnavailable) -> None:
        super().__init__(failure.reason)
        self.failure = failure


class PublishOutcomeUnknown(StorageUnavailable):
    """A publish's COMMIT failed and the database could not be read back to learn
    whether the version was recorded: its .crate file was kept (an orphan is swept at
    the next start, or by ``trustpub registry files check --remove-orphans``; a deleted
    file of a recorded version would be lost for good)."""

    def __init__(self, crate: str, num: str, reason: str) -> None:
        super().__init__(reason)
        self.crate = crate
        self.num = num


class DataConflict(RegistryDataError):
    """The change contradicts what is stored; nothing was changed."""


class UserExists(DataConflict):
    def __init__(self, login: str) -> None:
        super().__init__(login)
        self.login = login


class UnknownUser(DataConflict):
    def __init__(self, login: str) -> None:
        super().__init__(login)
        self.login = login


class CrateNotFound(DataConflict):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


class VersionNotFound(DataConflict):
    def __init__(self, crate: str, num: str) -> None:
        super().__init__(crate, num)
        self.crate = crate
        self.num = num


class VersionExists(DataConflict):
    """``num`` is the stored version that has the same number up to build metadata."""

    def __init__(self, crate: str, num: str) -> None:
        super().__init__(crate, num)
        self.crate = crate
        self.num = num


class NameConflict(DataConflict):
    """``name`` is the same crate as the stored ``existing`` but spelled differently."""

    def __init__(self, name: str, existing: str) -> None:
        super().__init__(name, existing)
        self.name = name
        self.existing = existing


class UnknownDependency(DataConflict):
    """A dependency on this registry names no crate; ``spelled`` is the stored spelling
    of the same crate when only the spelling differs."""

    def __init__(self, name: str, spelled: str | None) -> None:
        super().__init__(name, spelled)
        self.name = name
        self.spelled = spelled


class AlreadyOwner(DataConflict):
    def __init__(self, login: str, crate: str) -> None:
        super().__init__(login, crate)
        self.login = login
        self.crate = crate


class NotOwner(DataConflict):
    def __init__(self, login: str, crate: str) -> None:
        super().__init__(login, crate)
        self.login = login
        self.crate = crate


class LastOwners(DataConflict):
    """The change would leave ``crate`` without owners."""

    def __init__(self, crate: str) -> None:
        super().__init__(crate)
        self.crate = crate


class NoOwners(DataConflict):
    """A new crate would have no owners: nobody could ever yank it or hand it over."""

    def __init__(self, crate: str) -> None:
        super().__init__(crate)
        self.crate = crate


class WebhookExists(DataConflict):
    def __init__(self, crate: str, url: str) -> None:
        super().__init__(crate, url)
        self.crate = crate
        self.url = url


class WebhookNotFound(DataConflict):
    def __init__(self, crate: str, webhook_id: int) -> None:
        super().__init__(crate, webhook_id)
        self.crate = crate
        self.webhook_id = webhook_id


class InvitationNotFound(DataConflict):
    """The user has no invitation for the crate with this id."""

    def __init__(self, crate_id: int) -> None:
        super().__init__(crate_id)
        self.crate_id = crate_id


class InvitationExpired(DataConflict):
    """The invitation to own ``crate`` has expired; nothing was changed."""

    def __init__(self, crate: str) -> None:
        super().__init__(crate)
        self.crate = crate


class TooManyTokens(DataConflict):
    """The user already holds ``limit`` active API tokens."""

    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        self.limit = limit
