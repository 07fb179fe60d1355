"""What keeps tests apart on the shared servers, and the check that they cleaned up.

Several test processes share the machine's Redis and PostgreSQL at once: the
pytest-xdist workers of one ``scripts/test`` (one per CPU) and other developers' runs.
Every name a test takes on a shared server carries ``RUN``, a token unique to the
process, then a uuid of its own:

- Redis keys: under ``new_redis_prefix()``, ``trustpub-test:<RUN>:<uuid>:``;
- PostgreSQL databases: ``new_database_name()``, ``trustpub_test_<RUN>_<uuid>``.

Temporary directories (pytest's ``tmp_path``, one base per worker), ports (the kernel's
free ones, ``tests.live.free_port``), ``CARGO_HOME`` (under ``tmp_path``) and the S3
emulator (one per worker, a bucket per test) are per process already.

At the end of the session ``sweep()`` removes whatever this process left under its
``RUN`` (keys, databases) and ends the child processes still running; the session
fixture in tests/conftest.py fails the run when there was any, so a fixture that leaks
is found the day it is written, not when the shared servers fill up.
"""

from __future__ import annotations

import contextlib
import os
import signal
import uuid
from pathlib import Path

REDIS_URL = "redis://127.0.0.1:6379/0"
ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"

#: Unique to this test process (each xdist worker is one).
RUN = uuid.uuid4().hex[:12]

_used: set[str] = set()


def new_redis_prefix() -> str:
    """A Redis key prefix no other test, worker or run uses."""
    _used.add("redis")
    return f"trustpub-test:{RUN}:{uuid.uuid4().hex}:"


def new_database_name() -> str:
    """A PostgreSQL database name no other test, worker or run uses (59 characters,
    within PostgreSQL's 63)."""
    _used.add("postgresql")
    return f"trustpub_test_{RUN}_{uuid.uuid4().hex}"


def _redis_leftovers() -> list[str]:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"trustpub-test:{RUN}:*", count=1000))
        if keys:
            client.delete(*keys)
        return [f"Redis key {k.decode(errors='replace')}" for k in keys]
    finally:
        client.close()


def _database_leftovers() -> list[str]:
    import psycopg

    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        names = [
            str(row[0])
            for row in conn.execute(
                "SELECT datname FROM pg_database WHERE starts_with(datname, %s)",
                (f"trustpub_test_{RUN}_",),
            ).fetchall()
        ]
        for name in names:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return [f"PostgreSQL database {name}" for name in names]


def _child_processes() -> list[str]:
    """This process's children that still run (zombies aside), ended with SIGKILL."""
    proc = Path("/proc")
    if not proc.is_dir():
        return []
    me = os.getpid()
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
        if fields.get("PPid", "").strip() != str(me) or fields.get("State", "").startswith("Z"):
            continue
        if "multiprocessing" in cmdline:
            continue  # the standard library's own helpers (resource tracker, forkserver)
        found.append(f"process {entry.name}: {cmdline.strip()[:200]}")
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(entry.name), signal.SIGKILL)
    return found


def sweep() -> list[str]:
    """What this process's tests left behind, removed: keys, databases, processes."""
    found = _child_processes()
    if "redis" in _used:
        found += _redis_leftovers()
    if "postgresql" in _used:
        found += _database_leftovers()
    return found
