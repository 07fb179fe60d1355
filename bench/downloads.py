"""Download throughput with and without download counting, side by side.

    .venv/bin/python bench/downloads.py [--seconds 4] [--rounds 3] [--concurrency 16]
                                        [--database postgresql://...]

The registry app runs in this process (httpx's ASGI transport: no network, no server),
on a temporary data directory (SQLite, or ``--database``). One crate of 20 versions;
each request downloads one of them (round robin), as cargo does. Two modes, alternated
``--rounds`` times so they share the machine's moments of load:

- ``counting``: as in production, with the flush interval lowered to 1 s so that
  several batches are written (one write transaction each) during every round;
- ``off``: ``DownloadCounter.count`` replaced by a no-op, and nothing flushed.

It prints each round's downloads per second and CPU time per download (this process,
all threads: less disturbed by other work than the rate), the median ratios
counting / off, the time
of one flush transaction (20 and 1,000 pairs), and the cost of ``count()`` alone
(``timeit``) next to the time of one download. The machine
is shared: read the ratios, not the rates.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import statistics
import sys
import tempfile
import time
import timeit
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.registry.helpers import body_for  # noqa: E402
from trustpub.registry import Registry  # noqa: E402
from trustpub.registry.auth import generate_user_token, user_token_hash  # noqa: E402
from trustpub.registry.downloads import DAY, DownloadCounter, FlushPolicy, utc_day  # noqa: E402
from trustpub.web import ErrorBoundary, exception_handlers  # noqa: E402

VERSIONS = [f"1.0.{i}" for i in range(20)]


def build(directory: Path, database: str | None) -> tuple[Registry, object]:
    from starlette.applications import Starlette
    from starlette.middleware import Middleware

    registry = Registry(
        directory, "http://bench.test", database=database, download_flush=FlushPolicy(1.0)
    )
    app = Starlette(
        routes=registry.routes,
        middleware=[Middleware(ErrorBoundary)],
        exception_handlers=exception_handlers(),
    )
    return registry, app


async def run_round(
    client: httpx.AsyncClient, seconds: float, concurrency: int
) -> tuple[float, float]:
    """Downloads per second (wall clock), and CPU microseconds per download (this
    process, all its threads: less disturbed by other work on the machine)."""
    done = 0
    stop = time.perf_counter() + seconds

    async def worker(start: int) -> None:
        nonlocal done
        i = start
        while time.perf_counter() < stop:
            vers = VERSIONS[i % len(VERSIONS)]
            response = await client.get(f"/api/v1/crates/bench/{vers}/download")
            if response.status_code != 200:
                raise RuntimeError(f"download answered {response.status_code}")
            done += 1
            i += 1

    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker(n) for n in range(concurrency)))
    return done / (time.perf_counter() - started), (time.process_time() - cpu) / done * 1e6


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        registry, app = build(Path(tmp), args.database)
        async with registry.open(None):
            registry.db.add_user("bench")
            token = generate_user_token()
            registry.db.add_token(
                "bench",
                "bench",
                user_token_hash(token),
                ["publish-new", "publish-update"],
                [],
                None,
            )
            transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
            async with httpx.AsyncClient(transport=transport, base_url="http://bench.test") as c:
                for vers in VERSIONS:
                    answer = await c.put(
                        "/api/v1/crates/new",
                        content=body_for("bench", vers),
                        headers={"Authorization": token},
                    )
                    answer.raise_for_status()
                counting = registry.downloads
                off = _NotCounting(counting)
                rates: dict[str, list[float]] = {"counting": [], "off": []}
                cpus: dict[str, list[float]] = {"counting": [], "off": []}
                await run_round(c, 1.0, args.concurrency)  # warm-up
                for n in range(args.rounds):
                    for mode in ("off", "counting") if n % 2 else ("counting", "off"):
                        registry.downloads = counting if mode == "counting" else off
                        rate, cpu = await run_round(c, args.seconds, args.concurrency)
                        rates[mode].append(rate)
                        cpus[mode].append(cpu)
                        print(
                            f"round {n + 1} {mode:>8}: {rate:8.1f} downloads/s,"
                            f" {cpu:7.0f} us CPU per download",
                            flush=True,
                        )
                registry.downloads = counting
                await counting.flush()
            info = registry.db.crate("bench")
            flushed = info.downloads if info is not None else 0
            flush_ms = flush_cost(registry)
        ratio = statistics.median(
            c / o for c, o in zip(rates["counting"], rates["off"], strict=True)
        )
        print(
            f"median counting {statistics.median(rates['counting']):.1f}/s, "
            f"off {statistics.median(rates['off']):.1f}/s, ratio counting/off {ratio:.3f}"
        )
        cpu_ratio = statistics.median(cpus["counting"]) / statistics.median(cpus["off"])
        print(
            f"median CPU per download: counting {statistics.median(cpus['counting']):.0f} us,"
            f" off {statistics.median(cpus['off']):.0f} us, ratio counting/off {cpu_ratio:.3f}"
        )
        print(f"downloads written to the database: {flushed}")
        for keys, ms in flush_ms.items():
            print(f"one flush of {keys} (version, day) pairs: {ms:.1f} ms (one transaction)")
        per_count = count_cost(registry)
        per_download = 1e6 / statistics.median(rates["off"])
        print(
            f"count() alone: {per_count:.2f} us, against {per_download:.0f} us per download "
            f"({100 * per_count / per_download:.2f} %)"
        )


class _NotCounting(DownloadCounter):
    """The counter with ``count`` a no-op: the registry as it was before counting."""

    def __init__(self, real: DownloadCounter) -> None:
        self.policy = real.policy

    def count(self, version_id: int) -> None:
        pass

    async def flush(self) -> bool:
        return True


def flush_cost(registry: Registry) -> dict[int, float]:
    """Milliseconds of one ``add_downloads`` transaction (best of 3), by batch size:
    20 versions on 1 day, and on 50 days."""
    found = registry.db.crate_with_versions("bench")
    assert found is not None
    ids = [v.id for v in found[1]]
    costs: dict[int, float] = {}
    for days in (1, 50):
        batch = {(vid, utc_day(time.time() - d * DAY)): 1 for vid in ids for d in range(days)}
        best = math.inf
        for _ in range(3):
            started = time.perf_counter()
            registry.db.add_downloads(batch)
            best = min(best, time.perf_counter() - started)
        costs[len(batch)] = best * 1000
    return costs


def count_cost(registry: Registry) -> float:
    """Microseconds per ``count()``, best of 5 runs of 200k (over 20 versions)."""
    counter = DownloadCounter(registry.db, registry.metrics)
    ids = list(range(1, 21))
    loops = 200_000

    def run() -> None:
        count = counter.count
        for i in range(loops):
            count(ids[i % 20])

    return min(timeit.repeat(run, number=1, repeat=5)) / loops * 1e6


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--database", default=None, help="a postgresql:// URL (default SQLite)")
    asyncio.run(main(parser.parse_args()))
