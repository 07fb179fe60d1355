"""``trustpub registry files check``: the .crate files compared with the versions,
orphans listed (and removed on request), missing files listed until restored."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from tests.registry.conftest import PUBLIC_URL, FakeAuthority, RegistryEnv
from tests.registry.helpers import body_for
from trustpub.cli import main
from trustpub.registry import Registry, create_registry_app


def check(data_dir: Path, *flags: str) -> int:
    return main(["registry", "--data-dir", str(data_dir), "files", "check", "--json", *flags])


def found(capsys: pytest.CaptureFixture[str]) -> list[tuple[str, str]]:
    return [(r["state"], r["file"]) for r in json.loads(capsys.readouterr().out)]


def test_orphans_and_missing_files_are_listed_and_orphans_removed_on_request(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "registry"  # where --data-dir tmp_path finds it
    authority = FakeAuthority()
    app = create_registry_app(directory, PUBLIC_URL, authority=authority)
    with TestClient(app) as client:
        registry: Registry = app.state.registry
        env = RegistryEnv(client, registry, authority, directory)
        env.user("alice")
        token = env.token("alice")
        for vers in ("1.0.0", "1.1.0"):
            assert env.put_body(token, body_for("demo", vers)).status_code == 200
        crates = directory / "crates"
        assert check(tmp_path) == 0
        assert found(capsys) == []

        # A file lost outside the registry, and one that no version names.
        copy = (crates / "demo" / "demo-1.0.0.crate").read_bytes()
        (crates / "demo" / "demo-1.0.0.crate").unlink()
        (crates / "ghost").mkdir(mode=0o700)
        (crates / "ghost" / "ghost-0.1.0.crate").write_bytes(b"left behind")
        assert check(tmp_path) == 1
        assert found(capsys) == [
            ("orphan", "crates/ghost/ghost-0.1.0.crate"),
            ("missing", "crates/demo/demo-1.0.0.crate"),
        ]
        assert (crates / "ghost" / "ghost-0.1.0.crate").exists()  # only listed

        assert check(tmp_path, "--remove-orphans") == 1  # a file is still missing
        assert found(capsys) == [
            ("orphan", "crates/ghost/ghost-0.1.0.crate"),
            ("missing", "crates/demo/demo-1.0.0.crate"),
        ]
        assert not (crates / "ghost" / "ghost-0.1.0.crate").exists()

        # Publishing it again is refused (a version is never replaced); the operator
        # restores the file from a copy.
        assert env.put_body(token, body_for("demo", "1.0.0")).status_code == 409
        assert check(tmp_path) == 1
        capsys.readouterr()
        (crates / "demo" / "demo-1.0.0.crate").write_bytes(copy)
        assert check(tmp_path) == 0
        assert found(capsys) == []
