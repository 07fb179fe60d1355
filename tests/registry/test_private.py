"""A registry that requires authentication (cargo's ``auth-required``): every read
needs a valid token; anonymous requests get cargo's 401 challenge."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.registry.conftest import PUBLIC_URL, FakeAuthority, RegistryEnv, detail
from trustpub.grants import Operation
from trustpub.registry import create_registry_app

LOGIN_URL = "https://wiki.example.com/registry-tokens"


@pytest.fixture
def private(tmp_path: Path) -> Iterator[RegistryEnv]:
    authority = FakeAuthority()
    app = create_registry_app(
        tmp_path, PUBLIC_URL, authority=authority, auth_required=True, login_url=LOGIN_URL
    )
    with TestClient(app) as client:
        yield RegistryEnv(client, app.state.registry, authority, tmp_path)


@pytest.fixture
def published(private: RegistryEnv) -> str:
    private.user("alice")
    alice = private.token("alice")
    assert private.publish(alice, "base", "1.0.0").status_code == 200
    deps = [{"name": "base", "version_req": "^1", "kind": "normal"}]
    assert private.publish(alice, "app", "1.0.0", deps=deps).status_code == 200
    assert private.publish(alice, "secret", "1.0.0").status_code == 200
    return alice


READS = [
    "/index/config.json",
    "/index/ba/se/base",
    "/index/no/pe/nope",
    "/api/v1/crates?q=base",
    "/api/v1/crates/base",
    "/api/v1/crates/base/versions",
    "/api/v1/crates/base/1.0.0",
    "/api/v1/crates/base/owners",
    "/api/v1/crates/base/1.0.0/download",
    "/api/v1/categories",
    "/api/v1/categories/algorithms",
    "/api/v1/category_slugs",
    "/api/v1/keywords",
    "/api/v1/keywords/nope",
    "/api/v1/crates/base/1.0.0/dependencies",
    "/api/v1/crates/base/reverse_dependencies",
]


def get(env: RegistryEnv, path: str, token: str | None = None) -> Any:
    headers = {"Authorization": token} if token is not None else {}
    return env.client.get(path, headers=headers)


def test_config_json_says_auth_is_required(private: RegistryEnv, published: str) -> None:
    response = get(private, "/index/config.json", published)
    assert response.status_code == 200
    assert response.json()["auth-required"] is True


@pytest.mark.parametrize("path", READS)
def test_anonymous_and_invalid_reads_get_cargos_challenge(
    private: RegistryEnv, published: str, path: str
) -> None:
    for token in (None, "tpreg_" + "A" * 40, "nonsense"):
        response = get(private, path, token)
        assert response.status_code == 401, (path, token)
        assert response.headers["www-authenticate"] == f'Cargo login_url="{LOGIN_URL}"'
        assert "A" * 40 not in response.text  # never echoes the token


@pytest.mark.parametrize("path", [p for p in READS if "nope" not in p])
def test_a_read_token_reads_everything(private: RegistryEnv, published: str, path: str) -> None:
    read = private.token("alice", scopes=("read",))
    assert get(private, path, read).status_code == 200
    # Any scope implies read.
    yank_only = private.token("alice", scopes=("yank",), crates=("other",))
    assert get(private, path, yank_only).status_code == 200


def test_a_read_token_changes_nothing(private: RegistryEnv, published: str) -> None:
    read = private.token("alice", scopes=("read",))
    assert private.publish(read, "base", "1.1.0").status_code == 403
    headers = {"Authorization": read}
    assert (
        private.client.delete("/api/v1/crates/base/1.0.0/yank", headers=headers).status_code == 403
    )
    response = private.client.put(
        "/api/v1/crates/base/owners", json={"users": ["alice"]}, headers=headers
    )
    assert response.status_code == 403


def test_writes_without_a_token_get_the_challenge(private: RegistryEnv, published: str) -> None:
    response = private.publish(None, "base", "1.1.0")
    assert response.status_code == 401
    assert "www-authenticate" in response.headers


def test_a_ci_token_reads_its_crates_and_their_dependencies_only(
    private: RegistryEnv, published: str
) -> None:
    ci = private.authority.grant({"app": {Operation.PUBLISH_UPDATE}})
    for path in ("/index/3/a/app", "/index/ba/se/base", "/api/v1/crates/base/1.0.0/download"):
        assert get(private, path, ci).status_code == 200, path
    assert get(private, "/index/config.json", ci).status_code == 200
    for path in (
        "/index/se/cr/secret",
        "/api/v1/crates/secret",
        "/api/v1/crates/secret/1.0.0/download",
        "/api/v1/crates/secret/1.0.0/dependencies",
        "/api/v1/crates/secret/reverse_dependencies",
    ):
        response = get(private, path, ci)
        assert response.status_code == 404, path
        assert detail(response) == "crate `secret` does not exist"
    assert get(private, "/api/v1/crates?q=s", ci).status_code == 403
    # Counts and keywords tell of crates it may not read: refused as the search is.
    for path in ("/api/v1/categories", "/api/v1/categories/algorithms", "/api/v1/keywords"):
        assert get(private, path, ci).status_code == 403, path
    # It reads the dependencies of what it may read, but not who depends on it: the
    # dependents are other crates.
    deps = get(private, "/api/v1/crates/app/1.0.0/dependencies", ci)
    assert [d["crate_id"] for d in deps.json()["dependencies"]] == ["base"]
    assert get(private, "/api/v1/crates/base/reverse_dependencies", ci).status_code == 403
    # And it publishes what its policy allows.
    assert private.publish(ci, "app", "1.1.0").status_code == 200


def test_without_a_login_url_the_challenge_is_bare(tmp_path: Path) -> None:
    app = create_registry_app(tmp_path, PUBLIC_URL, authority=FakeAuthority(), auth_required=True)
    with TestClient(app) as client:
        response = client.get("/index/config.json")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Cargo"


def test_a_public_registry_reads_anonymously(env: RegistryEnv) -> None:
    response = env.client.get("/index/config.json")
    assert response.status_code == 200
    assert response.json()["auth-required"] is False


@pytest.mark.parametrize(
    "url", ['https://x.example/"a', "https://x.example/a b", "ftp://x.example", "https://é.example"]
)
def test_a_login_url_that_cannot_be_quoted_in_the_header_is_refused(
    tmp_path: Path, url: str
) -> None:
    from trustpub.registry import Registry

    with pytest.raises(ValueError, match="login_url"):
        Registry(tmp_path, PUBLIC_URL, auth_required=True, login_url=url)
