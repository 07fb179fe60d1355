"""TokenRecord: JSON round trip, and stored garbage refused as MalformedRecord only."""

from __future__ import annotations

import contextlib
import json
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trustpub.grants import Operation, Provenance
from trustpub.tokens import MalformedRecord, TokenRecord

PROVENANCE = Provenance(
    issuer="https://token.actions.githubusercontent.com",
    provider="github",
    repository="octo-org/octo-lib",
    repository_id="632596897",
    owner_id="131804563",
    workflow_ref="octo-org/octo-lib/.github/workflows/release.yml@refs/tags/v1.2.3",
    ref="refs/tags/v1.2.3",
    sha="8c13a5f0d1c8a9e6b1f2",
    run_id="21561244697",
    run_attempt="1",
    event="push",
)


def record() -> TokenRecord:
    return TokenRecord(
        crates={
            "octo-lib": frozenset({Operation.PUBLISH_UPDATE, Operation.YANK}),
            "octo-derive": frozenset({Operation.PUBLISH_NEW}),
        },
        issued_at=1_769_941_559,
        expires_at=1_769_943_359,
        provenance=PROVENANCE,
        policies=("octo-lib-release", "octo-derive-release"),
        new_crate_owners={"octo-derive": ("alice", "bob")},
    )


def test_record_round_trips_through_json() -> None:
    original = record()
    parsed = TokenRecord.from_json(original.to_json())
    assert parsed == original
    assert parsed.new_crate_owners == {"octo-derive": ("alice", "bob")}


def test_owners_are_stored_compactly_and_only_when_there_are_any() -> None:
    data = json.loads(record().to_json())
    assert data["owners"] == {"octo-derive": ["alice", "bob"]}
    plain = replace(record(), new_crate_owners={})
    assert "owners" not in json.loads(plain.to_json())
    assert TokenRecord.from_json(plain.to_json()) == plain
    # A crate the token may create, whose policies named nobody, is kept as such.
    bare = replace(record(), new_crate_owners={"octo-derive": ()})
    assert TokenRecord.from_json(bare.to_json()).new_crate_owners == {"octo-derive": ()}


def test_a_record_stored_before_owners_were_recorded_creates_no_crate() -> None:
    # The exact bytes an earlier trustpub stored: no `owners` key.
    old = (
        b'{"crates":{"octo-derive":["publish-new"]},"exp":1769943359,"iat":1769941559,'
        b'"policies":["octo-derive-release"],"provenance":{"issuer":'
        b'"https://token.actions.githubusercontent.com","provider":"github",'
        b'"repository":"octo-org/octo-lib"},"v":1}'
    )
    parsed = TokenRecord.from_json(old)
    assert parsed.crates == {"octo-derive": frozenset({Operation.PUBLISH_NEW})}
    assert parsed.new_crate_owners == {}
    assert parsed.to_json() == old


def test_parsed_owners_cannot_be_modified() -> None:
    parsed = TokenRecord.from_json(record().to_json())
    with pytest.raises(TypeError):
        parsed.new_crate_owners["octo-lib"] = ("mallory",)  # type: ignore[index]


def test_json_is_compact_and_deterministic() -> None:
    raw = record().to_json()
    assert b" " not in raw.replace(b"Release", b"")
    assert raw == record().to_json()
    data = json.loads(raw)
    assert data["crates"]["octo-lib"] == ["publish-update", "yank"]
    assert data["policies"] == ["octo-lib-release", "octo-derive-release"]


def test_parsed_crates_cannot_be_modified() -> None:
    parsed = TokenRecord.from_json(record().to_json())
    with pytest.raises(TypeError):
        parsed.crates["evil"] = frozenset({Operation.PUBLISH_NEW})  # type: ignore[index]


def test_is_active_until_expiry() -> None:
    r = record()
    assert r.is_active(r.expires_at - 1)
    assert not r.is_active(r.expires_at)


def test_a_record_with_an_inverted_lifetime_is_never_active() -> None:
    inverted = replace(record(), issued_at=2_000, expires_at=1_000)
    assert not inverted.is_active(500)
    assert not inverted.is_active(1_500)
    # Issued and expiring at the same second: judged by its expiry alone.
    instant = replace(record(), issued_at=1_000, expires_at=1_000)
    assert instant.is_active(999)
    assert not instant.is_active(1_000)


def mutate(**changes: object) -> bytes:
    data = json.loads(record().to_json())
    for key, value in changes.items():
        if value is ...:
            del data[key]
        else:
            data[key] = value
    return json.dumps(data).encode()


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"not json",
        b"\xff\xfe",
        b"[]",
        b"null",
        mutate(v=2),
        mutate(v=...),
        mutate(iat="1769941559"),
        mutate(exp=True),
        mutate(exp=...),
        mutate(crates={}),
        mutate(crates={}, owners=...),
        mutate(crates=[]),
        mutate(crates={"octo-lib": []}),
        mutate(crates={"octo-lib": []}, owners=...),
        mutate(crates={"octo-lib": "publish-update"}),
        mutate(crates={"octo-lib": ["publish-update", "delete-everything"]}),
        mutate(crates={"octo-lib": ["publish-update", "delete-everything"]}, owners=...),
        mutate(crates={"octo-lib": [1]}),
        mutate(crates={"octo-lib": ["yank", ["yank"]]}, owners=...),
        mutate(crates={"octo-lib": [{"yank": 1}]}, owners=...),
        mutate(provenance=...),
        mutate(provenance={"issuer": "https://x.example"}),
        mutate(provenance={"issuer": 1, "provider": "github", "repository": "a/b"}),
        mutate(policies="p"),
        mutate(policies=[1]),
        mutate(policies=["p", 1]),
        mutate(owners=[]),
        mutate(owners=None),
        mutate(owners={"octo-derive": "alice"}),
        mutate(owners={"octo-derive": [1]}),
        mutate(owners={"octo-derive": [""]}),
        mutate(owners={"octo-derive": None}),
        # Owners for a crate the token may only update, or does not name: corruption.
        mutate(owners={"octo-lib": ["alice"]}),
        mutate(owners={"elsewhere": ["alice"]}),
    ],
)
def test_malformed_stored_data_is_refused(raw: bytes) -> None:
    with pytest.raises(MalformedRecord):
        TokenRecord.from_json(raw)


@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_malformed_record(raw: bytes) -> None:
    with contextlib.suppress(MalformedRecord):
        TokenRecord.from_json(raw)


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=5),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
        max_leaves=20,
    )
)
def test_arbitrary_json_in_any_field_raises_only_malformed_record(value: object) -> None:
    for field in ("crates", "iat", "exp", "provenance", "policies", "owners", "v"):
        with contextlib.suppress(MalformedRecord):
            TokenRecord.from_json(mutate(**{field: value}))
