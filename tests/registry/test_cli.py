"""``trustpub registry``: users and API tokens from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trustpub.cli import main
from trustpub.registry import changes
from trustpub.registry.auth import is_user_token, user_token_hash
from trustpub.registry.db import RegistryDB


def run(tmp_path: Path, *args: str) -> int:
    return main(["registry", "--data-dir", str(tmp_path), *args])


def test_add_user_create_list_and_revoke_a_token(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(tmp_path, "user", "add", "alice") == 0
    assert run(tmp_path, "user", "list") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "added user alice"
    assert lines[1].split() == ["LOGIN", "EMAIL", "CREATED"]
    assert lines[2].split()[0] == "alice"
    assert len(lines) == 3

    assert (
        run(
            tmp_path,
            "token",
            "create",
            "--user",
            "alice",
            "--name",
            "laptop",
            "--scope",
            "publish-new",
            "--scope",
            "yank",
            "--crate",
            "demo-*",
        )
        == 0
    )
    token = capsys.readouterr().out.strip()
    assert is_user_token(token)

    db = RegistryDB(tmp_path / "registry" / "registry.db")
    db.open()
    try:
        actor = changes.user_actor(db, user_token_hash(token))
        assert actor is not None
        assert actor.login == "alice"
        assert actor.scopes == {"publish-new", "yank"}
        assert actor.crate_patterns == ("demo-*",)
        # Only the hash is stored.
        raw = db.call(lambda c: c.execute("SELECT * FROM api_tokens").fetchall())
        assert token not in repr([tuple(r) for r in raw])
    finally:
        db.close()

    assert run(tmp_path, "token", "list") == 0
    listing = capsys.readouterr().out
    rows = [line.split() for line in listing.splitlines()]
    assert rows == [
        ["ID", "USER", "NAME", "SCOPES", "CRATES", "STATE"],
        ["1", "alice", "laptop", "publish-new,yank", "demo-*", "active"],
    ]
    assert token not in listing
    assert run(tmp_path, "token", "list", "--json") == 0
    (record,) = json.loads(capsys.readouterr().out)
    assert {k: record[k] for k in ("id", "user", "name", "scopes", "crates", "revoked_at")} == {
        "id": 1,
        "user": "alice",
        "name": "laptop",
        "scopes": ["publish-new", "yank"],
        "crates": ["demo-*"],
        "revoked_at": None,
    }

    assert run(tmp_path, "token", "revoke", "1") == 0
    assert run(tmp_path, "token", "revoke", "1") == 1
    assert "no active token with id 1" in capsys.readouterr().err
    db.open()
    try:
        assert changes.user_actor(db, user_token_hash(token)) is None
    finally:
        db.close()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("user", "add", "bad login"), "invalid login"),
        (("token", "create", "--user", "alice", "--scope", "admin"), "unknown scope 'admin'"),
        (
            ("token", "create", "--user", "alice", "--scope", "publish-news"),
            "did you mean 'publish-new'?",
        ),
        (
            ("token", "create", "--user", "alice", "--scope", "yank", "--crate", "a/b"),
            "invalid crate pattern",
        ),
        (
            ("token", "create", "--user", "alice", "--scope", "yank", "--expires-in", "soon"),
            "expected a duration",
        ),
    ],
)
def test_bad_cli_input_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...], message: str
) -> None:
    assert run(tmp_path, "user", "add", "alice") == 0
    assert run(tmp_path, *args) == 2
    err = capsys.readouterr().err
    assert err.startswith("trustpub registry: error: ")
    assert message in err


def test_a_token_for_an_unknown_user_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(tmp_path, "token", "create", "--user", "ghost", "--scope", "yank") == 1
    assert "trustpub registry: error: no registry user `ghost`" in capsys.readouterr().err


def test_a_user_cannot_be_added_twice(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(tmp_path, "user", "add", "alice") == 0
    assert run(tmp_path, "user", "add", "ALICE") == 1
    assert "already exists" in capsys.readouterr().err


def test_expiring_tokens_are_listed_with_their_expiry(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run(tmp_path, "user", "add", "alice")
    run(tmp_path, "token", "create", "--user", "alice", "--scope", "yank", "--expires-in", "2h")
    capsys.readouterr()
    run(tmp_path, "token", "list", "--user", "alice")
    assert "active until 20" in capsys.readouterr().out


def test_token_expiry_in_days_as_the_readme_shows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run(tmp_path, "user", "add", "alice")
    code = run(
        tmp_path, "token", "create", "--user", "alice", "--scope", "yank", "--expires-in", "90d"
    )
    assert code == 0
    capsys.readouterr()
    run(tmp_path, "token", "list", "--user", "alice")
    assert "active until 20" in capsys.readouterr().out


def test_the_command_line_credential_wins_over_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import argparse

    from trustpub.cli.registry import CREDENTIAL_ENV, registry_credential

    monkeypatch.setenv(CREDENTIAL_ENV, "from-environment")
    args = argparse.Namespace(credential=None, credential_file=None)
    assert registry_credential(args) == "from-environment"
    args.credential = "from-flag"
    assert registry_credential(args) == "from-flag"
    secret = tmp_path / "credential"
    secret.write_text("from-file\n")
    args.credential_file = str(secret)
    assert registry_credential(args) == "from-file"


def test_a_read_only_token_is_created_with_scope_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(tmp_path, "user", "add", "builder") == 0
    assert run(tmp_path, "token", "create", "--user", "builder", "--scope", "read") == 0
    token = capsys.readouterr().out.splitlines()[-1]
    db = RegistryDB(tmp_path / "registry" / "registry.db")
    db.open()
    try:
        actor = changes.user_actor(db, user_token_hash(token))
        assert actor is not None
        assert actor.scopes == {"read"}
    finally:
        db.close()


def test_serve_refuses_a_login_url_it_cannot_use(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(tmp_path, "serve", "--login-url", "https://wiki.example/t") == 2
    assert "--login-url only applies with --auth-required" in capsys.readouterr().err
    assert run(tmp_path, "serve", "--auth-required", "--login-url", 'https://x/"') == 2
    assert "--login-url: expected an http(s) URL" in capsys.readouterr().err


def test_serve_uses_the_configured_database_as_the_other_commands_do(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    pg_database: str,
) -> None:
    """A user and token made by `registry user add` / `token create` on the configured
    PostgreSQL database are the ones `registry serve` answers with."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.testclient import TestClient

    config = tmp_path / "trustpub.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\n[registry]\ndatabase = "{pg_database}"\n')

    def registry(*args: str) -> int:
        return main(["registry", "--config", str(config), *args])

    assert registry("user", "add", "alice") == 0
    capsys.readouterr()
    assert registry("token", "create", "--user", "alice", "--scope", "manage-tokens") == 0
    token = capsys.readouterr().out.strip()
    served: list[Starlette] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **_: served.append(app))
    assert registry("serve") == 0
    (app,) = served
    with TestClient(app) as client:
        response = client.get("/api/v1/me/tokens", headers={"Authorization": token})
    assert response.status_code == 200, response.text
    assert [t["name"] for t in response.json()["api_tokens"]] != []
