"""Publishing with registry API tokens: authentication, validation, atomicity."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path
from typing import Any

import pytest

from tests.registry.conftest import RegistryEnv, detail, with_s3
from tests.registry.helpers import body_for, dep, make_crate, metadata, publish_body
from trustpub.registry import Limits

# Publishes and downloads reach the crate file store: every backend, S3 included.
pytestmark = with_s3


@pytest.fixture
def alice(env: RegistryEnv) -> str:
    env.user("alice")
    return env.token("alice")


def test_publish_answers_crates_io_warnings_shape(env: RegistryEnv, alice: str) -> None:
    response = env.publish(alice, "demo", "1.0.0")
    assert response.status_code == 200
    assert response.json() == {
        "warnings": {"invalid_categories": [], "invalid_badges": [], "other": []}
    }
    assert env.crate_files() == ["demo-1.0.0.crate"]


def test_download_serves_the_published_bytes(env: RegistryEnv, alice: str) -> None:
    env.publish(alice, "demo", "1.0.0")
    response = env.client.get("/api/v1/crates/demo/1.0.0/download")
    assert response.status_code == 200
    assert response.content == make_crate("demo", "1.0.0")
    (line,) = env.index_lines("demo")
    assert hashlib.sha256(response.content).hexdigest() == line["cksum"]
    assert env.client.get("/api/v1/crates/demo/9.9.9/download").status_code == 404


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (None, "requires authentication"),
        ("", "requires authentication"),
        ("garbage", "not a registry API token"),
        ("tpreg_" + "a" * 40, "invalid, expired or revoked"),
        ("trustpub_" + "a" * 38, "checksum mismatch"),
        ("tpreg_short", "a `tpreg_` token has 46 characters, not 11"),
    ],
)
def test_publish_without_a_valid_token_is_refused(
    env: RegistryEnv, header: str | None, message: str
) -> None:
    response = env.put_body(header, body_for("demo", "1.0.0"))
    assert response.status_code == 403
    assert message in detail(response)
    assert env.crate_files() == []


def test_bearer_scheme_is_accepted(env: RegistryEnv, alice: str) -> None:
    assert env.put_body(f"Bearer {alice}", body_for("demo", "1.0.0")).status_code == 200


def test_a_revoked_token_is_refused(env: RegistryEnv, alice: str) -> None:
    (token,) = env.registry.db.tokens("alice")
    assert env.registry.db.revoke_token(token.id)
    response = env.publish(alice, "demo", "1.0.0")
    assert response.status_code == 403
    assert "revoked" in detail(response)


def test_scopes_are_enforced_per_endpoint(env: RegistryEnv) -> None:
    env.user("alice")
    update_only = env.token("alice", scopes=("publish-update",))
    response = env.publish(update_only, "demo", "1.0.0")
    assert response.status_code == 403
    assert "does not have the `publish-new` scope" in detail(response)
    env.publish(env.token("alice", scopes=("publish-new",)), "demo", "1.0.0")
    assert env.publish(update_only, "demo", "1.1.0").status_code == 200
    response = env.client.delete(
        "/api/v1/crates/demo/1.0.0/yank", headers={"Authorization": update_only}
    )
    assert "`yank` scope" in detail(response)


def test_crate_patterns_limit_a_token(env: RegistryEnv) -> None:
    env.user("alice")
    limited = env.token("alice", crates=("demo-*",))
    assert env.publish(limited, "demo-core", "1.0.0").status_code == 200
    response = env.publish(limited, "other", "1.0.0")
    assert response.status_code == 403
    assert detail(response) == "The provided access token is not valid for crate `other`"


def test_only_owners_publish_updates(env: RegistryEnv, alice: str) -> None:
    env.publish(alice, "demo", "1.0.0")
    env.user("mallory")
    response = env.publish(env.token("mallory"), "demo", "1.1.0")
    assert response.status_code == 403
    assert "not an owner of crate `demo`" in detail(response)


def test_an_existing_version_is_refused_and_the_file_kept(env: RegistryEnv, alice: str) -> None:
    env.publish(alice, "demo", "1.0.0")
    before = env.crate_bytes("demo", "1.0.0")
    response = env.put_body(
        alice,
        publish_body(metadata("demo", "1.0.0"), make_crate("demo", "1.0.0", files={"x.rs": b"x"})),
    )
    assert response.status_code == 409
    assert detail(response) == "crate version `demo@1.0.0` already exists"
    assert env.crate_bytes("demo", "1.0.0") == before
    response = env.publish(alice, "demo", "1.0.0+build.2")
    assert response.status_code == 409
    assert len(env.index_lines("demo")) == 1
    assert env.staged_files() == []


@pytest.mark.parametrize("other", ["Demo_Lib", "demo-lib", "DEMO_LIB"])
def test_names_differing_only_by_case_or_separator_are_refused(
    env: RegistryEnv, alice: str, other: str
) -> None:
    env.publish(alice, "demo_lib", "1.0.0")
    response = env.publish(alice, other, "2.0.0")
    assert response.status_code == 400
    assert f"`{other}` conflicts with existing crate `demo_lib`" in detail(response)
    assert env.crate_files() == ["demo_lib-1.0.0.crate"]


def test_a_dependency_on_an_unknown_crate_is_refused(env: RegistryEnv, alice: str) -> None:
    response = env.publish(alice, "demo", "1.0.0", deps=[dep("missing")])
    assert response.status_code == 400
    assert "no known crate named `missing`" in detail(response)
    env.publish(alice, "base_lib", "1.0.0")
    response = env.publish(alice, "demo", "1.0.0", deps=[dep("base-lib")])
    assert "did you mean `base_lib`" in detail(response)
    # Dependencies on another registry are that registry's business.
    other = dep("serde", registry="https://github.com/rust-lang/crates.io-index")
    assert env.publish(alice, "demo", "1.0.0", deps=[other]).status_code == 200


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"\x05\x00\x00\x00{}", "metadata length (5) exceeds the body"),
        (publish_body(b"{oops", make_crate("demo", "1.0.0")), "not valid JSON"),
        (body_for("9demo", "1.0.0"), "must start with an ASCII letter"),
        (publish_body(metadata("demo", "1.0"), make_crate("demo", "1.0")), "Invalid version"),
        (publish_body(metadata("demo", "1.0.0"), b"not gzip"), "not a gzip archive"),
        (
            publish_body(metadata("demo", "1.0.0"), make_crate("demo", "1.0.0", prefix="x")),
            "outside `demo-1.0.0/`",
        ),
        (
            publish_body(metadata("demo", "1.0.0"), make_crate("demo", "2.0.0")),
            "outside `demo-1.0.0/`",
        ),
    ],
)
def test_bad_publish_bodies_get_a_clear_error_and_leave_nothing(
    env: RegistryEnv, alice: str, body: bytes, message: str
) -> None:
    response = env.put_body(alice, body)
    assert response.status_code == 400
    assert message in detail(response)
    assert env.crate_files() == []
    assert env.staged_files() == []
    assert env.index("demo").status_code == 404


@pytest.mark.parametrize("limits", [Limits(body=2000)])
def test_an_oversized_body_is_refused_with_413(env: RegistryEnv, alice: str) -> None:
    big = make_crate("demo", "1.0.0", files={"noise.bin": random.Random(0).randbytes(5000)})
    response = env.put_body(alice, publish_body(metadata("demo", "1.0.0"), big))
    assert response.status_code == 413
    assert "too large" in detail(response)


def test_a_failure_while_placing_the_file_rolls_everything_back(
    env: RegistryEnv, alice: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_place(staged: Any, name: str, version: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(env.registry.files, "place", broken_place)
    response = env.publish(alice, "demo", "1.0.0")
    # A bug or an outage, not the client's fault: a JSON 500 that tells nothing of it.
    assert response.status_code == 500
    assert detail(response) == "Internal server error"
    assert "disk full" not in response.text
    assert env.crate_files() == []
    assert env.staged_files() == []
    assert env.registry.db.crate("demo") is None


def test_a_failure_after_placing_the_file_removes_it(
    env: RegistryEnv, alice: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_place = env.registry.files.place

    def place_then_fail(staged: Any, name: str, version: str) -> None:
        real_place(staged, name, version)
        raise RuntimeError("commit interrupted")

    monkeypatch.setattr(env.registry.files, "place", place_then_fail)
    assert env.publish(alice, "demo", "1.0.0").status_code == 500
    assert env.crate_files() == []
    assert env.registry.db.crate("demo") is None
    monkeypatch.undo()
    assert env.publish(alice, "demo", "1.0.0").status_code == 200
    assert env.crate_files() == ["demo-1.0.0.crate"]


def test_staged_leftovers_are_removed_when_the_store_opens(tmp_path: Path) -> None:
    import os

    from trustpub.registry.storage.local import LocalStorage

    files = LocalStorage(tmp_path)
    files.open()
    abandoned = files.stage(b"partial")
    os.close(abandoned.fd)  # its writer is gone: nobody holds its lock
    in_flight = files.stage(b"being published")
    LocalStorage(tmp_path).open()
    assert not abandoned.path.exists()
    assert in_flight.path.exists()  # another process's publish is left alone
    files.discard(in_flight)
    assert not in_flight.path.exists()
