"""What a successful match grants: the contract between policy matching and tokens.

Matching (``trustpub.policies``) produces a ``Grant``; minting (``trustpub.tokens``)
turns it into a token; registries read it back through introspection.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType


class Operation(enum.StrEnum):
    """Operations a token may perform on a crate (cargo's endpoint scope names)."""

    PUBLISH_NEW = "publish-new"
    PUBLISH_UPDATE = "publish-update"
    YANK = "yank"
    CHANGE_OWNERS = "change-owners"


DEFAULT_OPERATIONS = frozenset({Operation.PUBLISH_UPDATE})


@dataclass(frozen=True, slots=True)
class Provenance:
    """Where a token came from: recorded with the token and shown on published versions."""

    issuer: str
    provider: str
    repository: str
    repository_id: str | None = None
    owner_id: str | None = None
    workflow_ref: str | None = None
    job_workflow_ref: str | None = None
    ref: str | None = None
    sha: str | None = None
    run_id: str | None = None
    run_attempt: str | None = None
    job_id: str | None = None
    environment: str | None = None
    event: str | None = None

    def to_json(self) -> dict[str, str]:
        # Field by field rather than dataclasses.asdict, which deep-copies every value:
        # this runs on every exchange and introspection (bench/RESULTS.md).
        return {
            name: value for name in _PROVENANCE_FIELDS if (value := getattr(self, name)) is not None
        }

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> Provenance:
        known: dict[str, str] = {}
        for name, value in data.items():
            if name in _PROVENANCE_FIELD_SET:
                if not isinstance(value, str):
                    raise ValueError("provenance fields must be strings")
                known[name] = value
        return cls(**known)


_PROVENANCE_FIELDS = tuple(f.name for f in fields(Provenance))
_PROVENANCE_FIELD_SET = frozenset(_PROVENANCE_FIELDS)


@dataclass(frozen=True, slots=True)
class Grant:
    """The union of what every matching policy allows.

    ``crates`` maps each crate name to its operations; ``ttl_seconds`` is the shortest
    lifetime among the matching policies; ``policies`` names them, for the audit log.

    ``new_crate_owners`` maps each crate the grant may create (``publish-new``) to the
    registry logins that become its owners: sorted, without duplicates, the union over
    the matching policies that grant ``publish-new`` on that crate. It is fixed when the
    token is minted, so a later policy edit cannot change who owns what a live token
    creates.
    """

    crates: Mapping[str, frozenset[Operation]]
    ttl_seconds: int
    policies: tuple[str, ...]
    provenance: Provenance
    new_crate_owners: Mapping[str, tuple[str, ...]] = field(
        default_factory=lambda: MappingProxyType({})
    )
