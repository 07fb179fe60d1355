"""The sparse index exported as static files: a directory or the object store."""

from __future__ import annotations

import os
import stat
import threading
import time
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest

from tests.registry.conftest import RegistryEnv
from tests.registry.s3server import S3Server
from trustpub.cli import main
from trustpub.registry.export import DirectoryTarget, Exporter, ObjectStoreTarget
from trustpub.registry.names import index_path
from trustpub.registry.storage import open_storage
from trustpub.registry.storage.s3 import S3Storage


def published(env: RegistryEnv) -> str:
    env.user("alice")
    token = env.token("alice")
    for name, vers in (("demo", "1.0.0"), ("demo", "1.1.0"), ("ab", "0.1.0"), ("Big-Lib", "2.0.0")):
        assert env.publish(token, name, vers).status_code == 200
    response = env.client.delete("/api/v1/crates/demo/1.0.0/yank", headers={"Authorization": token})
    assert response.status_code == 200
    return token


def exporter(env: RegistryEnv, root: Path) -> Exporter:
    return Exporter(env.registry.db, DirectoryTarget(root), env.registry.config_body)


def files_of(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_the_exported_directory_holds_what_the_registry_serves(
    env: RegistryEnv, tmp_path: Path
) -> None:
    published(env)
    root = tmp_path / "export"
    synced = exporter(env, root).resync()
    assert (synced.written, synced.removed) == (3, 0)
    exported = files_of(root)
    served = {"config.json": env.client.get("/index/config.json").content}
    for name in ("demo", "ab", "Big-Lib"):
        served[index_path(name)] = env.index(name).content
    assert exported == served
    # Served as static files: readable by everyone, whatever the umask, with the
    # registry's Last-Modified as their time.
    assert stat.S_IMODE(os.stat(root / "de/mo/demo").st_mode) == 0o644
    modified = parsedate_to_datetime(env.index("demo").headers["last-modified"]).timestamp()
    assert os.stat(root / "de/mo/demo").st_mtime == modified
    assert not [p for p in root.rglob(".*")]  # no temporary file left


def test_a_step_writes_the_changes_and_a_resync_removes_deleted_crates(
    env: RegistryEnv, tmp_path: Path
) -> None:
    token = published(env)
    root = tmp_path / "export"
    export = exporter(env, root)
    export.resync()
    assert export.step().written == 0

    assert env.publish(token, "demo", "1.2.0").status_code == 200
    step = export.step()
    assert step.written == 1
    assert (root / "de/mo/demo").read_bytes() == env.index("demo").content

    # The database loses a crate (a restore from before it existed): a resync removes
    # its file, and the directories left empty.
    def forget(conn: object) -> None:
        for sql in (
            "DELETE FROM index_files WHERE path = 'bi/g-/big-lib'",
            "DELETE FROM versions WHERE crate_id = (SELECT id FROM crates WHERE name = 'Big-Lib')",
            "DELETE FROM owners WHERE crate_id = (SELECT id FROM crates WHERE name = 'Big-Lib')",
            "DELETE FROM crates WHERE name = 'Big-Lib'",
        ):
            conn.execute(sql)  # type: ignore[attr-defined]

    env.registry.db.call(forget)
    synced = export.resync()
    assert synced.removed == 1
    assert not (root / "bi").exists()
    assert sorted(files_of(root)) == ["2/ab", "config.json", "de/mo/demo"]


def test_the_index_exported_to_the_object_store(
    env: RegistryEnv, tmp_path: Path, s3_server: S3Server
) -> None:
    published(env)
    settings = s3_server.storage(prefix="reg")
    store = open_storage(settings, tmp_path)
    assert isinstance(store, S3Storage)
    store.open()
    target = ObjectStoreTarget(store)
    export = Exporter(env.registry.db, target, env.registry.config_body)
    export.resync()
    bucket = store.bucket
    assert s3_server.keys(bucket) == [
        "reg/index/2/ab",
        "reg/index/bi/g-/big-lib",
        "reg/index/config.json",
        "reg/index/de/mo/demo",
    ]
    got = store.client.get_object(Bucket=bucket, Key="reg/index/de/mo/demo")
    assert got["Body"].read() == env.index("demo").content
    target.write("zz/zz/zzz-gone", b"{}\n", "text/plain")
    assert export.resync().removed == 1
    assert "reg/index/zz/zz/zzz-gone" not in s3_server.keys(bucket)


def run(data_dir: Path, *args: str) -> int:
    return main(["registry", "--data-dir", str(data_dir), "index", "export", *args])


def test_the_export_command_refuses_a_foreign_directory_and_a_private_registry(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TRUSTPUB_CONFIG", raising=False)
    data = tmp_path / "data"
    out = tmp_path / "out"
    assert run(data, str(out), "--public-url", "https://crates.example") == 0
    assert (out / "config.json").read_bytes() == (
        b'{"dl":"https://crates.example/api/v1/crates","api":"https://crates.example",'
        b'"auth-required":false}'
    )
    assert "exported 0 index file(s) and config.json" in capsys.readouterr().err

    # A directory that holds something else: a resync would delete it.
    foreign = tmp_path / "www"
    foreign.mkdir()
    (foreign / "index.html").write_text("hello")
    assert run(data, str(foreign)) == 2
    assert "holds no exported index" in capsys.readouterr().err
    assert (foreign / "index.html").exists()

    # A private registry's index is not exported unless the operator says so.
    config = tmp_path / "trustpub.toml"
    config.write_text(f'data_dir = "{data}"\n[registry]\nauth_required = true\n')
    private = tmp_path / "private"
    argv = ["registry", "--config", str(config), "index", "export", str(private)]
    assert main(argv) == 1
    assert "requires authentication" in capsys.readouterr().err
    assert not private.exists()
    assert main([*argv, "--allow-private"]) == 0
    assert b'"auth-required":true' in (private / "config.json").read_bytes()


def test_watch_writes_each_change_until_stopped(env: RegistryEnv, tmp_path: Path) -> None:
    token = published(env)
    root = tmp_path / "export"
    export = exporter(env, root)
    stop = threading.Event()
    watcher = threading.Thread(target=export.watch, args=(0.01, stop))
    watcher.start()
    try:
        assert env.publish(token, "demo", "1.3.0").status_code == 200
        served = env.index("demo").content
        deadline = time.monotonic() + 10
        target = root / "de/mo/demo"
        while not (target.is_file() and target.read_bytes() == served):
            assert time.monotonic() < deadline, "the change was not exported"
            time.sleep(0.01)
    finally:
        stop.set()
        watcher.join(timeout=10)
    assert not watcher.is_alive()
