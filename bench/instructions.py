"""Instructions per request, counted by valgrind's callgrind: repeatable on a loaded machine.

    .venv/bin/python bench/instructions.py [--requests 300] [--before DIR]

Throughput on a machine shared with other work moves by 10-50 % between runs; the number
of instructions a server executes per request does not (within ~1 %). This runs the
reference (``bench/ceiling.py``: Starlette on uvicorn, h11 + asyncio) and ``trustpub
serve`` (Redis store, 10 policies, 10 owner configs) under callgrind with instrumentation
off, warms each up, then counts the instructions of exactly ``--requests`` requests per
scenario (32 concurrent keep-alive connections from an httpx client in this process:
under valgrind the server is ~50 times slower, so the client is never the bottleneck).

``--before DIR`` adds a second trustpub, run from ``DIR`` (a ``git archive`` of an
earlier commit's ``trustpub/``, put first on ``PYTHONPATH``), measured in the same run.

Instruction counts leave out the kernel (socket system calls) and weigh a C instruction
like an interpreted one; the ratios printed (reference instructions / trustpub
instructions, so higher is better, as req/s ratios are) are a proxy for CPU time, to read
beside bench/run's req/s, not instead of them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from load import (
    BENCH,
    CEILING,
    CREDENTIAL,
    EXCHANGE,
    INDEX_CRATE,
    INTROSPECT,
    JWT_LIFETIME,
    REDIS_URL,
    REFERENCE_GET,
    Minter,
    exchanged,
    free_port,
    publish_index_crate,
    report_deleted,
    start_service,
    started,
    wait_for,
)

from trustpub.devissuer import serve_in_thread

CONCURRENCY = 32


@dataclass(frozen=True)
class Case:
    """POSTs of ``bodies`` in turn, or GETs when there are none."""

    url: str
    path: str
    bodies: Sequence[dict[str, str]] | None = None
    auth: str = ""
    header: tuple[str, str] | None = None
    expect: int = 200


async def drive(case: Case, count: int) -> None:
    """Exactly ``count`` requests of ``case``, all answered 2xx."""
    url, path, bodies = case.url, case.path, case.bodies
    todo = iter(range(count))
    headers = {"Authorization": case.auth} if case.auth else {}
    if case.header is not None:
        headers[case.header[0]] = case.header[1]
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as client:

        async def worker() -> None:
            for n in todo:
                if bodies is None:
                    response = await client.get(path, headers=headers)
                else:
                    body = bodies[n % len(bodies)]
                    response = await client.post(path, json=body, headers=headers)
                if response.status_code != case.expect and not (
                    case.expect == 200 and 200 <= response.status_code < 300
                ):
                    raise SystemExit(f"{path}: answered {response.status_code}")

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))


def total_instructions(dump_dir: Path, pid: int, before: set[Path]) -> int:
    """Instructions in the dump callgrind wrote last for ``pid``."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        new = set(dump_dir.glob(f"cg.{pid}*")) - before
        for path in new:
            # "totals:" is the dump's own count ("summary:" may read 0 in a partial dump).
            for line in path.read_text(errors="replace").splitlines():
                if line.startswith("totals:"):
                    return int(line.split()[1])
        time.sleep(0.2)
    raise SystemExit(f"callgrind wrote no dump for {pid}")


def counted(dump_dir: Path, pid: int, label: str, case: Case, count: int) -> float:
    """Instructions per request of ``count`` requests of ``case``."""
    control = ["callgrind_control"]
    subprocess.run([*control, "-z", str(pid)], check=True, capture_output=True)
    subprocess.run([*control, "-i", "on", str(pid)], check=True, capture_output=True)
    asyncio.run(drive(case, count))
    time.sleep(0.5)  # responses are all in; let the server finish its bookkeeping
    subprocess.run([*control, "-i", "off", str(pid)], check=True, capture_output=True)
    before = set(dump_dir.glob(f"cg.{pid}*"))
    subprocess.run([*control, "-d", label, str(pid)], check=True, capture_output=True)
    return total_instructions(dump_dir, pid, before) / count


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=300, help="requests counted per case")
    parser.add_argument("--warmup", type=int, default=100, help="uncounted requests first")
    parser.add_argument("--before", default=None, help="a copy of trustpub/ to compare with")
    parser.add_argument("--out", type=Path, default=BENCH / "results" / "instructions.json")
    args = parser.parse_args(argv)
    run_id = uuid.uuid4().hex[:12]
    results: dict[str, dict[str, float]] = {}
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="trustpub-cg-")))
        dumps = workdir / "dumps"
        dumps.mkdir()
        wrapper = [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            f"--callgrind-out-file={dumps}/cg.%p",
        ]
        issuer = stack.enter_context(serve_in_thread(provider="github", lifetime=JWT_LIFETIME))
        minter = Minter(issuer)
        stack.callback(minter.close)
        ref_port = free_port()
        reference = stack.enter_context(
            started(
                [*wrapper, sys.executable, str(BENCH / "ceiling.py"), "--port", str(ref_port)],
                workdir / "reference.log",
                workdir,
            )
        )
        trees = {"after": None} if args.before is None else {"before": args.before, "after": None}
        services = {}
        for name, tree in trees.items():
            prefix = f"bench-cg:{run_id}:{name}:"
            stack.callback(report_deleted, REDIS_URL, prefix)
            services[name] = start_service(
                stack, name, "redis", issuer, workdir, prefix=prefix, policies=10,
                configs=10, wrapper=wrapper, pythonpath=tree,
            )  # fmt: skip
        total = args.warmup + args.requests
        jwts = minter.mint(256 + total)
        pool, fresh = jwts[:256], jwts[256:]
        ref_url = f"http://127.0.0.1:{ref_port}"
        wait_for(f"{ref_url}{CEILING}", reference, workdir / "reference.log", post=True)
        for service in services.values():
            wait_for(f"{service.url}/healthz", service.process, service.log, post=False)
        tokens = exchanged({name: (s.url, pool) for name, s in services.items()})
        index_path = f"/index/{INDEX_CRATE[:2]}/{INDEX_CRATE[2:4]}/{INDEX_CRATE}"
        download = f"/api/v1/crates/{INDEX_CRATE}/1.0.0/download"
        etags = {}
        for name, service in services.items():
            publish_index_crate(service)
            etags[name] = httpx.get(f"{service.url}{index_path}").headers["etag"]

        jwt_bodies = [{"jwt": j} for j in pool]
        # label -> (pid, warm-up case, counted case)
        cases: dict[str, tuple[int, Case, Case]] = {
            "reference GET": (
                reference.pid,
                Case(ref_url, REFERENCE_GET),
                Case(ref_url, REFERENCE_GET),
            ),
            "reference POST": (
                reference.pid,
                Case(ref_url, CEILING, jwt_bodies),
                Case(ref_url, CEILING, jwt_bodies),
            ),
        }
        auth = f"Bearer {CREDENTIAL}"
        for name, service in services.items():
            pid = service.process.pid
            introspect = Case(service.url, INTROSPECT, [{"token": t} for t in tokens[name]], auth)
            cases[f"{name} introspect"] = (pid, introspect, introspect)
            # Fresh JWTs: the first `warmup` for the warm-up, the rest counted.
            cases[f"{name} exchange"] = (
                pid,
                Case(service.url, EXCHANGE, [{"jwt": j} for j in fresh[: args.warmup]]),
                Case(service.url, EXCHANGE, [{"jwt": j} for j in fresh[args.warmup :]]),
            )
            index = Case(service.url, index_path)
            cases[f"{name} index"] = (pid, index, index)
            revalidate = Case(
                service.url, index_path, header=("If-None-Match", etags[name]), expect=304
            )
            cases[f"{name} index-304"] = (pid, revalidate, revalidate)
            crate = Case(service.url, download)
            cases[f"{name} download"] = (pid, crate, crate)
        for label, (pid, warm, case) in cases.items():
            print(f"bench: {label}: warm-up", flush=True)
            asyncio.run(drive(warm, args.warmup))
            print(f"bench: {label}: counting {args.requests} requests", flush=True)
            per = counted(dumps, pid, label.replace(" ", "-"), case, args.requests)
            results[label] = {"instructions_per_request": round(per)}
            print(f"bench: {label}: {per:,.0f} instructions per request", flush=True)
    ref = {m: results[f"reference {m}"]["instructions_per_request"] for m in ("GET", "POST")}
    print(f"\n{'case':<24} {'instructions/request':>21} {'vs ref GET':>11} {'vs ref POST':>12}")
    for label, values in results.items():
        per = values["instructions_per_request"]
        values["reference_get_over_this"] = round(ref["GET"] / per, 3)
        values["reference_post_over_this"] = round(ref["POST"] / per, 3)
        print(f"{label:<24} {per:>21,.0f} {ref['GET'] / per:>11.0%} {ref['POST'] / per:>12.0%}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
