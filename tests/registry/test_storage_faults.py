"""The registry's storage under real faults: its database deleted or moved while
running, a full disk, a read-only data directory, and processes killed mid-publish.

Faults are made for real: a size-limited tmpfs and read-only bind mounts (as root),
``RLIMIT_FSIZE`` on a server process, ``SIGKILL`` at the crash point.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import resource
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import anyio
import httpx
import pytest
from starlette.testclient import TestClient

from tests.live import free_port
from tests.registry.conftest import (
    PUBLIC_URL,
    FakeAuthority,
    RegistryEnv,
    detail,
    file_storage_only,
)
from tests.registry.helpers import body_for, make_crate, metadata, publish_body
from trustpub.config import Settings
from trustpub.errors import ConfigurationError
from trustpub.registry import Limits, Registry, create_registry_app
from trustpub.registry.auth import generate_user_token, user_token_hash
from trustpub.registry.changes import FULL, UNAVAILABLE
from trustpub.registry.db import RegistryDB
from trustpub.registry.errors import RegistryRefused

ROOT = Path(__file__).parents[2]
IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(
    not IS_ROOT, reason="mounting a tmpfs needs root (the RLIMIT_FSIZE test covers full disks)"
)


def check_writable(registry: Registry) -> RegistryRefused | None:
    """What the readiness probe says: None when ready."""
    try:
        anyio.run(registry.check_writable)
    except RegistryRefused as exc:
        return exc
    return None


def on_disk(directory: Path) -> list[str]:
    """Every .crate and staged file under a registry directory."""
    return sorted(
        str(p.relative_to(directory))
        for pattern in ("crates/*/*.crate", "tmp/*")
        for p in directory.glob(pattern)
    )


# -- the database moved or deleted while running -----------------------------------------


@file_storage_only
def test_a_deleted_database_answers_503_and_is_never_recreated(
    env: RegistryEnv, sqlite_only: None
) -> None:
    env.user("alice")
    alice = env.token("alice")
    assert env.publish(alice, "demo", "1.0.0").status_code == 200
    assert check_writable(env.registry) is None
    for suffix in ("", "-wal", "-shm"):
        (env.directory / f"registry.db{suffix}").unlink(missing_ok=True)

    response = env.publish(alice, "demo", "1.1.0")
    assert response.status_code == 503
    assert detail(response) == UNAVAILABLE
    assert str(env.directory) not in response.text
    assert env.index("demo").status_code == 503
    assert env.client.get("/api/v1/crates/demo").status_code == 503
    problem = check_writable(env.registry)
    assert problem is not None
    assert problem.status_code == 503
    assert str(env.directory) not in problem.detail
    # Nothing was recreated, and the failed publish left no file behind.
    assert not (env.directory / "registry.db").exists()
    assert on_disk(env.directory) == ["crates/demo/demo-1.0.0.crate"]


@file_storage_only
def test_a_moved_data_directory_answers_503_until_it_is_back(
    env: RegistryEnv, sqlite_only: None
) -> None:
    # SQLite: the database moves with the directory. (PostgreSQL keeps answering; the
    # file store alone then misses its files: its own concern, trustpub.registry.storage.)
    env.user("alice")
    alice = env.token("alice")
    assert env.publish(alice, "demo", "1.0.0").status_code == 200
    moved = env.directory.with_name(env.directory.name + "-moved")
    env.directory.rename(moved)
    try:
        assert env.publish(alice, "demo", "1.1.0").status_code == 503
        assert env.client.get("/api/v1/crates/demo/1.0.0/download").status_code == 503
        assert check_writable(env.registry) is not None
        assert not env.directory.exists()  # not recreated, not even the directory
    finally:
        moved.rename(env.directory)
    assert check_writable(env.registry) is None
    assert env.publish(alice, "demo", "1.1.0").status_code == 200
    assert [v["vers"] for v in env.index_lines("demo")] == ["1.0.0", "1.1.0"]


def test_readyz_reports_the_registry_and_names_no_file(tmp_path: Path) -> None:
    from trustpub.api.app import create_app

    (tmp_path / "policies").mkdir()
    settings = replace(
        Settings(),
        issuers=(),
        policy_dir=tmp_path / "policies",
        store_url=f"sqlite:///{tmp_path}/store.db",
        data_dir=tmp_path / "data",
        registry_enabled=True,
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        assert client.get("/readyz").status_code == 200, client.get("/readyz").text
        (tmp_path / "data" / "registry" / "registry.db").unlink()
        response = client.get("/readyz")
        assert response.status_code == 503
        assert response.json()["checks"]["registry"] == "failed"
        assert str(tmp_path) not in response.text


# -- full disks ---------------------------------------------------------------------------


@contextlib.contextmanager
def mounted(target: Path, options: str) -> Iterator[Path]:
    target.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)], check=True)
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], check=True)


def fill(directory: Path, leave: int) -> Path:
    """Fill the file system until ``leave`` bytes are free."""
    st = os.statvfs(directory)
    filler = directory / "filler"
    filler.write_bytes(b"\0" * max(st.f_bavail * st.f_frsize - leave, 0))
    return filler


@needs_root
def test_a_full_disk_is_507_with_nothing_recorded_or_left_behind(tmp_path: Path) -> None:
    with mounted(tmp_path / "mnt", "size=4m,mode=0700") as mnt:
        directory = mnt / "registry"
        limits = Limits(crate=256 * 1024, metadata=1024 * 1024)
        app = create_registry_app(directory, PUBLIC_URL, authority=FakeAuthority(), limits=limits)
        with TestClient(app) as client:
            env = RegistryEnv(client, app.state.registry, FakeAuthority(), directory)
            env.user("alice")
            alice = env.token("alice")
            assert env.publish(alice, "demo", "1.0.0").status_code == 200
            assert check_writable(env.registry) is None

            # Room for the staged .crate, not for the database's share of a publish
            # whose metadata is large: SQLite runs out of space inside the transaction.
            filler = fill(mnt, leave=64 * 1024)
            problem = check_writable(env.registry)
            assert problem is not None
            assert problem.status_code == 507
            big = metadata("demo", "1.1.0", description="x" * 400_000)
            response = env.put_body(alice, publish_body(big, make_crate("demo", "1.1.0")))
            assert response.status_code == 507, response.text
            assert detail(response) == FULL
            assert on_disk(directory) == ["crates/demo/demo-1.0.0.crate"]

            # No room even for the staged file.
            filler.unlink()
            filler = fill(mnt, leave=0)
            response = env.publish(alice, "demo", "1.2.0")
            assert response.status_code == 507, response.text
            assert detail(response) == FULL

            filler.unlink()
            assert check_writable(env.registry) is None
            assert env.publish(alice, "demo", "1.1.0").status_code == 200
            assert [v["vers"] for v in env.index_lines("demo")] == ["1.0.0", "1.1.0"]
            assert on_disk(directory) == [
                "crates/demo/demo-1.0.0.crate",
                "crates/demo/demo-1.1.0.crate",
            ]


SERVER = """
import sys, uvicorn
from trustpub.registry import create_registry_app
uvicorn.run(create_registry_app(sys.argv[1], sys.argv[2]), host="127.0.0.1",
            port=int(sys.argv[3]), log_level="warning")
"""


@contextlib.contextmanager
def server(
    directory: Path, *, max_file_size: int | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A registry server process on ``directory`` (``max_file_size``: its RLIMIT_FSIZE)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"

    def limit() -> None:
        if max_file_size is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (max_file_size, max_file_size))

    log = directory.parent / f"server-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(directory), url, str(port)],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=limit,  # only setrlimit, before exec
        )
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the registry server exited:\n{log.read_text()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/index/config.json", timeout=1).status_code == 200:
                    break
            threading.Event().wait(0.05)
        yield url, process
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=30)


def prepare(directory: Path) -> str:
    """A registry with user alice; returns her API token."""
    db = RegistryDB(directory / "registry.db")
    db.open()
    db.add_user("alice")
    token = generate_user_token()
    db.add_token("alice", "t", user_token_hash(token), ["publish-new", "publish-update"], [], None)
    db.close()
    return token


def test_a_crate_over_the_file_size_limit_is_507_not_500(tmp_path: Path) -> None:
    directory = tmp_path / "registry"
    alice = prepare(directory)
    noise = {"noise.bin": random.Random(0).randbytes(600_000)}
    big = publish_body(metadata("demo", "1.0.0"), make_crate("demo", "1.0.0", files=noise))
    with server(directory, max_file_size=512 * 1024) as (url, _):
        response = httpx.put(
            f"{url}/api/v1/crates/new", content=big, headers={"Authorization": alice}
        )
        assert response.status_code == 507, response.text
        assert response.json() == {"errors": [{"detail": FULL}]}
        small = body_for("demo", "1.0.0")
        response = httpx.put(
            f"{url}/api/v1/crates/new", content=small, headers={"Authorization": alice}
        )
        assert response.status_code == 200, response.text
    assert on_disk(directory) == ["crates/demo/demo-1.0.0.crate"]


# -- a read-only data directory --------------------------------------------------------------


@contextlib.contextmanager
def read_only(directory: Path) -> Iterator[None]:
    """Make ``directory`` read-only for this process: a read-only bind mount as root
    (root ignores file modes), else its mode."""
    if IS_ROOT:
        subprocess.run(["mount", "--bind", str(directory), str(directory)], check=True)
        try:
            subprocess.run(["mount", "-o", "remount,ro,bind", str(directory)], check=True)
            yield
        finally:
            subprocess.run(["umount", "-l", str(directory)], check=True)
    else:
        directory.chmod(0o500)
        try:
            yield
        finally:
            directory.chmod(0o700)


@pytest.mark.parametrize("first_start", [True, False])
def test_a_read_only_data_directory_is_one_clear_start_up_error(
    tmp_path: Path, first_start: bool
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    directory = data / "registry"
    if not first_start:
        prepare(directory)
    with read_only(data):
        # As a start-up check before serving, and as the application starts.
        with pytest.raises(ConfigurationError) as checked:
            Registry(directory, PUBLIC_URL).open_storage()
        app = create_registry_app(directory, PUBLIC_URL)
        with pytest.raises(ConfigurationError) as caught, TestClient(app):
            pass
    assert checked.value.detail == caught.value.detail
    message = caught.value.detail
    assert message.startswith(f"the registry cannot use its data directory {directory}: ")
    assert "ead-only" in message or "ermission denied" in message, message


# -- crashes mid-publish ------------------------------------------------------------------


CRASH = """
import os, signal, sys
from pathlib import Path
from tests.registry.helpers import body_for
from trustpub.registry import changes
from trustpub.registry.actors import SCOPES, UserActor
from trustpub.registry.db import RegistryDB
from trustpub.registry.storage.local import LocalStorage
from trustpub.registry.publish import Limits, parse_publish

root, point = Path(sys.argv[1]), sys.argv[2]
db = RegistryDB(root / "registry.db")
db.open()
files = LocalStorage(root)
files.open()
request = parse_publish(body_for("demo", "1.0.0"), Limits())
staged = files.stage(request.crate)

def place(crate):
    if point == "before-rename":
        os.kill(os.getpid(), signal.SIGKILL)
    files.place(staged, crate, "1.0.0")
    if point == "after-rename":
        os.kill(os.getpid(), signal.SIGKILL)

actor = UserActor(user_id=1, login="alice", token_id=1, scopes=frozenset(SCOPES))
changes.publish(db, actor, request, place, lambda crate: files.remove(crate, "1.0.0"))
"""


@pytest.mark.parametrize(
    ("point", "left"),
    [("before-rename", "tmp/"), ("after-rename", "crates/demo/demo-1.0.0.crate")],
)
def test_a_crash_mid_publish_leaves_nothing_after_the_next_start(
    tmp_path: Path, point: str, left: str, caplog: pytest.LogCaptureFixture
) -> None:
    directory = tmp_path / "registry"
    alice = prepare(directory)
    crashed = subprocess.run([sys.executable, "-c", CRASH, str(directory), point], cwd=ROOT)
    assert crashed.returncode == -signal.SIGKILL
    assert len(on_disk(directory)) == 1
    assert on_disk(directory)[0].startswith(left)

    caplog.set_level(logging.INFO, logger="trustpub.registry")
    app = create_registry_app(directory, PUBLIC_URL)
    with TestClient(app) as client:
        assert on_disk(directory) == []
        removed = [r for r in caplog.records if r.name == "trustpub.registry"]
        assert len(removed) == 1
        assert "removed" in removed[0].getMessage()
        assert left in json.dumps(removed[0].__dict__.get("fields"))
        assert client.get("/api/v1/crates/demo").status_code == 404
        response = client.put(
            "/api/v1/crates/new",
            content=body_for("demo", "1.0.0"),
            headers={"Authorization": alice},
        )
        assert response.status_code == 200, response.text
    assert on_disk(directory) == ["crates/demo/demo-1.0.0.crate"]


def test_kill_9_during_publishes_never_leaves_orphans_or_loses_an_acknowledged_one(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "registry"
    alice = prepare(directory)
    acknowledged: set[str] = set()
    lock = threading.Lock()
    counter = iter(range(1_000_000))

    def publisher(url: str, stop: threading.Event) -> None:
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                with lock:
                    vers = f"1.0.{next(counter)}"
                try:
                    response = client.put(
                        f"{url}/api/v1/crates/new",
                        content=body_for("demo", vers),
                        headers={"Authorization": alice},
                    )
                except httpx.HTTPError:
                    return  # the server was killed
                if response.status_code == 200:
                    with lock:
                        acknowledged.add(vers)

    for _ in range(3):
        with server(directory) as (url, process):
            # Every restart swept what the last kill left: files and versions agree.
            assert_consistent(directory, acknowledged)
            stop = threading.Event()
            threads = [threading.Thread(target=publisher, args=(url, stop)) for _ in range(4)]
            for thread in threads:
                thread.start()
            target = len(acknowledged) + 3
            while len(acknowledged) < target:
                threading.Event().wait(0.01)
            process.kill()
            process.wait()
            stop.set()
            for thread in threads:
                thread.join()
    with server(directory):
        assert_consistent(directory, acknowledged)


def assert_consistent(directory: Path, acknowledged: set[str]) -> None:
    db = RegistryDB(directory / "registry.db")
    db.open()
    try:
        found = db.crate_with_versions("demo")
        recorded = {v.num for v in found[1]} if found is not None else set()
    finally:
        db.close()
    assert acknowledged <= recorded
    files = {p.name for p in (directory / "crates").glob("*/*.crate")}
    assert files == {f"demo-{num}.crate" for num in recorded}
    assert [p.name for p in (directory / "tmp").iterdir()] == []
