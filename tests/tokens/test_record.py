"""TokenRecord: JSON round trip, and stored garbage refused as MalformedRecord only."""

from __future__ import annotations

import contextlib
import json

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
    )


def test_record_round_trips_through_json() -> None:
    original = record()
    assert TokenRecord.from_json(original.to_json()) == original


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
        mutate(crates=[]),
        mutate(crates={"octo-lib": []}),
        mutate(crates={"octo-lib": "publish-update"}),
        mutate(crates={"octo-lib": ["publish-update", "delete-everything"]}),
        mutate(crates={"octo-lib": [1]}),
        mutate(provenance=...),
        mutate(provenance={"issuer": "https://x.example"}),
        mutate(provenance={"issuer": 1, "provider": "github", "repository": "a/b"}),
        mutate(policies="p"),
        mutate(policies=[1]),
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
    for field in ("crates", "iat", "exp", "provenance", "policies", "v"):
        with contextlib.suppress(MalformedRecord):
            TokenRecord.from_json(mutate(**{field: value}))
