"""trustpub tokens at the registry: per-crate operations, new crates, trustpub_only,
provenance on published versions."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from tests.registry.conftest import PROVENANCE, PUBLIC_URL, RegistryEnv, detail
from tests.registry.helpers import body_for
from trustpub.grants import Operation
from trustpub.registry import Registry, create_registry_app
from trustpub.tokens.format import generate_token

NEW = Operation.PUBLISH_NEW
UPDATE = Operation.PUBLISH_UPDATE
YANK = Operation.YANK
OWNERS = Operation.CHANGE_OWNERS


@pytest.fixture
def alice(env: RegistryEnv) -> str:
    env.user("alice")
    token = env.token("alice")
    assert env.publish(token, "demo", "1.0.0").status_code == 200
    return token


def yank(env: RegistryEnv, token: str, name: str, vers: str, undo: bool = False) -> tuple[int, str]:
    path = f"/api/v1/crates/{name}/{vers}/{'unyank' if undo else 'yank'}"
    headers = {"Authorization": token}
    response = (env.client.put if undo else env.client.delete)(path, headers=headers)
    return response.status_code, response.text


def test_publish_update_with_a_token_naming_the_crate(env: RegistryEnv, alice: str) -> None:
    token = env.authority.grant({"demo": {UPDATE}})
    assert env.publish(token, "demo", "1.1.0").status_code == 200
    version = env.client.get("/api/v1/crates/demo/1.1.0").json()["version"]
    assert version["published_by"] is None
    data = version["trustpub_data"]
    assert data["provider"] == "github"
    assert data["repository"] == PROVENANCE.repository
    assert data["run_id"] == PROVENANCE.run_id
    assert data["sha"] == PROVENANCE.sha
    assert data["policies"] == ["release.toml#octo-lib"]
    manual = env.client.get("/api/v1/crates/demo/1.0.0").json()["version"]
    assert manual["published_by"] == {"login": "alice"}
    assert manual["trustpub_data"] is None


def test_a_token_not_naming_the_crate_is_refused_with_crates_io_wording(
    env: RegistryEnv, alice: str
) -> None:
    token = env.authority.grant({"other": {UPDATE, YANK}})
    response = env.publish(token, "demo", "1.1.0")
    assert response.status_code == 403
    assert detail(response) == "The provided access token is not valid for crate `demo`"
    status, text = yank(env, token, "demo", "1.0.0")
    assert status == 403
    assert "not valid for crate `demo`" in text


def test_a_missing_operation_is_named(env: RegistryEnv, alice: str) -> None:
    token = env.authority.grant({"demo": {UPDATE}})
    status, text = yank(env, token, "demo", "1.0.0")
    assert status == 403
    assert "does not allow `yank` on crate `demo`" in text
    assert "grants: publish-update" in text
    response = env.client.put(
        "/api/v1/crates/demo/owners", json={"users": ["alice"]}, headers={"Authorization": token}
    )
    assert "does not allow `change-owners`" in detail(response)


def test_yank_and_unyank_with_a_granting_token(env: RegistryEnv, alice: str) -> None:
    token = env.authority.grant({"demo": {YANK}})
    assert yank(env, token, "demo", "1.0.0")[0] == 200
    assert env.index_lines("demo")[0]["yanked"] is True
    assert yank(env, token, "demo", "1.0.0", undo=True)[0] == 200
    assert env.index_lines("demo")[0]["yanked"] is False
    status, text = yank(env, token, "demo", "7.0.0")
    assert status == 404
    assert "does not have a version `7.0.0`" in text


def test_owner_changes_with_a_granting_token(env: RegistryEnv, alice: str) -> None:
    env.user("bob")
    token = env.authority.grant({"demo": {OWNERS}})
    headers = {"Authorization": token}
    added = env.client.put("/api/v1/crates/demo/owners", json={"users": ["bob"]}, headers=headers)
    assert added.json()["ok"] is True
    (invitation,) = env.invitations(bob := env.token("bob"))
    # Sent by a CI workflow, not by a user.
    assert (invitation["inviter_id"], invitation["invited_by_username"]) == (None, None)
    assert env.answer_invitation(bob, "demo").status_code == 200
    logins = [u["login"] for u in env.client.get("/api/v1/crates/demo/owners").json()["users"]]
    assert logins == ["alice", "bob"]
    removed = env.client.request(
        "DELETE", "/api/v1/crates/demo/owners", json={"users": ["alice"]}, headers=headers
    )
    assert removed.status_code == 200
    logins = [u["login"] for u in env.client.get("/api/v1/crates/demo/owners").json()["users"]]
    assert logins == ["bob"]


def test_a_new_crate_needs_publish_new_for_that_exact_name(env: RegistryEnv) -> None:
    env.user("alice")
    for grant in ({"fresh": {UPDATE}}, {"other": {NEW}}, {"Fresh": {NEW}}):
        token = env.authority.grant(grant, owners={"other": ("alice",), "Fresh": ("alice",)})
        response = env.publish(token, "fresh", "0.1.0")
        assert response.status_code == 403
        assert detail(response) == (
            "Trusted Publishing tokens do not support creating new crates. "
            "Publish the crate manually, first"
        )
    assert env.crate_files() == []


def test_a_new_crate_through_publish_new_is_owned_by_the_policy_owners(
    env: RegistryEnv,
) -> None:
    env.user("alice")
    env.user("bob")
    token = env.authority.grant({"fresh": {NEW, UPDATE}}, owners={"fresh": ("alice", "bob")})
    assert env.publish(token, "fresh", "0.1.0").status_code == 200
    owners = env.client.get("/api/v1/crates/fresh/owners").json()["users"]
    assert [u["login"] for u in owners] == ["alice", "bob"]
    assert env.publish(token, "fresh", "0.2.0").status_code == 200


def test_new_crate_owners_differing_only_in_case_are_one_owner(env: RegistryEnv) -> None:
    env.user("alice")
    env.user("bob")
    owners = ("Alice", "alice", "bob", "ALICE", "Bob")
    token = env.authority.grant({"fresh": {NEW, UPDATE}}, owners={"fresh": owners})
    assert env.publish(token, "fresh", "0.1.0").status_code == 200
    users = env.client.get("/api/v1/crates/fresh/owners").json()["users"]
    assert [u["login"] for u in users] == ["alice", "bob"]


def test_a_new_crate_with_unknown_or_no_owners_is_refused(env: RegistryEnv) -> None:
    token = env.authority.grant({"fresh": {NEW}}, owners={"fresh": ("ghost",)})
    response = env.publish(token, "fresh", "0.1.0")
    assert response.status_code == 403
    assert "names owner `ghost`, who is not a user of this registry" in detail(response)
    token = env.authority.grant({"fresh": {NEW}})
    assert "names no owners" in detail(env.publish(token, "fresh", "0.1.0"))
    assert env.registry.db.crate("fresh") is None


def test_an_unknown_trustpub_token_is_refused(env: RegistryEnv, alice: str) -> None:
    from trustpub.tokens.format import generate_token

    response = env.publish(generate_token(), "demo", "1.1.0")
    assert response.status_code == 403
    assert "Trusted Publishing token is invalid, expired or revoked" in detail(response)


# -- trustpub_only ---------------------------------------------------------------------


def patch(env: RegistryEnv, token: str, body: object, name: str = "demo") -> tuple[int, str]:
    response = env.client.patch(
        f"/api/v1/crates/{name}", json=body, headers={"Authorization": token}
    )
    return response.status_code, response.text


def test_trustpub_only_refuses_api_token_publishes(env: RegistryEnv, alice: str) -> None:
    status, text = patch(env, alice, {"crate": {"trustpub_only": True}})
    assert status == 200
    assert '"trustpub_only":true' in text
    response = env.publish(alice, "demo", "1.1.0")
    assert response.status_code == 403
    assert "Trusted Publishing is required for crate `demo`" in detail(response)
    assert env.crate_files() == ["demo-1.0.0.crate"]
    assert env.publish(env.authority.grant({"demo": {UPDATE}}), "demo", "1.1.0").status_code == 200
    # Turned off again, API tokens work.
    assert patch(env, alice, {"crate": {"trustpub_only": False}})[0] == 200
    assert env.publish(alice, "demo", "1.2.0").status_code == 200


def test_only_owners_with_the_trusted_publishing_scope_change_trustpub_only(
    env: RegistryEnv, alice: str
) -> None:
    env.user("mallory")
    status, text = patch(env, env.token("mallory"), {"crate": {"trustpub_only": True}})
    assert status == 403
    assert "not an owner" in text
    no_scope = env.token("alice", scopes=("publish-update",))
    status, text = patch(env, no_scope, {"crate": {"trustpub_only": True}})
    assert "`trusted-publishing` scope" in text
    ci = env.authority.grant({"demo": {UPDATE, NEW, YANK, OWNERS}})
    status, text = patch(env, ci, {"crate": {"trustpub_only": False}})
    assert status == 403
    assert "Trusted Publishing tokens cannot change crate settings" in text
    assert env.registry.db.crate("demo").trustpub_only is False  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"crate": {"trustpub_only": "yes"}}, 400),
        ({"crate": {}}, 400),
        ({"trustpub_only": True}, 400),
        # Not an object at all: the service-wide answer for a JSON body of the wrong shape.
        ([1], 422),
    ],
)
def test_malformed_patch_bodies_are_refused(
    env: RegistryEnv, alice: str, body: object, expected: int
) -> None:
    status, text = patch(env, alice, body)
    assert status == expected
    assert "errors" in text


def test_patch_on_an_unknown_crate_is_404(env: RegistryEnv, alice: str) -> None:
    assert patch(env, alice, {"crate": {"trustpub_only": True}}, name="nope")[0] == 404


def test_owners_from_an_introspection_answer_are_deduplicated(tmp_path: Path) -> None:
    # A remote trustpub answers for the token: its owner list is not ours to trust to be
    # tidy, and `Alice`/`alice` must become one owner, not a refused or doubled one.
    answer = {
        "active": True,
        "crates": {"fresh": ["publish-new", "publish-update"]},
        "expires_at": "2099-01-01T00:00:00Z",
        "issued_at": "2020-01-01T00:00:00Z",
        "provenance": PROVENANCE.to_json(),
        "policies": ["ci.toml#fresh"],
        "new_crate_owners": {"fresh": ["Alice", "alice", "ALICE"]},
    }
    client = httpx.AsyncClient(
        transport=httpx.MockTransport(lambda request: httpx.Response(200, json=answer))
    )
    app = create_registry_app(
        tmp_path,
        PUBLIC_URL,
        trustpub_url="https://trustpub.example",
        credential="registry-secret-123456",
        http_client=client,
    )
    with TestClient(app) as test_client:
        registry: Registry = app.state.registry
        registry.db.add_user("alice")
        headers = {"Authorization": generate_token()}
        response = test_client.put(
            "/api/v1/crates/new", content=body_for("fresh", "0.1.0"), headers=headers
        )
        assert response.status_code == 200, response.text
        users = test_client.get("/api/v1/crates/fresh/owners").json()["users"]
        assert [u["login"] for u in users] == ["alice"]
