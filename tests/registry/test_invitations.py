"""Owner invitations, as crates.io: adding an owner invites; the invited user accepts
or declines through /api/v1/me/crate_owner_invitations; invitations expire."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest

from tests.registry.conftest import RegistryEnv, detail
from trustpub.grants import Operation
from trustpub.web import rfc3339

OWNERS = "/api/v1/crates/demo/owners"
INVITATIONS = "/api/v1/me/crate_owner_invitations"


@pytest.fixture
def alice(env: RegistryEnv) -> str:
    for login in ("alice", "bob", "carol"):
        env.user(login)
    token = env.token("alice")
    assert env.publish(token, "demo", "1.0.0").status_code == 200
    return token


def owners(env: RegistryEnv, crate: str = "demo") -> list[str]:
    users = env.client.get(f"/api/v1/crates/{crate}/owners").json()["users"]
    return [u["login"] for u in users]


def invite(env: RegistryEnv, token: str, *logins: str, crate: str = "demo") -> Any:
    return env.client.put(
        f"/api/v1/crates/{crate}/owners",
        json={"users": list(logins)},
        headers={"Authorization": token},
    )


def crate_id(env: RegistryEnv, crate: str = "demo") -> int:
    found = env.registry.db.crate(crate)
    assert found is not None
    return found.id


def answer(env: RegistryEnv, token: str, body: object, cid: int | None = None) -> Any:
    cid = crate_id(env) if cid is None else cid
    return env.client.put(f"{INVITATIONS}/{cid}", json=body, headers={"Authorization": token})


def test_an_invited_user_sees_the_invitation_and_becomes_an_owner_on_accepting(
    env: RegistryEnv, alice: str, caplog: pytest.LogCaptureFixture
) -> None:
    before = int(time.time())
    with caplog.at_level(logging.INFO, logger="trustpub.audit"):
        response = invite(env, alice, "bob")
    assert response.status_code == 200
    assert response.json() == {
        "ok": True,
        "msg": "user bob has been invited to be an owner of crate demo",
    }
    assert owners(env) == ["alice"]
    bob = env.token("bob")
    listing = env.client.get(INVITATIONS, headers={"Authorization": bob}).json()
    (invitation,) = listing["crate_owner_invitations"]
    ids = {u["login"]: u["id"] for u in env.client.get(OWNERS).json()["users"]}
    bob_id = next(u.id for u in env.registry.db.users() if u.login == "bob")
    assert invitation["crate_name"] == "demo"
    assert invitation["crate_id"] == crate_id(env)
    assert invitation["invitee_id"] == bob_id
    assert invitation["inviter_id"] == ids["alice"]
    assert invitation["invited_by_username"] == "alice"
    created = invitation["created_at"]
    assert rfc3339(before) <= created <= rfc3339(int(time.time()))
    # 30 days, as crates.io.
    assert invitation["expires_at"] > rfc3339(before + 30 * 86400 - 1)
    assert invitation["expires_at"] <= rfc3339(int(time.time()) + 30 * 86400)
    assert sorted(u["login"] for u in listing["users"]) == ["alice", "bob"]
    # Nobody else sees it.
    carol = env.token("carol")
    assert env.invitations(carol) == []

    response = answer(
        env, bob, {"crate_owner_invite": {"crate_id": crate_id(env), "accepted": True}}
    )
    assert response.status_code == 200
    assert response.json() == {
        "crate_owner_invitation": {"crate_id": crate_id(env), "accepted": True}
    }
    assert owners(env) == ["alice", "bob"]
    assert env.invitations(bob) == []
    events = [getattr(r, "fields") for r in caplog.records if r.name == "trustpub.audit"]  # noqa: B009
    sent = next(e for e in events if e.get("event") == "owner-invitation")
    assert (sent["outcome"], sent["crate"], sent["invitee"], sent["inviter"]) == (
        "invited",
        "demo",
        "bob",
        "alice",
    )


def test_a_declined_invitation_is_gone_and_adds_no_owner(env: RegistryEnv, alice: str) -> None:
    assert invite(env, alice, "bob").status_code == 200
    bob = env.token("bob")
    response = env.answer_invitation(bob, "demo", accept=False)
    assert response.status_code == 200
    assert response.json()["crate_owner_invitation"]["accepted"] is False
    assert owners(env) == ["alice"]
    assert env.invitations(bob) == []
    # Nothing left to accept.
    response = answer(
        env, bob, {"crate_owner_invite": {"crate_id": crate_id(env), "accepted": True}}
    )
    assert response.status_code == 404
    assert owners(env) == ["alice"]


def expire_invitations(env: RegistryEnv) -> None:
    past = int(time.time()) - 1
    # As crates.io's tests do: the stored expiry moved into the past (autocommit).
    env.registry.db.call(
        lambda c: c.execute("UPDATE owner_invitations SET expires_at = ?", (past,))
    )


def test_an_expired_invitation_cannot_be_accepted_and_a_new_one_replaces_it(
    env: RegistryEnv, alice: str
) -> None:
    assert invite(env, alice, "bob").status_code == 200
    bob = env.token("bob")
    cid = crate_id(env)
    expire_invitations(env)
    assert env.invitations(bob) == []  # an expired invitation is not listed
    response = answer(env, bob, {"crate_owner_invite": {"crate_id": cid, "accepted": True}})
    assert response.status_code == 410
    assert detail(response) == (
        "The invitation to become an owner of the demo crate expired. "
        "Please reach out to an owner of the crate to request a new invitation."
    )
    assert owners(env) == ["alice"]
    # Inviting again replaces the expired invitation; this one can be accepted.
    assert invite(env, alice, "bob").json()["msg"] == (
        "user bob has been invited to be an owner of crate demo"
    )
    assert env.answer_invitation(bob, "demo").status_code == 200
    assert owners(env) == ["alice", "bob"]


def test_the_invitation_lifetime_is_configurable(tmp_path: Any) -> None:
    from starlette.testclient import TestClient

    from tests.registry.conftest import PUBLIC_URL, FakeAuthority
    from trustpub.registry import create_registry_app

    app = create_registry_app(
        tmp_path, PUBLIC_URL, authority=FakeAuthority(), invitation_ttl=2 * 3600
    )
    with TestClient(app) as client:
        env = RegistryEnv(client, app.state.registry, FakeAuthority(), tmp_path)
        env.user("alice")
        env.user("bob")
        alice = env.token("alice")
        assert env.publish(alice, "demo", "1.0.0").status_code == 200
        before = int(time.time())
        assert invite(env, alice, "bob").status_code == 200
        (invitation,) = env.invitations(env.token("bob"))
        assert rfc3339(before + 2 * 3600) <= invitation["expires_at"]
        assert invitation["expires_at"] <= rfc3339(int(time.time()) + 2 * 3600)


def test_a_pending_invitation_is_kept_and_reported(env: RegistryEnv, alice: str) -> None:
    assert invite(env, alice, "bob").status_code == 200
    response = invite(env, alice, "bob", "carol")
    assert response.status_code == 200
    assert response.json()["msg"] == (
        "user carol has been invited to be an owner of crate demo,"
        "user bob already has a pending invitation to be an owner of crate demo"
    )


def test_inviting_an_owner_or_an_unknown_user_writes_nothing(env: RegistryEnv, alice: str) -> None:
    response = invite(env, alice, "bob", "ghost")
    assert response.status_code == 404
    assert detail(response) == "could not find user with login `ghost`"
    response = invite(env, alice, "bob", "alice")
    assert response.status_code == 400
    assert detail(response) == "`alice` is already an owner of crate `demo`"
    assert env.invitations(env.token("bob")) == []


def test_only_an_owner_with_change_owners_may_invite(env: RegistryEnv, alice: str) -> None:
    response = invite(env, env.token("bob"), "carol")
    assert response.status_code == 403
    narrow = env.token("alice", scopes=("publish-update",))
    response = invite(env, narrow, "carol")
    assert response.status_code == 403
    assert "`change-owners` scope" in detail(response)
    assert env.invitations(env.token("carol")) == []


def test_answering_needs_the_change_owners_scope_on_that_crate(
    env: RegistryEnv, alice: str
) -> None:
    assert invite(env, alice, "bob").status_code == 200
    body = {"crate_owner_invite": {"crate_id": crate_id(env), "accepted": True}}
    for scopes, crates in (
        (("read",), ()),
        (("publish-update",), ()),
        (("change-owners",), ("other",)),
    ):
        token = env.token("bob", scopes=scopes, crates=crates)
        # Any of the user's tokens lists the invitations...
        assert len(env.invitations(token)) == 1
        # ...only one that may change the crate's owners answers them.
        response = answer(env, token, body)
        assert response.status_code == 403, (scopes, crates)
    assert owners(env) == ["alice"]
    token = env.token("bob", scopes=("change-owners",), crates=("dem*",))
    assert answer(env, token, body).status_code == 200
    assert owners(env) == ["alice", "bob"]


def test_another_users_invitation_cannot_be_answered(env: RegistryEnv, alice: str) -> None:
    assert invite(env, alice, "bob").status_code == 200
    carol = env.token("carol")
    body = {"crate_owner_invite": {"crate_id": crate_id(env), "accepted": True}}
    response = answer(env, carol, body)
    assert response.status_code == 404
    assert "no pending owner invitation" in detail(response)
    assert owners(env) == ["alice"]


def test_trusted_publishing_tokens_have_no_invitations(env: RegistryEnv, alice: str) -> None:
    token = env.authority.grant({"demo": {Operation.CHANGE_OWNERS}})
    response = env.client.get(INVITATIONS, headers={"Authorization": token})
    assert response.status_code == 403
    assert "Trusted Publishing tokens cannot" in detail(response)
    assert env.client.get(INVITATIONS).status_code == 403


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"crate_owner_invite": {"crate_id": "1", "accepted": True}},
        {"crate_owner_invite": {"crate_id": True, "accepted": True}},
        {"crate_owner_invite": {"crate_id": 1, "accepted": "yes"}},
        {"crate_owner_invite": [1, True]},
    ],
)
def test_malformed_answers_are_refused(env: RegistryEnv, alice: str, body: object) -> None:
    assert invite(env, alice, "bob").status_code == 200
    response = answer(env, env.token("bob"), body)
    assert response.status_code == 400
    assert detail(response).startswith("invalid json request")
    assert owners(env) == ["alice"]


def test_answers_that_do_not_parse_or_disagree_are_refused(env: RegistryEnv, alice: str) -> None:
    assert invite(env, alice, "bob").status_code == 200
    bob = {"Authorization": env.token("bob")}
    cid = crate_id(env)
    url = f"{INVITATIONS}/{cid}"
    other = {"crate_owner_invite": {"crate_id": cid + 1, "accepted": True}}
    assert env.client.put(url, json=other, headers=bob).status_code == 400
    deep = b"[" * 10_000 + b"]" * 10_000
    assert env.client.put(url, content=deep, headers=bob).status_code == 400
    huge = b'{"x": "' + b"a" * 2_000_000 + b'"}'
    assert env.client.put(url, content=huge, headers=bob).status_code == 413
    assert env.client.put(url, content='{"é": 1'.encode(), headers=bob).status_code == 400
    assert env.client.put(f"{INVITATIONS}/demo", json=other, headers=bob).status_code == 404
    assert owners(env) == ["alice"]
    assert len(env.invitations(bob["Authorization"])) == 1


def test_policy_owners_of_a_new_crate_are_owners_at_once(env: RegistryEnv) -> None:
    env.user("alice")
    token = env.authority.grant({"fresh": {Operation.PUBLISH_NEW}}, owners={"fresh": ("alice",)})
    assert env.publish(token, "fresh", "0.1.0").status_code == 200
    assert owners(env, "fresh") == ["alice"]
    assert env.invitations(env.token("alice")) == []
