"""The S3 backend against moto's S3 server (an emulator, in its own process): orphans,
redirected downloads, the AWS environment variables, and credentials kept out of
errors and logs."""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from starlette.testclient import TestClient

from tests.registry.conftest import PUBLIC_URL, FakeAuthority
from tests.registry.helpers import body_for
from tests.registry.s3server import ACCESS_KEY, REGION, SECRET_KEY, S3Server
from trustpub.errors import ConfigurationError
from trustpub.registry import Registry, create_registry_app
from trustpub.registry.storage import PRESIGNED_URL_SECONDS, S3Settings, StorageSettings
from trustpub.registry.storage.s3 import S3Storage


def _app(tmp_path: Path, storage: StorageSettings) -> tuple[TestClient, Registry]:
    app = create_registry_app(tmp_path, PUBLIC_URL, authority=FakeAuthority(), storage=storage)
    return TestClient(app), app.state.registry


def _publish(client: TestClient, registry: Registry, vers: str) -> None:
    if not registry.db.users():
        registry.db.add_user("alice")
    from trustpub.registry.actors import SCOPES
    from trustpub.registry.auth import generate_user_token, user_token_hash

    token = generate_user_token()
    registry.db.add_token("alice", "t", user_token_hash(token), SCOPES, (), None)
    response = client.put(
        "/api/v1/crates/new", content=body_for("demo", vers), headers={"Authorization": token}
    )
    assert response.status_code == 200, response.text


def test_objects_without_a_version_are_swept_at_start(tmp_path: Path, s3_server: S3Server) -> None:
    storage = s3_server.storage()
    bucket, _ = storage.s3_location()
    client, registry = _app(tmp_path, storage)
    with client:
        _publish(client, registry, "1.0.0")
    # What a crash between the object's write and the commit leaves behind.
    s3 = s3_server.client()
    s3.put_object(Bucket=bucket, Key="registry/crates/demo/demo-2.0.0.crate", Body=b"orphan")
    s3.put_object(Bucket=bucket, Key="elsewhere/kept.txt", Body=b"not ours")
    with _app(tmp_path, storage)[0]:
        pass
    assert s3_server.keys(bucket) == ["elsewhere/kept.txt", "registry/crates/demo/demo-1.0.0.crate"]


def test_redirected_downloads_get_a_short_lived_presigned_url(
    tmp_path: Path, s3_server: S3Server
) -> None:
    storage = s3_server.storage(downloads="redirect")
    client, registry = _app(tmp_path, storage)
    with client:
        _publish(client, registry, "1.0.0")
        response = client.get("/api/v1/crates/demo/1.0.0/download", follow_redirects=False)
        assert response.status_code == 302
        location = response.headers["location"]
        assert location.startswith(f"{s3_server.endpoint}/")
        query = parse_qs(urlsplit(location).query)
        assert query["X-Amz-Expires"] == [str(PRESIGNED_URL_SECONDS)]
        assert SECRET_KEY not in location
        stored = registry.files.get("demo", "1.0.0")
        assert stored is not None
        # The store serves the object to anyone holding the URL, with no credential.
        fetched = httpx.get(location, trust_env=False)
        assert fetched.status_code == 200
        assert fetched.content == b"".join(stored.chunks)
        assert "demo-1.0.0.crate" in fetched.headers["content-disposition"]
        assert client.get("/api/v1/crates/demo/9.9.9/download").status_code == 404


def test_streamed_downloads_send_the_object(tmp_path: Path, s3_server: S3Server) -> None:
    client, registry = _app(tmp_path, s3_server.storage())
    with client:
        _publish(client, registry, "1.0.0")
        response = client.get("/api/v1/crates/demo/1.0.0/download")
        assert response.status_code == 200
        assert response.headers["content-length"] == str(len(response.content))
        assert response.content == body_for_crate(registry)


def body_for_crate(registry: Registry) -> bytes:
    stored = registry.files.get("demo", "1.0.0")
    assert stored is not None
    return b"".join(stored.chunks)


def test_credentials_come_from_the_aws_environment_variables(
    s3_server: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = s3_server.new_bucket()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint)
    store = S3Storage(bucket, "p/", S3Settings(addressing_style="path"))
    store.open()
    assert store.list_keys() == []


def test_a_wrong_secret_fails_the_start_without_showing_it(
    tmp_path: Path, s3_server: S3Server, caplog: pytest.LogCaptureFixture
) -> None:
    # moto checks signatures only with its IAM mode; an unknown bucket fails the same way.
    wrong = "wrong-secret-" + "w" * 27
    storage = StorageSettings(
        "s3://no-such-bucket/p", "stream", s3_server.settings(secret_access_key=wrong)
    )
    registry = Registry(tmp_path, PUBLIC_URL, storage=storage)
    with (
        caplog.at_level(logging.DEBUG, logger="trustpub"),
        pytest.raises(ConfigurationError) as exc,
    ):
        registry.open_storage()
    message = str(exc.value)
    assert "s3://no-such-bucket/p" in message
    assert "NoSuchBucket" in message
    for secret in (wrong, SECRET_KEY):
        assert secret not in message
        assert secret not in caplog.text


def test_readiness_fails_when_the_bucket_goes_away(tmp_path: Path, s3_server: S3Server) -> None:
    storage = s3_server.storage()
    bucket, _ = storage.s3_location()
    client, registry = _app(tmp_path, storage)
    with client:
        assert client.portal is not None
        assert client.portal.call(registry.writable) is True
        s3 = s3_server.client()
        for key in s3_server.keys(bucket):
            s3.delete_object(Bucket=bucket, Key=key)
        s3.delete_bucket(Bucket=bucket)
        assert client.portal.call(registry.writable) is False
        assert client.get("/api/v1/crates/demo/1.0.0/download").status_code == 404


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ({"storage": "s3://key:secret@bucket/p"}, "credentials do not belong in the URL"),
        ({"storage": "ftp://host/p"}, "got a ftp:// URL"),
        ({"storage": "file://relative/path"}, "expected file:///ABSOLUTE/PATH"),
        ({"downloads": "redirect"}, '"redirect" needs an s3:// storage'),
        ({"downloads": "proxy"}, "expected one of stream, redirect"),
        ({"s3": {"secret_access_key": "only-the-secret"}}, "set access_key_id and"),
        ({"s3": {"endpoint_url": "http://k:s@host"}}, "credentials do not belong"),
        ({"s3": {"addressing_style": "dns"}}, "expected one of auto, path, virtual"),
        ({"s3": {"token": "x"}}, "unknown key(s): token"),
    ],
)
def test_storage_settings_are_checked_without_echoing_secrets(
    tmp_path: Path, table: dict[str, object], expected: str
) -> None:
    from trustpub.config import load_settings

    config = tmp_path / "trustpub.toml"
    import tomlkit

    config.write_text(tomlkit.dumps({"registry": table}))
    with pytest.raises(ConfigurationError) as exc:
        load_settings(config, environ={})
    assert expected in str(exc.value)
    assert "secret" not in str(exc.value).replace("secret_access_key", "")


def test_storage_settings_are_read_from_the_file(tmp_path: Path) -> None:
    from trustpub.config import load_settings

    config = tmp_path / "trustpub.toml"
    config.write_text(
        '[registry]\nstorage = "s3://crates/prod"\ndownloads = "redirect"\n'
        '[registry.s3]\nendpoint_url = "https://s3.example"\nregion = "eu-west-1"\n'
        'access_key_id = "AKIA1"\nsecret_access_key = "very-secret"\n'
        'addressing_style = "virtual"\n'
    )
    settings = load_settings(config, environ={}).registry_storage
    assert settings.s3_location() == ("crates", "prod/")
    assert settings.downloads == "redirect"
    assert settings.s3.secret_access_key == "very-secret"
    assert "very-secret" not in repr(settings)
    default = load_settings(None, environ={}).registry_storage
    assert default.local_root(tmp_path) == tmp_path
    assert default.downloads == "stream"
