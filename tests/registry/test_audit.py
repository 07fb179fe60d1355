"""The audit trail: what is recorded (inside each change's transaction), who may read
it (owners, with an API token), and that it cannot be changed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.registry.conftest import PROVENANCE, PUBLIC_URL, FakeAuthority, RegistryEnv, detail
from trustpub.api.access import AccessLog
from trustpub.cli import main
from trustpub.grants import Operation
from trustpub.registry import Registry, create_registry_app
from trustpub.registry.auth import user_token_hash
from trustpub.registry.db import RegistryDB
from trustpub.registry.db import events as kinds
from trustpub.registry.db.queries import Connection

UPDATE = Operation.PUBLISH_UPDATE


@pytest.fixture
def logged(tmp_path: Path) -> Iterator[RegistryEnv]:
    """The registry behind the access log, which sets the request context (client
    address, request id) as the service does."""
    authority = FakeAuthority()
    app = create_registry_app(tmp_path, PUBLIC_URL, authority=authority)
    with TestClient(AccessLog(app)) as client:
        registry: Registry = app.state.registry
        yield RegistryEnv(client, registry, authority, tmp_path)


def audit(env: RegistryEnv, token: str | None, name: str = "demo", **params: Any) -> Any:
    headers = {"Authorization": token} if token is not None else {}
    return env.client.get(f"/api/v1/crates/{name}/audit", headers=headers, params=params)


def owned(env: RegistryEnv) -> str:
    env.user("alice")
    token = env.token("alice")
    assert env.publish(token, "demo", "1.0.0").status_code == 200
    return token


def test_a_trusted_publishing_release_is_recorded_with_provenance_client_and_request_id(
    logged: RegistryEnv,
) -> None:
    env = logged
    alice = owned(env)
    ci = env.authority.grant({"demo": {UPDATE}})
    response = env.client.put(
        "/api/v1/crates/new",
        content=__import__("tests.registry.helpers", fromlist=["body_for"]).body_for(
            "demo", "1.1.0"
        ),
        headers={"Authorization": ci, "X-Request-Id": "req-42"},
    )
    assert response.status_code == 200, response.text
    events = audit(env, alice).json()["events"]
    published = [e for e in events if e["kind"] == kinds.TRUSTPUB_PUBLISH]
    assert len(published) == 1
    event = published[0]
    assert event["crate"] == "demo"
    assert event["details"]["version"] == "1.1.0"
    assert event["details"]["provenance"]["repository"] == PROVENANCE.repository
    assert event["details"]["provenance"]["run_id"] == PROVENANCE.run_id
    assert event["request_id"] == "req-42"
    assert event["client"] == "testclient"
    # A release with an API token is not a Trusted Publishing event.
    assert not [e for e in events if e["details"].get("version") == "1.0.0"]


def test_owner_and_trustpub_only_changes_name_the_owner_who_made_them(env: RegistryEnv) -> None:
    alice = owned(env)
    env.user("bob")
    bob = env.token("bob")
    headers = {"Authorization": alice}
    invited = env.client.put("/api/v1/crates/demo/owners", json={"users": ["bob"]}, headers=headers)
    assert invited.status_code == 200
    crate_id = env.registry.db.crate("demo")
    assert crate_id is not None
    accepted = env.client.put(
        f"/api/v1/me/crate_owner_invitations/{crate_id.id}",
        json={"crate_owner_invite": {"crate_id": crate_id.id, "accepted": True}},
        headers={"Authorization": bob},
    )
    assert accepted.status_code == 200
    assert (
        env.client.request(
            "DELETE", "/api/v1/crates/demo/owners", json={"users": ["bob"]}, headers=headers
        ).status_code
        == 200
    )
    assert (
        env.client.patch(
            "/api/v1/crates/demo", json={"crate": {"trustpub_only": True}}, headers=headers
        ).status_code
        == 200
    )
    # Setting it to what it is already changes nothing, and records nothing.
    assert (
        env.client.patch(
            "/api/v1/crates/demo", json={"crate": {"trustpub_only": True}}, headers=headers
        ).status_code
        == 200
    )
    events = audit(env, alice).json()["events"]
    invitation = events[3]
    assert (invitation["kind"], invitation["actor"], invitation["details"]["invitee"]) == (
        kinds.OWNER_INVITED,
        "alice",
        "bob",
    )
    assert [(e["kind"], e["actor"], e["details"]) for e in events[:3]] == [
        (kinds.TRUSTPUB_ONLY, "alice", {"trustpub_only": True}),
        (kinds.OWNERS_REMOVED, "alice", {"logins": ["bob"]}),
        (kinds.OWNERS_ADDED, "bob", {"logins": ["bob"], "invitation": True}),
    ]
    assert len(events) == 4


def test_a_refused_change_leaves_no_event(env: RegistryEnv) -> None:
    alice = owned(env)
    # Removing the last owner is refused inside the transaction: nothing recorded.
    response = env.client.request(
        "DELETE",
        "/api/v1/crates/demo/owners",
        json={"users": ["alice"]},
        headers={"Authorization": alice},
    )
    assert response.status_code == 400
    assert audit(env, alice).json()["events"] == []


def test_the_trail_is_paginated_newest_first(env: RegistryEnv) -> None:
    alice = owned(env)
    for value in (True, False, True, False, True):
        env.client.patch(
            "/api/v1/crates/demo",
            json={"crate": {"trustpub_only": value}},
            headers={"Authorization": alice},
        )
    first = audit(env, alice, per_page=2).json()
    assert first["meta"] == {"total": 5, "next_page": "?page=2&per_page=2"}
    ids = [e["id"] for e in first["events"]]
    assert ids == sorted(ids, reverse=True)
    last = audit(env, alice, per_page=2, page=3).json()
    assert last["meta"]["next_page"] is None
    assert len(last["events"]) == 1
    assert last["events"][0]["id"] < ids[-1]
    bad = audit(env, alice, per_page=0)
    assert bad.status_code == 400


def test_only_owners_read_the_trail(env: RegistryEnv) -> None:
    alice = owned(env)
    env.user("mallory")
    mallory = env.token("mallory")
    missing = audit(env, None)
    assert missing.status_code == 401
    assert "Authorization" in detail(missing)
    invalid = audit(env, "tpreg_" + "x" * 40)
    assert invalid.status_code == 401
    assert audit(env, alice, name="nope").status_code == 404
    assert detail(audit(env, alice, name="nope")) == "crate `nope` does not exist"
    other = audit(env, mallory)
    assert other.status_code == 403
    assert detail(other) == "You are not an owner of crate `demo`"
    scoped = env.token("alice", crates=("other*",))
    assert audit(env, scoped).status_code == 403
    ci = env.authority.grant({"demo": {UPDATE}})
    assert audit(env, ci).status_code == 403
    assert audit(env, alice).status_code == 200


def test_token_creation_and_revocation_are_recorded(tmp_path: Path) -> None:
    db = RegistryDB(tmp_path / "registry.db")
    db.open()
    try:
        db.add_user("alice")
        token = db.add_token("alice", "ci", user_token_hash("tpreg_x"), ["yank"], ["demo"], None)
        assert db.revoke_token(token.id, actor_login="alice")
        assert not db.revoke_token(token.id)  # already revoked: nothing more recorded
        found, total = db.audit(None, 10, 0)
    finally:
        db.close()
    assert total == 2
    revoked, created = (event for event, _ in found)
    assert created.kind == kinds.TOKEN_CREATED
    assert created.details == {
        "token_id": token.id,
        "user": "alice",
        "name": "ci",
        "scopes": ["yank"],
        "crates": ["demo"],
        "expires_at": None,
    }
    assert revoked.kind == kinds.TOKEN_REVOKED
    assert revoked.actor_login == "alice"
    assert revoked.details == {"token_id": token.id, "user": "alice", "name": "ci"}
    # Never the token, nor its hash.
    assert "tpreg_x" not in json.dumps([created.details, revoked.details])


def test_the_trail_refuses_update_and_delete(env: RegistryEnv) -> None:
    alice = owned(env)
    env.client.patch(
        "/api/v1/crates/demo",
        json={"crate": {"trustpub_only": True}},
        headers={"Authorization": alice},
    )
    db = env.registry.db

    def count() -> int:
        return int(db.call(lambda c: c.execute("SELECT COUNT(*) FROM audit_events").fetchone()[0]))

    before = count()
    assert before == 2  # alice's token, and trustpub_only
    for statement in (
        "UPDATE audit_events SET actor_login = 'mallory'",
        "DELETE FROM audit_events",
    ):
        # Refused by the database itself (SQLite's triggers, PostgreSQL's trigger
        # function), on either engine.
        def change(c: Connection, statement: str = statement) -> None:
            c.execute(statement)

        with pytest.raises(Exception, match="append-only"):
            db.call(change)
    assert count() == before
    actors = db.call(
        lambda c: sorted(
            (r[0] or "")
            for r in c.execute("SELECT DISTINCT actor_login FROM audit_events").fetchall()
        )
    )
    assert actors == ["", "alice"]


def test_an_unknown_kind_is_refused(tmp_path: Path) -> None:
    db = RegistryDB(tmp_path / "registry.db")
    db.open()
    try:
        with pytest.raises(ValueError, match="unknown audit event kind"):
            db.call(
                lambda c: kinds.record_event(
                    c, kind="nope", crate=None, actor_login=None, details={}, now=0
                )
            )
    finally:
        db.close()


def cli(tmp_path: Path, *args: str) -> int:
    return main(["registry", "--data-dir", str(tmp_path), *args])


def test_cli_user_email_and_audit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(tmp_path, "user", "add", "alice", "--email", "alice@example.org") == 0
    assert cli(tmp_path, "user", "add", "bob", "--email", "bob@example.org\r\nBcc: x@y.z") == 2
    assert "invalid email address" in capsys.readouterr().err
    assert cli(tmp_path, "user", "add", "bob") == 0
    assert cli(tmp_path, "user", "set-email", "bob", "bob@example.org") == 0
    assert cli(tmp_path, "user", "set-email", "alice", "--clear") == 0
    assert cli(tmp_path, "user", "set-email", "nobody", "n@example.org") == 1
    assert cli(tmp_path, "user", "set-email", "bob", "not-an-address") == 2
    capsys.readouterr()
    assert cli(tmp_path, "user", "list", "--json") == 0
    users = {u["login"]: u["email"] for u in json.loads(capsys.readouterr().out)}
    assert users == {"alice": None, "bob": "bob@example.org"}

    assert cli(tmp_path, "token", "create", "--user", "bob", "--scope", "yank") == 0
    assert cli(tmp_path, "token", "revoke", "1") == 0
    capsys.readouterr()
    assert cli(tmp_path, "audit", "--json") == 0
    events = json.loads(capsys.readouterr().out)
    assert [e["kind"] for e in events] == [kinds.TOKEN_REVOKED, kinds.TOKEN_CREATED]
    assert cli(tmp_path, "audit") == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:4] == ["ID", "WHEN", "KIND", "CRATE"]
    assert kinds.TOKEN_REVOKED in table[1]
    assert cli(tmp_path, "audit", "--crate", "nope") == 1
