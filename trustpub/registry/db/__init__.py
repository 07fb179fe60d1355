"""The registry's metadata: users and their API tokens, crates, versions, owners.

The sparse index is rendered from it, so the index is exactly what the database holds.

- ``database``: ``RegistryDB``, the face callers use
- ``rows``: the stored values (frozen dataclasses) and ``NewVersion``
- ``errors``: what it raises (conflicts with stored data; outages)
- ``schema``: ordered migrations and the version check
- ``queries``: reads; ``writes``: changes, each in one transaction with its
  authorization inside
- ``downloads``: download counts per version and day, with totals on versions and
  crates (added in batches by ``trustpub.registry.downloads``)
- ``events``: the append-only audit trail, webhook subscriptions and the notification
  outbox (``record_event``, called inside each change's transaction)
- ``sqlite``, ``postgresql``: the engines (connections, transactions, guards); the
  default is a SQLite file, a ``postgresql://`` URL shares the data between replicas

Nothing here imports the layers above it (the HTTP handlers, who-may-do-what, the
request parser); nor does it word messages for users: ``trustpub.registry.changes``
does both.
"""

from trustpub.registry.db.database import RegistryDB
from trustpub.registry.db.errors import (
    AlreadyOwner,
    CommitFailed,
    CrateNotFound,
    DataConflict,
    InvitationExpired,
    InvitationNotFound,
    LastOwners,
    NameConflict,
    NoOwners,
    NotOwner,
    PublishOutcomeUnknown,
    RegistryDataError,
    StorageFull,
    StorageUnavailable,
    TooManyTokens,
    UnknownDependency,
    UnknownUser,
    UserExists,
    VersionExists,
    VersionNotFound,
    WebhookExists,
    WebhookNotFound,
)
from trustpub.registry.db.events import AuditEvent, Delivery, Webhook
from trustpub.registry.db.rows import (
    ApiToken,
    CrateRow,
    CrateState,
    DependencyRow,
    Invitation,
    KeywordRow,
    NewVersion,
    OwnersChanged,
    OwnersInvited,
    ReverseDependencies,
    User,
    VersionRow,
)
from trustpub.registry.db.schema import SCHEMA_VERSION, SchemaTooNew

__all__ = [
    "SCHEMA_VERSION",
    "AlreadyOwner",
    "ApiToken",
    "AuditEvent",
    "CommitFailed",
    "CrateNotFound",
    "CrateRow",
    "CrateState",
    "DataConflict",
    "Delivery",
    "DependencyRow",
    "Invitation",
    "InvitationExpired",
    "InvitationNotFound",
    "KeywordRow",
    "LastOwners",
    "NameConflict",
    "NewVersion",
    "NoOwners",
    "NotOwner",
    "OwnersChanged",
    "OwnersInvited",
    "PublishOutcomeUnknown",
    "RegistryDB",
    "RegistryDataError",
    "ReverseDependencies",
    "SchemaTooNew",
    "StorageFull",
    "StorageUnavailable",
    "TooManyTokens",
    "UnknownDependency",
    "UnknownUser",
    "User",
    "UserExists",
    "VersionExists",
    "VersionNotFound",
    "VersionRow",
    "Webhook",
    "WebhookExists",
    "WebhookNotFound",
]
