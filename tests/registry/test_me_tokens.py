"""API tokens over HTTP, as crates.io's /api/v1/me/tokens: created (shown once), listed,
revoked; only a token that may manage tokens does it, and never beyond its own rights."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.registry.conftest import RegistryEnv, detail
from trustpub.grants import Operation
from trustpub.registry.actors import SCOPES
from trustpub.web import rfc3339

TOKENS = "/api/v1/me/tokens"


@pytest.fixture
def manager(env: RegistryEnv) -> str:
    env.user("alice")
    env.user("bob")
    return env.token("alice")


def create(env: RegistryEnv, token: str, **fields: Any) -> Any:
    return env.client.put(TOKENS, json={"api_token": fields}, headers={"Authorization": token})


def listed(env: RegistryEnv, token: str) -> list[dict[str, Any]]:
    response = env.client.get(TOKENS, headers={"Authorization": token})
    assert response.status_code == 200, response.text
    tokens: list[dict[str, Any]] = response.json()["api_tokens"]
    return tokens


def test_a_token_is_created_shown_once_listed_used_and_revoked(
    env: RegistryEnv, manager: str
) -> None:
    expiry = rfc3339(int(time.time()) + 86400)
    response = create(
        env,
        manager,
        name="ci",
        endpoint_scopes=["publish-update", "yank"],
        crate_scopes=["demo*"],
        expired_at=expiry,
    )
    assert response.status_code == 200, response.text
    made = response.json()["api_token"]
    assert set(made) == {
        "id", "name", "token", "created_at", "last_used_at",
        "crate_scopes", "endpoint_scopes", "expired_at",
    }  # fmt: skip
    assert made["name"] == "ci"
    assert made["endpoint_scopes"] == ["publish-update", "yank"]
    assert made["crate_scopes"] == ["demo*"]
    assert made["expired_at"] == expiry
    assert made["token"].startswith("tpreg_")
    # Listed without the secret; stored hashed.
    entries = {t["id"]: t for t in listed(env, manager)}
    assert "token" not in entries[made["id"]]
    assert entries[made["id"]]["endpoint_scopes"] == ["publish-update", "yank"]
    stored = env.registry.db.call(
        lambda c: c.execute("SELECT hash FROM api_tokens WHERE id = ?", (made["id"],)).fetchone()
    )
    assert made["token"].encode() not in bytes(stored["hash"])

    # It works, within its scopes.
    owner = env.token("alice")
    assert env.publish(owner, "demo", "1.0.0").status_code == 200
    assert env.publish(made["token"], "demo", "1.1.0").status_code == 200
    assert env.publish(made["token"], "other", "1.0.0").status_code == 403

    revoke = env.client.delete(f"{TOKENS}/{made['id']}", headers={"Authorization": manager})
    assert revoke.status_code == 200
    assert revoke.json() == {}
    assert made["id"] not in {t["id"] for t in listed(env, manager)}
    assert env.publish(made["token"], "demo", "1.2.0").status_code == 403


def test_a_token_revokes_itself(env: RegistryEnv, manager: str) -> None:
    read = env.token("alice", scopes=("read",))
    response = env.client.delete("/api/v1/tokens/current", headers={"Authorization": read})
    assert response.status_code == 204
    response = env.client.delete("/api/v1/tokens/current", headers={"Authorization": read})
    assert response.status_code == 403
    ci = env.authority.grant({"demo": {Operation.PUBLISH_UPDATE}})
    response = env.client.delete("/api/v1/tokens/current", headers={"Authorization": ci})
    assert response.status_code == 400


def test_only_a_token_manager_without_crate_scopes_manages_tokens(
    env: RegistryEnv, manager: str
) -> None:
    without = tuple(s for s in SCOPES if s != "manage-tokens")
    for token in (
        env.token("alice", scopes=without),
        env.token("alice", crates=("demo",)),
        env.authority.grant({"demo": {Operation.PUBLISH_UPDATE}}),
    ):
        headers = {"Authorization": token}
        assert env.client.get(TOKENS, headers=headers).status_code == 403
        assert create(env, token, name="x", endpoint_scopes=["read"]).status_code == 403
        assert env.client.delete(f"{TOKENS}/1", headers=headers).status_code == 403
    assert env.client.get(TOKENS).status_code == 403
    assert env.registry.db.tokens("alice")[-1].name == "test"  # nothing was created


def test_a_new_token_never_exceeds_its_creator(env: RegistryEnv, manager: str) -> None:
    narrow = env.token("alice", scopes=("manage-tokens", "read"))
    response = create(env, narrow, name="wide", endpoint_scopes=["read", "publish-new"])
    assert response.status_code == 403
    assert detail(response) == (
        "a new token cannot have scopes the token creating it lacks: publish-new"
    )
    # Without endpoint_scopes: the creator's own.
    made = create(env, narrow, name="same").json()["api_token"]
    assert made["endpoint_scopes"] == ["manage-tokens", "read"]


def test_a_token_made_by_an_expiring_token_expires_with_it(env: RegistryEnv) -> None:
    env.user("alice")
    from trustpub.registry.auth import generate_user_token, user_token_hash

    creator = generate_user_token()
    ends = int(time.time()) + 3600
    env.registry.db.add_token("alice", "short", user_token_hash(creator), SCOPES, (), ends)
    made = create(env, creator, name="child", endpoint_scopes=["read"]).json()["api_token"]
    assert made["expired_at"] == rfc3339(ends)
    later = rfc3339(ends + 60)
    response = create(env, creator, name="late", endpoint_scopes=["read"], expired_at=later)
    assert response.status_code == 400
    assert "must not be later than the creating token's expiry" in detail(response)


def test_another_users_token_is_not_revoked(env: RegistryEnv, manager: str) -> None:
    bob = env.token("bob")
    bob_id = env.registry.db.tokens("bob")[0].id
    response = env.client.delete(f"{TOKENS}/{bob_id}", headers={"Authorization": manager})
    assert response.status_code == 200
    assert env.publish(bob, "bobs", "1.0.0").status_code == 200


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, "name must have a value"),
        ({"name": ""}, "name must have a value"),
        ({"name": 7}, "name must have a value"),
        ({"name": "é"}, "name must be printable ASCII"),
        ({"name": "x" * 101}, "name must be printable ASCII"),
        ({"name": "x", "endpoint_scopes": ["admin"]}, "invalid endpoint scope"),
        ({"name": "x", "endpoint_scopes": []}, "invalid endpoint scope"),
        ({"name": "x", "endpoint_scopes": "read"}, "invalid endpoint scope"),
        ({"name": "x", "crate_scopes": ["no spaces"]}, "invalid crate scope"),
        ({"name": "x", "crate_scopes": ["a"] * 51}, "invalid crate scope"),
        ({"name": "x", "expired_at": "tomorrow"}, "expired_at must be an RFC 3339"),
        ({"name": "x", "expired_at": "2099-01-01T00:00:00"}, "expired_at must carry a time zone"),
        ({"name": "x", "expired_at": "2001-01-01T00:00:00Z"}, "expired_at must be in the future"),
    ],
)
def test_bad_token_requests_are_refused_and_create_nothing(
    env: RegistryEnv, manager: str, fields: dict[str, Any], expected: str
) -> None:
    response = create(env, manager, **fields)
    assert response.status_code == 400
    assert detail(response).startswith(expected), detail(response)
    assert len(env.registry.db.tokens("alice")) == 1


def test_malformed_bodies_are_refused(env: RegistryEnv, manager: str) -> None:
    headers = {"Authorization": manager}
    assert env.client.put(TOKENS, json={"name": "x"}, headers=headers).status_code == 400
    assert env.client.put(TOKENS, content=b"[" * 5000, headers=headers).status_code == 400
    huge = b'{"api_token": {"name": "' + b"a" * 2_000_000 + b'"}}'
    assert env.client.put(TOKENS, content=huge, headers=headers).status_code == 413
    assert len(env.registry.db.tokens("alice")) == 1


def test_a_user_holds_at_most_500_active_tokens(env: RegistryEnv, manager: str) -> None:
    from trustpub.registry.auth import generate_user_token, user_token_hash

    for _ in range(499):
        token = generate_user_token()
        env.registry.db.add_token("alice", "bulk", user_token_hash(token), ("read",), (), None)
    response = create(env, manager, name="one-too-many", endpoint_scopes=["read"])
    assert response.status_code == 400
    assert detail(response) == "maximum tokens per user is: 500"
