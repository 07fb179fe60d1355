"""CPU time and throughput of the SQLite token store under concurrent callers.

    .venv/bin/python bench/sqlite_store.py [--concurrency 32] [--ops 3000] [--repeats 3]
                                           [--baseline REV]

``--concurrency`` callers (tasks on one uvloop loop, as in a ``trustpub serve`` worker)
each run ``issue`` (a fresh jti and token each time), then ``lookup`` (of issued tokens)
back to back, closed loop, until ``--ops`` operations of each kind are done, against a
real ``SQLiteStore`` in a temporary directory (``synchronous = FULL``, so every commit
is an fsync on that file system). Prints, per kind, the process CPU time per operation
(``time.process_time``: the loop and the worker threads) and the wall operations per
second, the median of ``--repeats`` runs.

``--baseline REV`` also loads ``trustpub/store/sqlite.py`` as it is at git revision REV
and measures it in the same run, alternating with the working tree's, so both see the
same moment's load on a shared machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from store_harness import class_at, closed_loop, h  # noqa: E402  (bench/ is the script's directory)

from trustpub.store.sqlite import SQLiteStore  # noqa: E402


def store_class_at(rev: str) -> Any:
    """``SQLiteStore`` as defined by ``trustpub/store/sqlite.py`` at git revision ``rev``."""
    return class_at(rev, "trustpub/store/sqlite.py", "SQLiteStore")


async def measure(
    store_class: Any, directory: Path, concurrency: int, ops: int, run: int
) -> dict[str, tuple[float, float]]:
    store = store_class(directory / f"run-{run}" / "trustpub.db")
    await store.ping()
    expires = int(time.time()) + 3600
    tag = f"{run}"

    async def issue(i: int) -> None:
        ok = await store.issue(h(f"jti-{tag}-{i}"), expires, h(f"t-{tag}-{i}"), b"r" * 200, expires)
        assert ok

    async def lookup(i: int) -> None:
        assert await store.lookup(h(f"t-{tag}-{i}")) is not None

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
    args = parser.parse_args()

    variants: dict[str, Any] = {}
    if args.baseline:
        variants[f"at {args.baseline}"] = store_class_at(args.baseline)
    variants["working tree"] = SQLiteStore
    samples: dict[tuple[str, str], list[tuple[float, float]]] = {}

    async def run_all(directory: Path) -> None:
        for repeat in range(args.repeats):
            for n, (name, store_class) in enumerate(variants.items()):
                found = await measure(
                    store_class, directory, args.concurrency, args.ops, repeat * 10 + n
                )
                for kind, sample in found.items():
                    samples.setdefault((name, kind), []).append(sample)

    with tempfile.TemporaryDirectory(prefix="trustpub-bench-") as tmp:
        uvloop.run(run_all(Path(tmp)))

    print(f"{args.concurrency} concurrent callers, {args.ops} operations per kind, ", end="")
    print(f"median of {args.repeats} runs")
    print(f"{'store':<20} {'operation':<8} {'CPU us/op':>10} {'ops/s':>9}")
    for (name, kind), runs in samples.items():
        cpu = statistics.median(c for c, _ in runs) / args.ops * 1e6
        rate = args.ops / statistics.median(w for _, w in runs)
        print(f"{name:<20} {kind:<8} {cpu:>10.0f} {rate:>9.0f}")


if __name__ == "__main__":
    main()
