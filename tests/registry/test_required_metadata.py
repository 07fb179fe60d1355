"""crates.io's metadata rule at publish: a description and a license (``license`` or
``license-file``) are required, unless the registry's ``require_metadata`` is off."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.registry.conftest import PUBLIC_URL, FakeAuthority, RegistryEnv, detail
from tests.registry.helpers import make_crate, metadata, publish_body
from trustpub.registry import Limits, create_registry_app
from trustpub.registry.errors import RegistryRefused
from trustpub.registry.publish import MANIFEST_DOCS, parse_publish


def body(**fields: Any) -> bytes:
    return publish_body(metadata("demo", "1.0.0", **fields), make_crate("demo", "1.0.0"))


@pytest.mark.parametrize(
    ("fields", "missing"),
    [
        ({"description": None}, "description"),
        ({"description": "  \n"}, "description"),
        ({"license": None}, "license"),
        ({"license": ""}, "license"),
        ({"license": None, "license_file": " "}, "license"),
        ({"description": None, "license": None}, "description, license"),
    ],
    ids=["no-description", "blank-description", "no-license", "empty-license",
         "blank-license-file", "neither"],
)  # fmt: skip
def test_a_crate_without_description_or_license_is_refused(
    fields: dict[str, Any], missing: str
) -> None:
    with pytest.raises(RegistryRefused) as caught:
        parse_publish(body(**fields), Limits())
    assert caught.value.status_code == 400
    text = str(caught.value)
    assert text.startswith(f"missing or empty metadata fields: {missing}. ")
    assert "`license-file`" in text
    assert MANIFEST_DOCS in text


def test_a_license_file_stands_for_a_license() -> None:
    parsed = parse_publish(body(license=None, license_file="LICENSE.txt"), Limits())
    assert parsed.metadata.license_file == "LICENSE.txt"


def test_the_rule_is_checked_after_the_publish_right() -> None:
    refused: list[str] = []

    def authorize(meta: Any) -> None:
        refused.append(meta.name)
        raise RegistryRefused("not yours", 403)

    with pytest.raises(RegistryRefused, match="not yours"):
        parse_publish(body(description=None), Limits(), authorize)
    assert refused == ["demo"]


def test_the_registry_refuses_it_with_cargos_error_shape(env: RegistryEnv) -> None:
    env.user("alice")
    alice = env.token("alice")
    response = env.put_body(alice, body(description=None, license=None))
    assert response.status_code == 400
    assert detail(response).startswith("missing or empty metadata fields: description, license.")
    assert env.index("demo").status_code == 404  # nothing stored
    assert env.crate_files() == []


def test_a_registry_with_require_metadata_off_accepts_it(tmp_path: Path) -> None:
    app = create_registry_app(
        tmp_path, PUBLIC_URL, authority=FakeAuthority(), require_metadata=False
    )
    with TestClient(app) as client:
        env = RegistryEnv(client, app.state.registry, FakeAuthority(), tmp_path)
        env.user("alice")
        response = env.put_body(env.token("alice"), body(description=None, license=None))
        assert response.status_code == 200, response.text
        assert client.get("/api/v1/crates/demo/1.0.0").json()["version"]["license"] is None
