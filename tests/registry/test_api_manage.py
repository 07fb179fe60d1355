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


def test_owner_add_invites_and_remove_removes(env: RegistryEnv, alice: str) -> None:
    headers = {"Authorization": alice}
    response = env.client.put(
        "/api/v1/crates/demo/owners", json={"users": ["bob"]}, headers=headers
    )
    assert response.json() == {
        "ok": True,
        "msg": "user bob has been invited to be an owner of crate demo",
    }
    assert owners(env) == ["alice"]
    assert env.answer_invitation(env.token("bob"), "demo").status_code == 200
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


@pytest.mark.parametrize(
    ("name", "value"),
    [("per_page", "²"), ("per_page", "٣"), ("page", "9" * 5000), ("page", "0"), ("page", "-1")],
)
def test_search_paging_takes_ascii_digits_in_range_only(
    env: RegistryEnv, name: str, value: str
) -> None:
    response = env.client.get("/api/v1/crates", params={name: value})
    assert response.status_code == 400
    assert f"`{name}` must be an integer from 1 to" in detail(response)


def test_api_lookups_treat_dash_and_underscore_alike(env: RegistryEnv, alice: str) -> None:
    env.publish(alice, "my_crate", "1.0.0")
    assert env.client.get("/api/v1/crates/my-crate").json()["crate"]["name"] == "my_crate"


def test_versions_endpoint_lists_every_version_newest_first(env: RegistryEnv, alice: str) -> None:
    env.client.delete("/api/v1/crates/demo/1.0.0/yank", headers={"Authorization": alice})
    response = env.client.get("/api/v1/crates/demo/versions")
    assert response.status_code == 200
    body = response.json()
    assert [v["num"] for v in body["versions"]] == ["1.1.0-rc.1", "1.0.0"]
    # The same version objects as the crate endpoint, yanked ones included.
    assert body["versions"] == env.client.get("/api/v1/crates/demo").json()["versions"]
    assert body["versions"][1]["yanked"] is True
    assert body["meta"] == {"total": 2, "next_page": None}


def test_versions_endpoint_finds_the_crate_by_its_canonical_name(
    env: RegistryEnv, alice: str
) -> None:
    env.publish(alice, "my_crate", "0.1.0")
    body = env.client.get("/api/v1/crates/My-Crate/versions").json()
    assert [(v["crate"], v["num"]) for v in body["versions"]] == [("my_crate", "0.1.0")]


def test_versions_of_an_unknown_crate_is_404(env: RegistryEnv) -> None:
    response = env.client.get("/api/v1/crates/nope/versions")
    assert response.status_code == 404
    assert detail(response) == "crate `nope` does not exist"


def test_every_link_in_the_crate_and_version_json_is_served(env: RegistryEnv, alice: str) -> None:
    assert env.publish(alice, "demo", "2.0.0+build.7").status_code == 200
    crate = env.client.get("/api/v1/crates/demo").json()
    links = list(crate["crate"]["links"].values())
    assert sorted(links) == ["/api/v1/crates/demo/owners", "/api/v1/crates/demo/versions"]
    versions = env.client.get(crate["crate"]["links"]["versions"]).json()["versions"]
    links += [v["dl_path"] for v in versions]
    assert "/api/v1/crates/demo/2.0.0%2Bbuild.7/download" in links
    searched = env.client.get("/api/v1/crates", params={"q": "demo"}).json()["crates"][0]
    assert searched["links"] == crate["crate"]["links"]
    for link in links:
        response = env.client.get(link)
        assert response.status_code == 200, link
