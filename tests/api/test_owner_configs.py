"""Owner-managed configs through crates.io's API, against the whole service: a config
made through the API lets an exchange through, its deletion refuses it again; GitLab
namespace pinning; pending publishers; bad input refused with nothing written.

GitHub's ``GET /users/{login}`` is answered by a local HTTP server (no internet)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import httpx
import pytest

from tests.api.conftest import Service, ServiceFactory
from tests.registry.helpers import body_for
from trustpub.registry import Registry
from trustpub.registry.auth import generate_user_token, user_token_hash
from trustpub.registry.configs import OwnerConfigSettings

GITHUB = "/api/v1/trusted_publishing/github_configs"
GITLAB = "/api/v1/trusted_publishing/gitlab_configs"
ALL_SCOPES = ("publish-new", "publish-update", "trusted-publishing")
ACCOUNTS = {"octo-org": {"login": "Octo-Org", "id": 131804563}}


class _GitHubUsers(BaseHTTPRequestHandler):
    requests: ClassVar[list[tuple[str, str | None]]] = []

    def do_GET(self) -> None:
        _GitHubUsers.requests.append((self.path, self.headers.get("Authorization")))
        login = self.path.removeprefix("/users/").lower()
        account = ACCOUNTS.get(login) if self.path.startswith("/users/") else None
        body = json.dumps(account or {"message": "Not Found"}).encode()
        self.send_response(200 if account else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def github_api() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _GitHubUsers)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _GitHubUsers.requests = []
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@dataclass
class Env:
    service: Service
    registry: Registry

    @property
    def client(self) -> Any:
        return self.service.client

    def token(
        self, login: str, scopes: tuple[str, ...] = ALL_SCOPES, crates: tuple[str, ...] = ()
    ) -> str:
        token = generate_user_token()
        self.registry.db.add_token(login, "t", user_token_hash(token), scopes, crates, None)
        return token

    def publish(self, token: str, name: str, vers: str) -> httpx.Response:
        response: httpx.Response = self.client.put(
            "/api/v1/crates/new", content=body_for(name, vers), headers={"Authorization": token}
        )
        return response

    def post(self, path: str, token: str | None, body: Any) -> httpx.Response:
        headers = {"Authorization": token} if token else {}
        response: httpx.Response = self.client.post(path, json=body, headers=headers)
        return response

    def list(self, path: str, token: str, crate: str) -> httpx.Response:
        response: httpx.Response = self.client.get(
            path, params={"crate": crate}, headers={"Authorization": token}
        )
        return response

    def delete(self, path: str, token: str, config_id: int) -> httpx.Response:
        response: httpx.Response = self.client.delete(
            f"{path}/{config_id}", headers={"Authorization": token}
        )
        return response


@pytest.fixture
def env(service_factory: ServiceFactory, github_api: str) -> Env:
    service = service_factory(
        policies="",
        registry_enabled=True,
        owner_configs=OwnerConfigSettings(github_api_url=github_api, github_api_token="gh-secret"),
    )
    registry = service.client.app.state.cargo_registry  # type: ignore[attr-defined]
    for login in ("alice", "bob"):
        registry.db.add_user(login)
    return Env(service, registry)


def github_config(**changes: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "crate": "octo-lib",
        "repository_owner": "octo-org",
        "repository_name": "octo-lib",
        "workflow_filename": "release.yml",
        "environment": None,
    }
    config.update(changes)
    return {"github_config": config}


def detail(response: httpx.Response) -> str:
    errors = response.json()["errors"]
    text: str = errors[0]["detail"]
    return text


def test_github_config_create_exchange_list_delete(env: Env) -> None:
    alice = env.token("alice")
    assert env.publish(alice, "octo-lib", "1.0.0").status_code == 200
    refused = env.service.exchange(env.service.github_jwt())
    assert refused.status_code == 400
    assert (
        detail(refused) == "No Trusted Publishing config found for repository `octo-org/octo-lib`."
    )

    created = env.post(GITHUB, alice, github_config())
    assert created.status_code == 200, created.text
    config = created.json()["github_config"]
    assert set(config) == {
        "id",
        "crate",
        "repository_owner",
        "repository_owner_id",
        "repository_name",
        "workflow_filename",
        "environment",
        "created_at",
    }
    # The owner id comes from GitHub, and the login as GitHub spells it.
    assert config["repository_owner"] == "Octo-Org"
    assert config["repository_owner_id"] == 131804563
    assert config["crate"] == "octo-lib"
    assert _GitHubUsers.requests == [("/users/octo-org", "Bearer gh-secret")]

    exchanged = env.service.exchange(env.service.github_jwt())
    assert exchanged.status_code == 200, exchanged.text
    token = exchanged.json()["token"]
    assert env.publish(token, "octo-lib", "1.1.0").status_code == 200

    listed = env.list(GITHUB, alice, "octo-lib")
    assert listed.status_code == 200
    assert listed.json() == {"github_configs": [config], "meta": {"total": 1, "next_page": None}}

    assert env.delete(GITHUB, alice, config["id"]).status_code == 204
    again = env.service.exchange(env.service.github_jwt())
    assert (again.status_code, detail(again)) == (400, detail(refused))
    assert env.list(GITHUB, alice, "octo-lib").json()["meta"]["total"] == 0
    assert env.delete(GITHUB, alice, config["id"]).status_code == 404


def test_an_account_resurrected_under_the_same_name_does_not_match(env: Env) -> None:
    alice = env.token("alice")
    env.publish(alice, "octo-lib", "1.0.0")
    assert env.post(GITHUB, alice, github_config()).status_code == 200
    response = env.service.exchange(env.service.github_jwt(repository_owner_id="999"))
    assert response.status_code == 400
    assert env.service.exchange(env.service.github_jwt()).status_code == 200


def test_an_explicit_owner_id_must_agree_with_github(env: Env) -> None:
    alice = env.token("alice")
    env.publish(alice, "octo-lib", "1.0.0")
    wrong = env.post(GITHUB, alice, github_config(repository_owner_id="7"))
    assert wrong.status_code == 400
    assert "does not match the GitHub account `Octo-Org` (id 131804563)" in detail(wrong)
    right = env.post(GITHUB, alice, github_config(repository_owner_id=131804563))
    assert right.status_code == 200


def test_extensions_are_validated_like_policy_files_and_apply(env: Env) -> None:
    alice = env.token("alice")
    env.publish(alice, "octo-lib", "1.0.0")
    bad = env.post(GITHUB, alice, github_config(refs=["refs/tags/[v"], token_ttl="forever"))
    assert bad.status_code == 400
    assert "`refs`" in detail(bad)
    assert "`token_ttl`" in detail(bad)
    ok = env.post(GITHUB, alice, github_config(refs=["refs/heads/main"], operations=["yank"]))
    assert ok.status_code == 200, ok.text
    assert ok.json()["github_config"]["refs"] == ["refs/heads/main"]
    # The token's ref is a tag: the config's refs refuse it.
    assert env.service.exchange(env.service.github_jwt()).status_code == 400
    jwt = env.service.github_jwt(ref="refs/heads/main")
    granted = env.service.exchange(jwt)
    assert granted.status_code == 200, granted.text


def test_bad_input_gets_crates_io_codes_and_writes_nothing(env: Env) -> None:
    alice = env.token("alice")
    env.publish(alice, "octo-lib", "1.0.0")
    bob = env.token("bob")
    no_scope = env.token("alice", ("publish-update",))
    other_crate = env.token("alice", ALL_SCOPES, ("other-*",))
    update_only = env.token("alice", ("trusted-publishing",))
    before = env.registry.db.config_generation()
    cases = [
        (None, github_config(), 403, "this action requires authentication"),
        (no_scope, github_config(), 403, "this token does not have the required permissions"),
        (other_crate, github_config(), 403, "this token does not have the required permissions"),
        (bob, github_config(), 400, "You are not an owner of this crate"),
        (update_only, github_config(crate="nope"), 404, "crate `nope` does not exist"),
        (alice, github_config(workflow_filename="ci/release.yml"), 400, "workflow_filename"),
        (alice, github_config(workflow_filename="release.txt"), 400, ".yml or .yaml"),
        (
            alice,
            github_config(repository_owner="ghost"),
            400,
            "Unknown GitHub user or organization",
        ),
        (alice, github_config(repository_name="a/b"), 400, "repository_name"),
        (alice, github_config(environment=5), 422, "environment"),
        (alice, github_config(surprise=1), 422, "Unknown field"),
        (alice, {"github_config": {}}, 422, "crate"),
        (alice, {"gitlab_config": {}}, 422, "github_config"),
    ]
    for token, body, status, text in cases:
        response = env.post(GITHUB, token, body)
        assert response.status_code == status, (body, response.text)
        assert text.lower() in detail(response).lower(), (body, response.text)
    deep = env.client.post(
        GITHUB,
        content=b"[" * 5000 + b"]" * 5000,
        headers={"Authorization": alice, "Content-Type": "application/json"},
    )
    assert deep.status_code == 400
    huge = env.client.post(
        GITHUB,
        content=b'{"a":"' + b"x" * 200_000 + b'"}',
        headers={"Authorization": alice, "Content-Type": "application/json"},
    )
    assert huge.status_code == 413
    assert env.registry.db.config_generation() == before
    assert env.registry.db.configs_for(None, "octo-lib") == []

    assert env.post(GITHUB, alice, github_config()).status_code == 200
    duplicate = env.post(GITHUB, alice, github_config(repository_owner="OCTO-ORG"))
    assert duplicate.status_code == 409
    assert len(env.registry.db.configs_for(None, "octo-lib")) == 1
    config_id = env.registry.db.configs_for(None, "octo-lib")[0].id
    assert env.delete(GITHUB, bob, config_id).status_code == 400
    assert env.delete(GITLAB, alice, config_id).status_code == 404
    assert env.list(GITHUB, bob, "octo-lib").status_code == 400


def test_gitlab_namespace_is_pinned_by_the_first_exchange(env: Env) -> None:
    alice = env.token("alice")
    env.publish(alice, "octo-lib", "1.0.0")
    body = {
        "gitlab_config": {
            "crate": "octo-lib",
            "namespace": "octo-group/sub",
            "project": "octo-lib",
            "workflow_filepath": ".gitlab-ci.yml",
            "environment": "release",
        }
    }
    created = env.post(GITLAB, alice, body)
    assert created.status_code == 200, created.text
    config = created.json()["gitlab_config"]
    assert config["namespace_id"] is None
    assert set(config) == {
        "id",
        "crate",
        "namespace",
        "namespace_id",
        "project",
        "workflow_filepath",
        "environment",
        "created_at",
    }
    assert env.service.exchange(env.service.gitlab_jwt()).status_code == 200
    listed = env.list(GITLAB, alice, "octo-lib").json()["gitlab_configs"]
    assert listed[0]["namespace_id"] == "4242"
    # The path now belongs to another namespace: refused.
    other = env.service.exchange(env.service.gitlab_jwt(namespace_id="5151"))
    assert other.status_code == 400
    assert env.delete(GITLAB, alice, config["id"]).status_code == 204
    gone = env.service.exchange(env.service.gitlab_jwt())
    assert detail(gone) == (
        "No Trusted Publishing config found for repository `octo-group/sub/octo-lib`."
    )


def test_a_pending_publisher_creates_the_crate_for_its_registrant(env: Env) -> None:
    alice = env.token("alice")
    bob = env.token("bob")
    no_new = env.token("alice", ("trusted-publishing",))
    assert env.post(GITHUB, no_new, github_config(crate="brand-new")).status_code == 404
    created = env.post(GITHUB, alice, github_config(crate="brand-new"))
    assert created.status_code == 200, created.text
    config = created.json()["github_config"]
    assert config["pending"] is True
    assert "expires_at" in config
    # One registrant per pending name.
    taken = env.post(GITHUB, bob, github_config(crate="brand-new", workflow_filename="x.yml"))
    assert taken.status_code == 409
    assert env.list(GITHUB, bob, "brand-new").status_code == 404

    exchanged = env.service.exchange(env.service.github_jwt())
    assert exchanged.status_code == 200, exchanged.text
    token = exchanged.json()["token"]
    assert env.publish(token, "brand-new", "0.1.0").status_code == 200
    owners = env.client.get("/api/v1/crates/brand-new/owners").json()["users"]
    assert [u["login"] for u in owners] == ["alice"]
    listed = env.list(GITHUB, alice, "brand-new").json()["github_configs"]
    assert [c["id"] for c in listed] == [config["id"]]
    assert "pending" not in listed[0]
    # Now the crate's config: it updates, and no longer creates anything.
    again = env.service.exchange(env.service.github_jwt())
    assert again.status_code == 200
    assert env.publish(again.json()["token"], "brand-new", "0.2.0").status_code == 200
    assert env.registry.db.configs_for(None, "brand-new", pending=True) == []


def test_a_pending_publisher_never_reaches_a_crate_someone_else_created(env: Env) -> None:
    alice = env.token("alice")
    bob = env.token("bob")
    assert env.post(GITHUB, alice, github_config(crate="contested")).status_code == 200
    assert env.publish(bob, "contested", "0.1.0").status_code == 200
    assert env.registry.db.configs_for(None, "contested", pending=True) == []
    assert env.registry.db.configs_for(None, "contested") == []
    response = env.service.exchange(env.service.github_jwt())
    assert response.status_code == 400
