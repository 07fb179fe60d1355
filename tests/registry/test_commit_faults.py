"""A publish whose COMMIT fails: its outcome is read back before its .crate file is
touched, so a version the database recorded never loses its file.

The faults are real: PostgreSQL is reached through a TCP proxy (``CommitCutter``) that
cuts the connection at the client's COMMIT, after forwarding it (the server commits,
its answer is lost: the faithful case), before forwarding it (the server rolls back),
or holding the server's side open (the server still holds the writer lock, as across
a network partition, so the outcome cannot be learned). SQLite offers no practical
way to make a COMMIT that succeeded report a failure; there, a real I/O error at COMMIT
(``RLIMIT_FSIZE`` in a child process) covers its detection and the two other outcomes.
The read-back is the same code on both engines (``RegistryDB.publish``).
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from starlette.testclient import TestClient

from tests.pgproxy import CommitCutter
from tests.registry.conftest import PUBLIC_URL, FakeAuthority, RegistryEnv, detail
from tests.registry.helpers import body_for, make_crate, metadata, publish_body
from trustpub.registry import Registry, create_registry_app
from trustpub.registry.changes import UNCERTAIN, refusal
from trustpub.registry.db import (
    NewVersion,
    PublishOutcomeUnknown,
    RegistryDB,
    StorageUnavailable,
    VersionRow,
)


@pytest.fixture
def cutter() -> Iterator[CommitCutter]:
    proxy = CommitCutter()
    yield proxy
    proxy.close()


def count_versions(database_url: str, crate: str) -> int:
    """Read directly, not through the proxy nor the registry."""
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM versions v JOIN crates c ON c.id = v.crate_id WHERE c.name = %s",
            (crate,),
        ).fetchone()
    assert row is not None
    return int(row[0])


# -- through HTTP: what cargo sees ------------------------------------------------------------


@pytest.fixture
def proxied_env(tmp_path: Path, pg_database: str, cutter: CommitCutter) -> Iterator[RegistryEnv]:
    authority = FakeAuthority()
    app = create_registry_app(
        tmp_path, PUBLIC_URL, authority=authority, database=cutter.url(pg_database)
    )
    with TestClient(app) as client:
        registry: Registry = app.state.registry
        yield RegistryEnv(client, registry, authority, tmp_path)


def test_a_publish_whose_commit_answer_is_lost_succeeds_and_keeps_its_file(
    proxied_env: RegistryEnv, cutter: CommitCutter, pg_database: str
) -> None:
    env = proxied_env
    env.user("alice")
    token = env.token("alice")
    cutter.arm("after")
    response = env.publish(token, "demo", "1.0.0")
    assert cutter.fired.is_set()
    # The server committed: the publish succeeded, and says so as any publish does.
    assert response.status_code == 200, response.text
    assert response.json() == {
        "warnings": {"invalid_categories": [], "invalid_badges": [], "other": []}
    }
    assert count_versions(pg_database, "demo") == 1
    assert env.crate_files() == ["demo-1.0.0.crate"]
    assert [line["vers"] for line in env.index_lines("demo")] == ["1.0.0"]
    download = env.client.get("/api/v1/crates/demo/1.0.0/download", follow_redirects=True)
    assert download.status_code == 200
    assert download.content == make_crate("demo", "1.0.0")


def test_another_change_whose_commit_answer_is_lost_never_claims_nothing_changed(
    proxied_env: RegistryEnv, cutter: CommitCutter
) -> None:
    env = proxied_env
    env.user("alice")
    token = env.token("alice")
    assert env.publish(token, "demo", "1.0.0").status_code == 200
    cutter.arm("after")
    response = env.client.delete("/api/v1/crates/demo/1.0.0/yank", headers={"Authorization": token})
    assert cutter.fired.is_set()
    assert response.status_code == 503
    assert detail(response) == UNCERTAIN
    # It was made: the server committed it. (A yank touches no file: nothing to settle.)
    version = env.registry.db.version("demo", "1.0.0")
    assert version is not None
    assert version.yanked


# -- RegistryDB.publish: the three outcomes of a failed COMMIT --------------------------------


class Files:
    """The file side of a publish, recorded (a real store is exercised above)."""

    def __init__(self) -> None:
        self.placed: list[str] = []
        self.removed: list[str] = []


def publish(db: RegistryDB, files: Files, crate: str = "demo", cksum: str = "a" * 64) -> VersionRow:
    new = NewVersion(
        crate=crate,
        num="1.0.0",
        num_no_build="1.0.0",
        index_entry={"name": crate, "vers": "1.0.0", "deps": [], "cksum": cksum},
        cksum=cksum,
        size=1,
        owner_logins=("alice",),
    )
    return db.publish(new, lambda state: None, files.placed.append, files.removed.append)


@pytest.fixture
def proxied_db(pg_database: str, cutter: CommitCutter) -> Iterator[RegistryDB]:
    # A short lock wait: the "hold" case waits for the writer lock this long.
    db = RegistryDB(cutter.url(pg_database), busy_timeout=0.5)
    db.open()
    db.add_user("alice")
    yield db
    db.close()


def test_a_commit_lost_before_the_server_is_not_recorded_and_its_file_removed(
    proxied_db: RegistryDB, cutter: CommitCutter, pg_database: str
) -> None:
    files = Files()
    cutter.arm("before")
    with pytest.raises(StorageUnavailable) as raised:
        publish(proxied_db, files)
    assert cutter.fired.is_set()
    assert not isinstance(raised.value, PublishOutcomeUnknown)
    assert files.placed == ["demo"]
    assert files.removed == ["demo"]
    assert count_versions(pg_database, "demo") == 0


def test_a_commit_whose_outcome_cannot_be_read_back_keeps_the_file(
    proxied_db: RegistryDB,
    cutter: CommitCutter,
    pg_database: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    files = Files()
    cutter.arm("hold")
    with (
        caplog.at_level(logging.ERROR, logger="trustpub.registry"),
        pytest.raises(PublishOutcomeUnknown) as raised,
    ):
        publish(proxied_db, files)
    assert files.placed == ["demo"]
    assert files.removed == []  # never deleted while the version may be recorded
    assert (raised.value.crate, raised.value.num) == ("demo", "1.0.0")
    logged = [r for r in caplog.records if r.getMessage().startswith("publish outcome unknown")]
    assert len(logged) == 1
    # What the client reads: a retryable 503 that names the version, never a file.
    refused = refusal(raised.value)
    assert refused.status_code == 503
    assert "whether it was recorded is not known yet" in str(refused)
    assert "`demo@1.0.0`" in str(refused)
    assert "127.0.0.1" not in str(refused)
    # The server learns the connection is gone and rolls back; the retry publishes it.
    cutter.release()
    again = Files()
    publish(proxied_db, again)
    assert again.placed == ["demo"]
    assert again.removed == []
    assert count_versions(pg_database, "demo") == 1


def test_a_lost_commit_answer_returns_the_recorded_version_and_removes_nothing(
    proxied_db: RegistryDB, cutter: CommitCutter, pg_database: str
) -> None:
    files = Files()
    cutter.arm("after")
    recorded = publish(proxied_db, files, cksum="b" * 64)
    assert cutter.fired.is_set()
    assert isinstance(recorded, VersionRow)
    assert (recorded.crate_name, recorded.num, recorded.cksum) == ("demo", "1.0.0", "b" * 64)
    assert files.placed == ["demo"]
    assert files.removed == []
    assert count_versions(pg_database, "demo") == 1


# -- a second publish of a version, on every engine -------------------------------------------


def test_a_second_publish_of_a_version_is_refused_even_with_the_same_bytes(
    env: RegistryEnv,
) -> None:
    """As crates.io: a published version is never replaced. A client retrying after an
    unknown outcome learns so that it was recorded; its file is untouched."""
    env.user("alice")
    token = env.token("alice")
    body = body_for("demo", "1.0.0")
    assert env.put_body(token, body).status_code == 200
    for again in (
        body,
        publish_body(metadata("demo", "1.0.0"), make_crate("demo", "1.0.0", files={"x": b"x"})),
    ):
        refused = env.put_body(token, again)
        assert refused.status_code == 409, refused.text
        assert detail(refused) == "crate version `demo@1.0.0` already exists"
    assert len(env.index_lines("demo")) == 1
    assert env.crate_files() == ["demo-1.0.0.crate"]
    assert env.crate_bytes("demo", "1.0.0") == make_crate("demo", "1.0.0")


# -- SQLite: a real I/O error at COMMIT --------------------------------------------------------

# Run in a child process: RLIMIT_FSIZE (here 0 bytes) fails every write to a regular
# file of the process, pytest's capture files included. The WAL is emptied first, so
# the COMMIT, which appends the transaction's pages to it, is what fails (EFBIG: SQLite's
# "disk I/O error"). ``transient``: the limit is lifted as soon as the failure is logged,
# before the read-back; otherwise only after the publish returned.
SQLITE_COMMIT_FAULT = """
import json, logging, resource, sys
from trustpub.registry.db import NewVersion, RegistryDB

path, transient = sys.argv[1], sys.argv[2] == "transient"
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
events = []

def lift():
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))

class LiftAtTheFailure(logging.Handler):
    def emit(self, record):
        if transient and "COMMIT failed" in record.getMessage():
            lift()

logging.getLogger("trustpub.registry").addHandler(LiftAtTheFailure())
db = RegistryDB(path)
db.open()
db.add_user("alice")
db.call(lambda c: c.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall())

def place(name):
    events.append(["place", name])
    if len(events) == 1:  # the first attempt only
        resource.setrlimit(resource.RLIMIT_FSIZE, (0, hard))

def remove(name):
    events.append(["remove", name])

new = NewVersion(
    crate="demo", num="1.0.0", num_no_build="1.0.0",
    index_entry={"name": "demo", "vers": "1.0.0", "deps": [], "cksum": "a" * 64},
    cksum="a" * 64, size=1, owner_logins=("alice",),
)
try:
    db.publish(new, lambda state: None, place, remove)
    events.append(["published"])
except Exception as exc:
    events.append(["raised", type(exc).__name__])
lift()
events.append(["recorded", db.version("demo", "1.0.0") is not None])
db.publish(new, lambda state: None, place, remove)  # the client's retry
lift()
events.append(["recorded", db.version("demo", "1.0.0") is not None])
print(json.dumps(events))
"""


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        # The disk recovers before the read-back: not recorded, so the file is removed.
        (
            "transient",
            [["place", "demo"], ["remove", "demo"], ["raised", "StorageUnavailable"]],
        ),
        # The disk still fails at the read-back: the file is kept, the outcome unknown.
        ("lasting", [["place", "demo"], ["raised", "PublishOutcomeUnknown"]]),
    ],
)
def test_an_io_error_at_sqlite_commit_is_read_back_before_the_file_is_touched(
    tmp_path: Path, fault: str, expected: list[list[str]]
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SQLITE_COMMIT_FAULT, str(tmp_path / "registry.db"), fault],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    events = json.loads(done.stdout)
    assert events == [
        *expected,
        ["recorded", False],  # the COMMIT really failed
        ["place", "demo"],  # the retry publishes it
        ["recorded", True],
    ]
