"""What the registry's storage raises: facts, with the names and numbers involved.

    RegistryDataError          base class
    ├── StorageUnavailable     cannot read or write now: file missing or replaced, read-only,
    │   │                      I/O error, locked too long (HTTP 503)
    │   └── StorageFull        no space left for the write (HTTP 507)
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
