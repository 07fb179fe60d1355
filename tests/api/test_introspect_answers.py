"""The introspection answer of an active token, rendered once per record."""

from __future__ import annotations

import json
from types import MappingProxyType

from trustpub.api.introspect import _Answers, active_answer
from trustpub.grants import Operation, Provenance
from trustpub.tokens import TokenRecord


def record(expires_at: int) -> TokenRecord:
    return TokenRecord(
        crates=MappingProxyType({"octo-lib": frozenset({Operation.PUBLISH_UPDATE})}),
        issued_at=1_800_000_000,
        expires_at=expires_at,
        provenance=Provenance(
            issuer="https://issuer.example", provider="github", repository="octo-org/octo-lib"
        ),
        policies=("p.toml#release",),
    )


def test_an_answer_is_the_records_and_is_rendered_once_per_record() -> None:
    answers = _Answers(kept=2)
    first, second, third = record(1_800_000_060), record(1_800_000_120), record(1_800_000_180)
    body = answers.body(first)
    assert json.loads(body) == json.loads(json.dumps(active_answer(first)))
    assert json.loads(body)["expires_at"] == "2027-01-15T08:01:00Z"
    assert answers.body(first) is body  # kept
    assert json.loads(answers.body(second))["expires_at"] == "2027-01-15T08:02:00Z"
    # Past the bound the oldest goes; an equal record that is another object is its own.
    assert json.loads(answers.body(third))["expires_at"] == "2027-01-15T08:03:00Z"
    assert len(answers._by_record) == 2
    assert answers.body(first) == body
    assert answers.body(record(1_800_000_060)) == body
