"""Provenance's JSON form: only the fields that are set, every one a string."""

from __future__ import annotations

import pytest

from trustpub.grants import Provenance

FULL = Provenance(
    issuer="https://gitlab.com",
    provider="gitlab",
    repository="group/project",
    repository_id="1",
    owner_id="2",
    workflow_ref="group/project//.gitlab-ci.yml@refs/heads/main",
    job_workflow_ref="group/project//.gitlab-ci.yml@refs/heads/main",
    ref="refs/heads/main",
    sha="abc",
    run_id="3",
    run_attempt="1",
    job_id="4",
    environment="release",
    event="push",
)


def test_to_json_has_every_set_field_and_no_unset_one() -> None:
    assert Provenance("i", "github", "o/r").to_json() == {
        "issuer": "i",
        "provider": "github",
        "repository": "o/r",
    }
    assert Provenance.from_json(FULL.to_json()) == FULL
    assert len(FULL.to_json()) == len(Provenance.__dataclass_fields__)


def test_from_json_ignores_unknown_fields() -> None:
    data = {"issuer": "i", "provider": "github", "repository": "o/r", "future": 1}
    assert Provenance.from_json(data) == Provenance("i", "github", "o/r")


@pytest.mark.parametrize("bad", [1, None, ["x"], {"x": "y"}, True])
def test_from_json_refuses_a_known_field_that_is_not_a_string(bad: object) -> None:
    with pytest.raises(ValueError, match="strings"):
        Provenance.from_json({"issuer": "i", "provider": "github", "repository": "o/r", "sha": bad})


def test_from_json_refuses_a_missing_required_field() -> None:
    with pytest.raises(TypeError):
        Provenance.from_json({"issuer": "i", "provider": "github"})
