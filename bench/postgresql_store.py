"""CPU time and throughput of the PostgreSQL token store under concurrent callers.

    .venv/bin/python bench/postgresql_store.py [--concurrency 32] [--ops 3000] [--repeats 3]
                                               [--baseline REV] [--server URL]

``--concurrency`` callers (tasks on one uvloop loop, as in a ``trustpub serve`` worker)
each run ``issue`` (a fresh jti and token each time), then ``lookup`` (of issued tokens)
back to back, closed loop, until ``--ops`` operations of each kind are done, against a
real ``PostgreSQLStore`` on a database created for the run on ``--server`` (default
``postgresql://postgres@127.0.0.1:5432``, trust auth) and dropped after. Prints, per
kind, this process's CPU time per operation (``time.process_time``; the server's own CPU
is not counted) and the wall operations per second, the median of ``--repeats`` runs.

``--baseline REV`` also loads ``trustpub/store/postgresql.py`` as it is at git revision
REV and measures it in the same run, alternating with the working tree's, so both see
the same moment's load on a shared machine.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
import uvloop

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from store_harness import class_at, closed_loop, h  # noqa: E402  (bench/ is the script's directory)

from trustpub.store.postgresql import PostgreSQLStore  # noqa: E402


def store_class_at(rev: str) -> Any:
    """``PostgreSQLStore`` as ``trustpub/store/postgresql.py`` defines it at revision ``rev``."""
    return class_at(rev, "trustpub/store/postgresql.py", "PostgreSQLStore")


async def measure(
    store_class: Any, url: str, concurrency: int, ops: int, run: int
) -> dict[str, tuple[float, float]]:
    store = store_class(url)
    await store.ping()
    expires = int(time.time()) + 3600
    tag = f"{run}"

    async def issue(i: int) -> None:
        ok = await store.issue(h(f"jti-{tag}-{i}"), expires, h(f"t-{tag}-{i}"), b"r" * 200, expires)
        assert ok

    async def lookup(i: int) -> None:
        assert await store.lookup(h(f"t-{tag}-{i}")) is not None

    # Warm the pool (its connections, their prepared statements) before measuring.
    await asyncio.gather(*(store.lookup(h(f"warm-{i}")) for i in range(concurrency)))
    results = {
        "issue": await closed_loop(concurrency, ops, issue),
        "lookup": await closed_loop(concurrency, ops, lookup),
    }
    await store.aclose()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--ops", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline", metavar="REV")
    parser.add_argument("--server", default="postgresql://postgres@127.0.0.1:5432")
    args = parser.parse_args()

    variants: dict[str, Any] = {}
    if args.baseline:
        variants[f"at {args.baseline}"] = store_class_at(args.baseline)
    variants["working tree"] = PostgreSQLStore
    samples: dict[tuple[str, str], list[tuple[float, float]]] = {}

    name = f"trustpub_bench_{uuid.uuid4().hex[:12]}"
    admin = f"{args.server}/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"{args.server}/{name}"

    async def run_all() -> None:
        for repeat in range(args.repeats):
            for n, store_class in enumerate(variants.values()):
                found = await measure(store_class, url, args.concurrency, args.ops, repeat * 10 + n)
                for kind, sample in found.items():
                    samples.setdefault((list(variants)[n], kind), []).append(sample)

    try:
        uvloop.run(run_all())
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    print(f"{args.concurrency} concurrent callers, {args.ops} operations per kind, ", end="")
    print(f"median of {args.repeats} runs")
    print(f"{'store':<20} {'operation':<8} {'CPU us/op':>10} {'ops/s':>9}")
    for (variant, kind), runs in sorted(samples.items(), key=lambda item: item[0][1]):
        cpu = statistics.median(c for c, _ in runs) / args.ops * 1e6
        rate = args.ops / statistics.median(w for _, w in runs)
        print(f"{variant:<20} {kind:<8} {cpu:>10.0f} {rate:>9.0f}")


if __name__ == "__main__":
    main()
