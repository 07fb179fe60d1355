"""Throughput of exchange, introspection, publish and index on each storage backend,
measured in ONE run so the figures can be compared with each other.

    .venv/bin/python bench/backends.py [--seconds 8] [--concurrency 16]

Backends (one fresh `trustpub serve`, 1 worker, each):

    sqlite      tokens in the embedded SQLite store, registry data in SQLite
    redis       tokens in Redis (127.0.0.1:6379, a unique prefix), registry data in SQLite
    postgresql  tokens and registry data in PostgreSQL (127.0.0.1:5432, a new database
                dropped at the end)

The load generator is an asyncio httpx client in this process (publish bodies are
binary, which bench/post.lua does not send), on the same two cores as the server and
the databases, and the machine is shared: absolute figures are lower than wrk's in
bench/RESULTS.md and drift between runs. Compare ratios within one run only; each
scenario runs on every backend back to back, so they share the same moment's load.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from load import (  # noqa: E402  (bench/ is the script's directory)
    AUDIENCE,
    CREDENTIAL,
    EXCHANGE,
    INTROSPECT,
    Minter,
    free_port,
    started,
    wait_for,
    write_trustpub_config,
)

from tests.registry.helpers import body_for  # noqa: E402
from trustpub.devissuer import DevIssuer, serve_in_thread  # noqa: E402

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
BACKENDS = ("sqlite", "redis", "postgresql")
SCENARIOS = ("exchange", "introspect", "publish", "index")
INDEX_VERSIONS = 20


@contextmanager
def postgresql_database() -> Iterator[str]:
    name = f"trustpub_bench_{uuid.uuid4().hex}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def service(backend: str, issuer: DevIssuer, workdir: Path) -> Iterator[str]:
    home = workdir / backend
    home.mkdir()
    port = free_port()
    with ExitStack() as stack:
        prefix = f"trustpub-bench:{uuid.uuid4().hex}:"
        config = write_trustpub_config(home, port, issuer, prefix)
        text = config.read_text()
        if backend == "sqlite":
            text = text.replace(
                text.split("store = ", 1)[1].split("\n", 1)[0], f'"sqlite:///{home}/store.db"'
            )
        elif backend == "postgresql":
            url = stack.enter_context(postgresql_database())
            text = text.replace(text.split("store = ", 1)[1].split("\n", 1)[0], f'"{url}"')
            text += f'\n[registry]\ndatabase = "{url}"\n'
        config.write_text(text)
        log = home / "serve.log"
        argv = [sys.executable, "-m", "trustpub", "serve", "--config", str(config)]
        process = stack.enter_context(started(argv, log, home))
        url = f"http://127.0.0.1:{port}"
        wait_for(f"{url}/healthz", process, log, post=False)
        yield url


def registry_token(config: Path) -> str:
    cli = [sys.executable, "-m", "trustpub", "registry", "--config", str(config)]
    subprocess.run([*cli, "user", "add", "bench"], check=True, capture_output=True)
    made = subprocess.run(
        [*cli, "token", "create", "--user", "bench", "--scope", "publish-new",
         "--scope", "publish-update"],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return made.stdout.strip()


async def drive(
    seconds: float, concurrency: int, request: Callable[[httpx.AsyncClient], Awaitable[int]]
) -> tuple[int, float]:
    """Requests answered 2xx in ``seconds`` by ``concurrency`` loops; any other answer
    stops the run (a benchmark of refusals measures nothing)."""
    done = 0
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:

        async def loop() -> None:
            nonlocal done
            while time.monotonic() < deadline:
                status = await request(client)
                if not 200 <= status < 300:
                    raise SystemExit(f"a request answered {status}")
                done += 1

        start = time.monotonic()
        await asyncio.gather(*(loop() for _ in range(concurrency)))
        return done, time.monotonic() - start


def run_backend(
    backend: str, issuer: DevIssuer, minter: Minter, workdir: Path, args: argparse.Namespace
) -> dict[str, float]:
    rates: dict[str, float] = {}
    with service(backend, issuer, workdir) as url:
        config = workdir / backend / "trustpub.toml"
        api_token = registry_token(config)
        jwts = iter(minter.mint(args.jwts))
        minted: list[str] = []

        async def exchange(client: httpx.AsyncClient) -> int:
            response = await client.post(f"{url}{EXCHANGE}", json={"jwt": next(jwts)})
            if response.status_code == 200:
                minted.append(response.json()["token"])
            return response.status_code

        count, took = asyncio.run(drive(args.seconds, args.concurrency, exchange))
        rates["exchange"] = count / took

        tokens = itertools.cycle(minted[:256])
        headers = {"Authorization": f"Bearer {CREDENTIAL}"}

        async def introspect(client: httpx.AsyncClient) -> int:
            response = await client.post(
                f"{url}{INTROSPECT}", json={"token": next(tokens)}, headers=headers
            )
            return response.status_code

        count, took = asyncio.run(drive(args.seconds, args.concurrency, introspect))
        rates["introspect"] = count / took

        numbers = itertools.count()
        bodies = (body_for("bench-crate", f"0.0.{n}") for n in numbers)

        async def publish(client: httpx.AsyncClient) -> int:
            response = await client.put(
                f"{url}/api/v1/crates/new",
                content=next(bodies),
                headers={"Authorization": api_token},
            )
            return response.status_code

        count, took = asyncio.run(drive(args.seconds, args.concurrency, publish))
        rates["publish"] = count / took

        # The same index file on every backend: one crate of INDEX_VERSIONS versions.
        for n in range(INDEX_VERSIONS):
            published = httpx.put(
                f"{url}/api/v1/crates/new",
                content=body_for("bench-index", f"1.0.{n}"),
                headers={"Authorization": api_token},
                timeout=30,
            )
            published.raise_for_status()

        async def index(client: httpx.AsyncClient) -> int:
            response = await client.get(f"{url}/index/be/nc/bench-index")
            return response.status_code

        count, took = asyncio.run(drive(args.seconds, args.concurrency, index))
        rates["index"] = count / took
    return rates


def table(results: dict[str, dict[str, float]]) -> str:
    lines = [
        "| scenario | " + " | ".join(f"{b} req/s" for b in BACKENDS) + " | postgresql / sqlite |"
        " postgresql / redis |",
        "|---|" + "---:|" * (len(BACKENDS) + 2),
    ]
    for scenario in SCENARIOS:
        rates = [results[b][scenario] for b in BACKENDS]
        pg, lite, red = results["postgresql"], results["sqlite"], results["redis"]
        lines.append(
            f"| {scenario} | "
            + " | ".join(f"{r:.0f}" for r in rates)
            + f" | {pg[scenario] / lite[scenario]:.2f} | {pg[scenario] / red[scenario]:.2f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--jwts", type=int, default=12000, help="JWTs minted per backend")
    args = parser.parse_args(argv)
    results: dict[str, dict[str, float]] = {}
    with serve_in_thread(provider="github") as issuer, tempfile.TemporaryDirectory() as tmp:
        minter = Minter(issuer)
        try:
            for backend in BACKENDS:
                results[backend] = run_backend(backend, issuer, minter, Path(tmp), args)
                print(backend, json.dumps(results[backend]), file=sys.stderr)
        finally:
            minter.close()
    print(table(results))
    print(f"\naudience {AUDIENCE}; {args.seconds:g} s per scenario, {args.concurrency} clients")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
