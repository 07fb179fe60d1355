"""Webhook signing secrets are stored encrypted (trustpub.registry.db.webhook_keys):
the raw row never holds the secret, deliveries are still signed with it, secrets
stored in plain text before migration 9 are sealed when the database is opened, a key
that cannot decrypt fails the delivery (not the worker), and keys rotate. Each test
runs on SQLite and PostgreSQL."""

from __future__ import annotations

import logging
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.notify.test_delivery import (
    LOCAL,
    Receiver,
    deliver,
    owned_demo,
    receiver,  # noqa: F401 (fixture)
    release,
    subscribe,
)
from tests.pg import create_database, drop_database
from tests.registry.conftest import RegistryEnv
from trustpub.cli import main
from trustpub.config import WEBHOOK_KEYS_ENV, load_settings
from trustpub.errors import ConfigurationError
from trustpub.notify import webhooks
from trustpub.notify.settings import NotificationSettings
from trustpub.registry.db import RegistryDB, StorageUnavailable
from trustpub.registry.db.postgresql import PostgreSQLEngine
from trustpub.registry.db.schema import SQLITE_MIGRATIONS
from trustpub.registry.db.sqlite import SQLiteEngine
from trustpub.registry.db.webhook_keys import (
    KEY_FILE,
    SecretUnreadable,
    WebhookKeyError,
    WebhookKeys,
    generate_key,
    write_key_file,
)

SETTINGS = NotificationSettings(webhooks=LOCAL, retry_base=0)


def raw_webhooks(db: RegistryDB) -> list[tuple[int, int, str, str | None]]:
    """The stored rows as they are: id, crate id, plain column, ciphertext."""
    return [
        (int(r[0]), int(r[1]), r[2], r[3])
        for r in db.call(
            lambda c: c.execute(
                "SELECT id, crate_id, secret, secret_enc FROM webhooks ORDER BY id"
            ).fetchall()
        )
    ]


def location(env: RegistryEnv, database: str | None) -> str | Path:
    return database or env.directory / "registry.db"


@pytest.fixture
def hooked(env: RegistryEnv, receiver: Receiver) -> tuple[str, str]:  # noqa: F811
    """A crate with one webhook to the receiver: (an owner's token, the secret)."""
    env.registry.webhook_rules = LOCAL
    alice = owned_demo(env, emails=False)
    secret: str = subscribe(env, alice, receiver.url)["secret"]
    return alice, secret


def test_the_stored_secret_is_ciphertext_bound_to_its_row(
    env: RegistryEnv, hooked: tuple[str, str]
) -> None:
    _, secret = hooked
    [(hook_id, crate_id, plain, sealed)] = raw_webhooks(env.registry.db)
    assert plain == ""
    assert sealed is not None
    assert secret not in sealed
    assert secret.removeprefix("whsec_") not in sealed
    keys = env.registry.db.webhook_keys
    assert keys.open(sealed, hook_id, crate_id) == secret
    # Copied into another row (another webhook, another crate), it does not decrypt.
    for other in ((hook_id + 1, crate_id), (hook_id, crate_id + 1)):
        with pytest.raises(SecretUnreadable, match=f"webhook {other[0]}:"):
            keys.open(sealed, *other)
    # No key configured: the registry keeps one in its directory, readable by its owner only.
    key_file = env.directory / KEY_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert WebhookKeys.load(key_file).ids == keys.ids


def test_deliveries_are_signed_with_the_decrypted_secret(
    env: RegistryEnv,
    hooked: tuple[str, str],
    receiver: Receiver,  # noqa: F811
) -> None:
    _, secret = hooked
    release(env, "1.1.0")
    assert deliver(env.registry.db, SETTINGS) == 1
    [(headers, body)] = receiver.received
    assert webhooks.verify(secret, body, headers[webhooks.SIGNATURE_HEADER.lower()])


def test_a_key_that_cannot_decrypt_fails_the_delivery_clearly(
    env: RegistryEnv,
    database: str | None,
    hooked: tuple[str, str],
    receiver: Receiver,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    alice, secret = hooked
    [(hook_id, *_)] = raw_webhooks(env.registry.db)
    release(env, "1.1.0")
    wrong = RegistryDB(
        location(env, database), webhook_keys=WebhookKeys.parse([generate_key()], "test")
    )
    wrong.open()
    try:
        with caplog.at_level(logging.INFO):
            assert deliver(wrong, SETTINGS, "w-wrong") == 1  # attempted, no crash
    finally:
        wrong.close()
    assert receiver.received == []
    logged = [r for r in caplog.records if r.getMessage() == "webhook secret cannot be decrypted"]
    assert [r.fields["webhook"] for r in logged] == [hook_id]  # type: ignore[attr-defined]
    assert "not among the configured" in logged[0].fields["reason"]  # type: ignore[attr-defined]
    assert secret not in caplog.text
    listed = env.client.get("/api/v1/crates/demo/webhooks", headers={"Authorization": alice})
    last = listed.json()["webhooks"][0]["last_delivery"]
    assert last["state"] == "pending"  # retried: the operator can fix the key
    assert last["last_error"] == "the webhook's secret cannot be decrypted with the registry's keys"
    # With the right key, the retry goes through, signed as before.
    assert deliver(env.registry.db, SETTINGS) == 1
    [(headers, body)] = receiver.received
    assert webhooks.verify(secret, body, headers[webhooks.SIGNATURE_HEADER.lower()])


def test_keys_rotate_and_the_cli_encrypts_again_with_the_current_key(
    env: RegistryEnv,
    database: str | None,
    hooked: tuple[str, str],
    receiver: Receiver,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, secret = hooked
    old = (env.directory / KEY_FILE).read_text().strip()
    new = generate_key()
    home = tmp_path_factory.mktemp("operator")
    key_file = home / "webhook.keys"
    key_file.write_text(f"# current first\n{new}\n{old}\n")
    config = home / "trustpub.toml"
    # The CLI finds the registry at DATA_DIR/registry: the test registry's directory.
    (home / "data").mkdir()
    (home / "data" / "registry").symlink_to(env.directory)
    database_line = f'database = "{database}"\n' if database else ""
    config.write_text(
        f'data_dir = "{home / "data"}"\n[registry]\n{database_line}'
        f'webhook_secrets_key_file = "{key_file}"\n'
    )
    rotated = WebhookKeys.load(key_file)
    assert rotated.current != env.registry.db.webhook_keys.current

    # Both keys configured: the old rows still decrypt, and deliveries verify.
    db = RegistryDB(location(env, database), webhook_keys=rotated)
    db.open()
    try:
        release(env, "1.1.0")
        assert deliver(db, SETTINGS) == 1
        [(hook_id, crate_id, _, sealed)] = raw_webhooks(db)
        assert sealed is not None
        assert rotated.key_of(sealed) != rotated.current

        assert main(["registry", "--config", str(config), "webhooks", "rekey"]) == 0
        assert capsys.readouterr().out.strip() == (
            f"encrypted 1 webhook secret(s) with key {rotated.current}"
        )
        [(_, _, plain, resealed)] = raw_webhooks(db)
        assert plain == ""
        assert resealed is not None
        assert rotated.key_of(resealed) == rotated.current
        # The old key can go now.
        only_new = WebhookKeys.parse([new], "test")
        assert only_new.open(resealed, hook_id, crate_id) == secret
    finally:
        db.close()
    [(headers, body)] = receiver.received
    assert webhooks.verify(secret, body, headers[webhooks.SIGNATURE_HEADER.lower()])

    # A secret no configured key opens: listed, left as it is, exit 1.
    key_file.write_text(generate_key() + "\n")
    assert main(["registry", "--config", str(config), "webhooks", "rekey"]) == 1
    captured = capsys.readouterr()
    assert f"webhook ids: {hook_id}" in captured.err
    assert secret not in captured.out + captured.err
    assert raw_webhooks(env.registry.db)[0][3] == resealed


# -- secrets stored in plain text before migration 9 ------------------------------------


@pytest.fixture
def at_migration_8(tmp_path: Path, engine: str) -> Iterator[str]:
    """A database migrated to 8, with two webhooks whose secrets are plain text."""
    if engine == "sqlite":
        where = str(tmp_path / "registry.db")
        old: Any = SQLiteEngine(Path(where), migrations=SQLITE_MIGRATIONS[:8])
    else:
        where = create_database()
        old = PostgreSQLEngine(where, migrations=SQLITE_MIGRATIONS[:8])
    old.open()

    def fill(conn: Any) -> None:
        for crate_id, name in ((1, "one"), (2, "two")):
            conn.execute(
                "INSERT INTO crates (id, name, canonical, created_at, updated_at,"
                " index_updated_at) VALUES (?, ?, ?, 1, 1, 1)",
                (crate_id, name, name),
            )
        for crate_id, url, secret in (
            (1, "https://a.example/hook", "whsec_one"),
            (2, "https://b.example/hook", "whsec_two"),
        ):
            conn.execute(
                "INSERT INTO webhooks (crate_id, url, secret, created_by, created_at)"
                " VALUES (?, ?, ?, 'alice', 1)",
                (crate_id, url, secret),
            )

    old.run(fill)
    old.close()
    try:
        yield where
    finally:
        if engine != "sqlite":
            drop_database(where)


def test_opening_a_database_of_migration_8_seals_its_plain_secrets(
    at_migration_8: str, engine: str, tmp_path: Path
) -> None:
    if engine == "postgresql":
        # No key given (and no file to keep one next to): refused, nothing changed.
        with pytest.raises(StorageUnavailable, match="no webhook secrets key is configured"):
            RegistryDB(at_migration_8).open()
    keys = WebhookKeys.parse([generate_key()], "test")
    db = RegistryDB(at_migration_8, webhook_keys=keys)
    db.open()
    try:
        rows = raw_webhooks(db)
        assert [plain for _, _, plain, _ in rows] == ["", ""]
        hooks = [db.webhooks(crate_id)[0][0] for _, crate_id, _, _ in rows]
        assert [db.webhook_secret(h) for h in hooks] == ["whsec_one", "whsec_two"]
        for _, _, _, sealed in rows:
            assert sealed is not None
            assert "whsec" not in sealed
        # A second open has nothing left to seal, and changes nothing.
        assert db.seal_plain() == 0
        assert raw_webhooks(db) == rows
    finally:
        db.close()


# -- the settings -------------------------------------------------------------------------


def test_the_key_comes_from_a_file_or_the_environment(tmp_path: Path) -> None:
    key_file = tmp_path / "keys"
    key = generate_key()
    write_key_file(key_file, key)
    config = tmp_path / "trustpub.toml"
    config.write_text(f'[registry]\nwebhook_secrets_key_file = "{key_file}"\n')
    from_file = load_settings(config, environ={}).registry_webhook_keys
    from_env = load_settings(None, environ={WEBHOOK_KEYS_ENV: key}).registry_webhook_keys
    assert from_file is not None
    assert from_env is not None
    assert from_file.ids == from_env.ids
    assert key not in repr(load_settings(config, environ={}))
    assert load_settings(None, environ={}).registry_webhook_keys is None

    key_file.write_text("not a key\n")
    with pytest.raises(ConfigurationError, match="key 1: expected 32 bytes"):
        load_settings(config, environ={})
    with pytest.raises(ConfigurationError, match="no key"):
        load_settings(None, environ={WEBHOOK_KEYS_ENV: " , "})
    with pytest.raises(WebhookKeyError, match="listed twice"):
        WebhookKeys.parse([key, key], "keys")
