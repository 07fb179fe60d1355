"""Owners, metadata, search and yanking with registry API tokens."""

from __future__ import annotations

import pytest

from tests.registry.conftest import RegistryEnv, detail


@pytest.fixture
def alice(env: RegistryEnv) -> str:
    env.user("alice")
    env.user("bob")
    token = env.token("alice")
    assert env.publish(token, "demo", "1.0.0", description="a demo").status_code == 200
    assert env.publish(token, "demo", "1.1.0-rc.1").status_code == 200
    return token


def owners(env: RegistryEnv) -> list[str]:
    return [u["login"] for u in env.client.get("/api/v1/crates/demo/owners").json()["users"]]


def test_owner_add_and_remove(env: RegistryEnv, alice: str) -> None:
    headers = {"Authorization": alice}
    response = env.client.put(
        "/api/v1/crates/demo/owners", json={"users": ["bob"]}, headers=headers
    )
    assert response.json() == {
        "ok": True,
        "msg": "`bob` has been added as an owner of crate `demo`",
    }
    assert owners(env) == ["alice", "bob"]
    response = env.client.put(
        "/api/v1/crates/demo/owners", json={"users": ["bob"]}, headers=headers
    )
    assert "already an owner" in detail(response)
    response = env.client.request(
        "DELETE", "/api/v1/crates/demo/owners", json={"users": ["bob"]}, headers=headers
    )
    assert response.status_code == 200
    assert owners(env) == ["alice"]


def test_owner_changes_are_refused_for_unknown_users_and_the_last_owner(
    env: RegistryEnv, alice: str
) -> None:
    headers = {"Authorization": alice}
    response = env.client.put(
        "/api/v1/crates/demo/owners", json={"users": ["ghost"]}, headers=headers
    )
    assert response.status_code == 404
    assert detail(response) == "could not find user with login `ghost`"
    response = env.client.request(
        "DELETE", "/api/v1/crates/demo/owners", json={"users": ["alice"]}, headers=headers
    )
    assert "cannot remove all owners" in detail(response)
    response = env.client.request(
        "DELETE", "/api/v1/crates/demo/owners", json={"users": ["bob"]}, headers=headers
    )
    assert "not an owner" in detail(response)
    bodies: list[dict[str, object]] = [{"users": []}, {"users": "bob"}, {}, {"users": [1]}]
    for body in bodies:
        response = env.client.put("/api/v1/crates/demo/owners", json=body, headers=headers)
        assert response.status_code == 400
    assert owners(env) == ["alice"]


def test_non_owners_cannot_change_owners_or_yank(env: RegistryEnv, alice: str) -> None:
    bob = env.token("bob")
    response = env.client.put(
        "/api/v1/crates/demo/owners", json={"users": ["bob"]}, headers={"Authorization": bob}
    )
    assert response.status_code == 403
    response = env.client.delete("/api/v1/crates/demo/1.0.0/yank", headers={"Authorization": bob})
    assert response.status_code == 403
    assert "not an owner of crate `demo`" in detail(response)


def test_crate_and_version_metadata(env: RegistryEnv, alice: str) -> None:
    body = env.client.get("/api/v1/crates/demo").json()
    crate = body["crate"]
    assert crate["name"] == "demo"
    assert crate["max_version"] == "1.1.0-rc.1"
    assert crate["max_stable_version"] == "1.0.0"
    assert crate["newest_version"] == "1.1.0-rc.1"
    assert crate["trustpub_only"] is False
    assert [v["num"] for v in body["versions"]] == ["1.1.0-rc.1", "1.0.0"]
    version = env.client.get("/api/v1/crates/demo/1.0.0").json()["version"]
    assert version["dl_path"] == "/api/v1/crates/demo/1.0.0/download"
    assert version["license"] == "MIT"
    assert len(version["checksum"]) == 64
    assert env.client.get("/api/v1/crates/nope").status_code == 404
    assert env.client.get("/api/v1/crates/demo/3.0.0").status_code == 404
    assert env.client.get("/api/v1/crates/demo/not-semver").status_code == 404


def test_yanked_versions_drop_out_of_max_version(env: RegistryEnv, alice: str) -> None:
    env.client.delete("/api/v1/crates/demo/1.1.0-rc.1/yank", headers={"Authorization": alice})
    assert env.client.get("/api/v1/crates/demo").json()["crate"]["max_version"] == "1.0.0"


def test_search_finds_crates_by_name_and_description(env: RegistryEnv, alice: str) -> None:
    env.publish(alice, "other", "0.1.0", description="something else")
    body = env.client.get("/api/v1/crates", params={"q": "dem", "per_page": "5"}).json()
    assert [c["name"] for c in body["crates"]] == ["demo"]
    assert body["meta"] == {"total": 1}
    assert body["crates"][0]["description"] == "the demo crate"  # the latest publish
    body = env.client.get("/api/v1/crates", params={"q": "else"}).json()
    assert [c["name"] for c in body["crates"]] == ["other"]
    assert env.client.get("/api/v1/crates", params={"q": "%"}).json()["meta"]["total"] == 0
    response = env.client.get("/api/v1/crates", params={"per_page": "1000"})
    assert response.status_code == 400


def test_api_lookups_treat_dash_and_underscore_alike(env: RegistryEnv, alice: str) -> None:
    env.publish(alice, "my_crate", "1.0.0")
    assert env.client.get("/api/v1/crates/my-crate").json()["crate"]["name"] == "my_crate"
