"""Matching cost with 10 and with 100,000 owner configs in the registry database.

    .venv/bin/python bench/config_lookup.py

Owner configs join the file policies in one ``PolicySet`` (``OwnerConfigs``), so
matching is one dictionary lookup whatever their number. What each exchange adds is
one read of the configs' generation (``combined`` on an unchanged set); a change costs
reading and converting the changed configs (the database's change log) and indexing
the union again. Prints each cost for 10
and for 100,000 configs.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from types import MappingProxyType
from typing import Any

from trustpub.oidc.claims import VerifiedClaims
from trustpub.oidc.issuers import DEFAULT_ISSUERS
from trustpub.policies import PolicySet
from trustpub.providers import InMemoryNamespacePins, match
from trustpub.registry.configs import OwnerConfigs
from trustpub.registry.db import RegistryDB
from trustpub.registry.db.configs import NewConfig

GITHUB = DEFAULT_ISSUERS[0]
CALLS = 5_000


def claims(index: int) -> VerifiedClaims:
    repository = f"org{index % 1000}/repo{index}"
    now = int(time.time())
    return VerifiedClaims(
        issuer=GITHUB,
        jti="bench",
        issued_at=now,
        expires_at=now + 300,
        claims=MappingProxyType(
            {
                "iss": GITHUB.url,
                "repository": repository,
                "repository_owner_id": "131804563",
                "workflow_ref": f"{repository}/.github/workflows/release.yml@refs/tags/v1",
                "event_name": "push",
                "ref": "refs/tags/v1",
            }
        ),
    )


def database(directory: Path, count: int) -> RegistryDB:
    db = RegistryDB(directory / "registry.db")
    db.open()
    user = db.add_user("bench")
    now = int(time.time())

    def fill(conn: Any) -> None:
        rows = [
            (
                f"crate{i}",
                f"crate{i}",
                GITHUB.url,
                f"org{i % 1000}",
                "131804563",
                f"repo{i}",
                user.id,
                now,
            )
            for i in range(count)
        ]
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT INTO trustpub_configs (provider, crate_id, crate_name, canonical, issuer,"
            " repository_owner, owner_id, repository_name, workflow, created_by, created_at,"
            " expires_at) VALUES ('github', NULL, ?, ?, ?, ?, ?, ?, 'release.yml', ?, ?,"
            " 4102444800)",
            rows,
        )
        conn.execute("COMMIT")

    db.call(fill)
    return db


async def timed(fn: object, calls: int) -> float:
    rounds = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(calls):
            await fn()  # type: ignore[operator]
        rounds.append((time.perf_counter() - start) / calls)
    return statistics.median(rounds)


async def measure(count: int, index: int) -> tuple[float, float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        db = database(Path(tmp), count)
        live = OwnerConfigs(db, DEFAULT_ISSUERS)
        files = PolicySet(())
        start = time.perf_counter()
        policy_set = await live.combined(files)
        first_build = time.perf_counter() - start
        assert len(policy_set) == count
        pins = InMemoryNamespacePins()
        token = claims(index)

        async def exchange_path() -> None:
            current = await live.combined(files)
            await match(current, token, pins, max_ttl=3600)

        per_exchange = await timed(exchange_path, CALLS)
        # One config added (by any process): the next exchange catches up.
        user = db.users()[0]
        added = NewConfig(
            provider="github",
            crate_name="one-more",
            issuer=GITHUB.url,
            repository_owner="org-new",
            owner_id="1",
            repository_name="repo-new",
            workflow="release.yml",
            environment=None,
            extensions={},
        )
        db.create_config(added, user.id, lambda conn: None, pending_ttl=3600)
        start = time.perf_counter()
        await live.combined(files)
        rebuild = time.perf_counter() - start
        db.close()
    return first_build, per_exchange, rebuild


async def main() -> None:
    for count, index in ((10, 7), (100_000, 99_123)):
        first, per, rebuild = await measure(count, index)
        print(
            f"configs {count:>7,}: {per * 1e6:7.1f} µs per exchange (generation read + match);"
            f" first build {first:.3f} s; rebuild after a change {rebuild:.3f} s"
        )


if __name__ == "__main__":
    asyncio.run(main())
