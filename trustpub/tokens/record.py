"""What a token grants, as stored: ``TokenRecord`` and its compact JSON form."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from trustpub.grants import Operation, Provenance
from trustpub.jsoncodec import sorted_ascii

RECORD_VERSION = 1

# Exact lookups of stored operation names (cheaper than calling the enum).
_OPERATIONS: Mapping[str, Operation] = MappingProxyType({op.value: op for op in Operation})


class MalformedRecord(ValueError):
    """Stored record data that cannot be trusted; the token is treated as inactive."""


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """One issued token: per crate the operations it allows, its lifetime and origin.

    ``issued_at`` and ``expires_at`` are unix seconds; ``policies`` names the trust
    policies that matched, for the audit log. ``new_crate_owners`` maps each crate the
    token may create to the registry logins that become its owners, as the policies
    said when the token was minted (records stored before the field existed read as
    empty: such a token creates no crate).
    """

    crates: Mapping[str, frozenset[Operation]]
    issued_at: int
    expires_at: int
    provenance: Provenance
    policies: tuple[str, ...]
    new_crate_owners: Mapping[str, tuple[str, ...]] = field(
        default_factory=lambda: MappingProxyType({})
    )

    def is_active(self, now: float) -> bool:
        return self.issued_at <= self.expires_at and now < self.expires_at

    def to_json(self) -> bytes:
        """Compact, deterministic JSON (sorted keys and operation lists).

        ``owners`` is written only when there are any, so a record that creates no
        crate is byte-for-byte what it was before the field existed.
        """
        data: dict[str, object] = {
            "v": RECORD_VERSION,
            "crates": {name: sorted(ops) for name, ops in sorted(self.crates.items())},
            "iat": self.issued_at,
            "exp": self.expires_at,
            "provenance": self.provenance.to_json(),
            "policies": list(self.policies),
        }
        if self.new_crate_owners:
            data["owners"] = {
                name: list(logins) for name, logins in sorted(self.new_crate_owners.items())
            }
        return sorted_ascii(data)

    @classmethod
    def from_json(cls, raw: bytes) -> TokenRecord:
        """Parse stored data, checking every type; anything unexpected is refused.

        Raises ``MalformedRecord`` (never another error) so callers can deny safely. An
        unknown operation refuses the whole record: granting less than was stored
        would be safe, but silently dropping data hides corruption.
        """
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise MalformedRecord("stored token record is not JSON") from exc
        if not isinstance(data, dict):
            raise MalformedRecord("stored token record is not an object")
        if data.get("v") != RECORD_VERSION:
            raise MalformedRecord(f"unsupported token record version {data.get('v')!r}")
        issued_at = _int(data, "iat")
        expires_at = _int(data, "exp")
        crates_raw = data.get("crates")
        if not isinstance(crates_raw, dict) or not crates_raw:
            raise MalformedRecord("token record `crates` must be a non-empty object")
        crates: dict[str, frozenset[Operation]] = {}
        for name, ops in crates_raw.items():
            if not isinstance(ops, list) or not ops or not all(isinstance(o, str) for o in ops):
                raise MalformedRecord("token record operations must be non-empty string lists")
            try:
                crates[name] = frozenset([_OPERATIONS[o] for o in ops])
            except KeyError as exc:
                raise MalformedRecord("token record names an unknown operation") from exc
        provenance_raw = data.get("provenance")
        if not isinstance(provenance_raw, dict):
            raise MalformedRecord("token record `provenance` must be an object")
        try:
            provenance = Provenance.from_json(provenance_raw)
        except (TypeError, ValueError) as exc:
            raise MalformedRecord("token record `provenance` is invalid") from exc
        policies = data.get("policies")
        if not isinstance(policies, list) or not all(isinstance(p, str) for p in policies):
            raise MalformedRecord("token record `policies` must be a list of strings")
        # Absent: a record stored before owners were recorded; it creates no crate.
        owners = parse_new_crate_owners(data.get("owners", {}), crates)
        return cls(
            crates=MappingProxyType(crates),
            issued_at=issued_at,
            expires_at=expires_at,
            provenance=provenance,
            policies=tuple(policies),
            new_crate_owners=owners,
        )


def parse_new_crate_owners(
    raw: object, crates: Mapping[str, frozenset[Operation]]
) -> Mapping[str, tuple[str, ...]]:
    """Check a ``{crate: [login, ...]}`` object against the crates of the same grant.

    Raises ``MalformedRecord``. Owners of a crate the token may not create are refused,
    not ignored: they cannot come from a real grant, so they mean corruption.
    """
    if not isinstance(raw, dict):
        raise MalformedRecord("new-crate owners must be an object")
    owners: dict[str, tuple[str, ...]] = {}
    for name, logins in raw.items():
        if not isinstance(logins, list) or not all(isinstance(x, str) and x for x in logins):
            raise MalformedRecord("new-crate owners must be lists of logins")
        if Operation.PUBLISH_NEW not in crates.get(name, frozenset()):
            raise MalformedRecord("new-crate owners name a crate the token may not create")
        owners[name] = tuple(logins)
    return MappingProxyType(owners)


def _int(data: Mapping[str, object], key: str) -> int:
    value = data.get(key)
    # bool is an int subclass; a stored `true` is corruption, not a timestamp.
    if not isinstance(value, int) or isinstance(value, bool):
        raise MalformedRecord(f"token record `{key}` must be an integer")
    return value
