"""Load benchmark: trustpub's exchange and introspection against a Starlette ceiling.

    bench/run [--duration 10] [--warmup 3] [--connections 32] [--rounds 1] [--profile]

Starts everything itself on loopback: the dev issuer (a thread of this process, idle
while timing: the service fetches its keys once), ``trustpub serve`` with the Redis store
under a prefix unique to the run (deleted afterwards), and ``bench/ceiling.py``. The
load comes from ``wrk`` (a separate C process, see ``bench/post.lua``), which sends
request bodies built here before any timing: unique JWTs for the exchange, tokens from
real exchanges for introspection. Each scenario gets a warm-up, then a timed run with
the same duration, connections and wrk threads. CPU use of every process is sampled
from /proc so the table shows who was saturated.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import datetime
import itertools
import json
import multiprocessing
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
import redis
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from trustpub.devissuer import DevIssuer, serve_in_thread

BENCH = Path(__file__).resolve().parent
LUA = BENCH / "post.lua"
AUDIENCE = "registry.bench"
EXCHANGE = "/api/v1/trusted_publishing/tokens"
INTROSPECT = "/api/v1/trusted_publishing/introspect"
CEILING = "/echo"
# Introspection needs a registry credential (16+ characters); this one lives for one run.
CREDENTIAL = f"bench-{uuid.uuid4().hex}"
REDIS_URL = "redis://127.0.0.1:6379/0"
# JWTs are minted before the timed runs; an hour keeps the longest run inside exp.
JWT_LIFETIME = 3600
TICKS = os.sysconf("SC_CLK_TCK")


# -- processes ----------------------------------------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` (all its threads) from /proc."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def wait_for(url: str, process: subprocess.Popen[bytes], log: Path, *, post: bool) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{process.args!r} exited:\n{log.read_text(errors='replace')}")
        with contextlib.suppress(httpx.HTTPError):
            response = (
                httpx.post(url, json={"jwt": "x"}, timeout=1) if post else httpx.get(url, timeout=1)
            )
            if response.status_code == 200:
                return
        time.sleep(0.05)
    raise SystemExit(f"{url} did not come up:\n{log.read_text(errors='replace')}")


@contextlib.contextmanager
def started(
    argv: Sequence[str], log: Path, cwd: Path, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, env=env)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def write_trustpub_config(home: Path, port: int, issuer: DevIssuer, prefix: str) -> Path:
    # BENCH_RATE_LIMIT=off measures the service without its rate limits.
    rate_limit = os.environ.get("BENCH_RATE_LIMIT", "1000000000/1s")
    policies = home / "policies"
    policies.mkdir()
    (policies / "bench.toml").write_text(
        f"""
[[policy]]
name = "release"
provider = "github"
issuer = "{issuer.url}"
crates = ["octo-lib"]
repository = "octo-org/octo-lib"
repository_owner_id = "131804563"
workflow = "release.yml"
"""
    )
    config = home / "trustpub.toml"
    config.write_text(
        f"""
listen = "127.0.0.1:{port}"
public_url = "http://127.0.0.1:{port}"
audience = "{AUDIENCE}"
policy_dir = "{policies}"
store = "{REDIS_URL}?prefix={prefix}&allow_volatile=1"
data_dir = "{home / "data"}"
introspection_credentials = ["{CREDENTIAL}"]

[[issuers]]
url = "{issuer.url}"
provider = "github"
development = true

# One client and one repository send every request: limits too high to bite, so their
# cost is measured, not their refusals.
[rate_limits]
exchange_per_client = "{rate_limit}"
exchange_per_repository = "{rate_limit}"
failed_auth_per_client = "{rate_limit}"
"""
    )
    return config


def redis_pid() -> int:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        info = client.info("server")
    finally:
        client.close()
    return int(info["process_id"])


def delete_prefix(prefix: str) -> int:
    client = redis.Redis.from_url(REDIS_URL)
    deleted = 0
    try:
        batch: list[bytes] = []
        for key in client.scan_iter(match=f"{prefix}*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                deleted += int(client.delete(*batch))
                batch.clear()
        if batch:
            deleted += int(client.delete(*batch))
    finally:
        client.close()
    return deleted


# -- request bodies ----------------------------------------------------------------------

_signing_key: rsa.RSAPrivateKey | None = None
_signing_kid = ""


def _init_signer(pem: bytes, kid: str) -> None:
    global _signing_key, _signing_kid
    key = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    _signing_key, _signing_kid = key, kid


def _sign_batch(claim_sets: list[dict[str, Any]]) -> list[str]:
    assert _signing_key is not None
    headers = {"kid": _signing_kid, "typ": "JWT"}
    return [jwt.encode(c, _signing_key, algorithm="RS256", headers=headers) for c in claim_sets]


class Minter:
    """Signs JWTs of the dev issuer on every core (RSA signing is the slow part)."""

    def __init__(self, issuer: DevIssuer) -> None:
        self._issuer = issuer
        pem = issuer.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        self._pool = concurrent.futures.ProcessPoolExecutor(
            max_workers=os.cpu_count() or 1,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_signer,
            initargs=(pem, issuer.kid),
        )

    def mint(self, count: int) -> list[str]:
        # claims() gives each JWT a fresh jti: every one can be exchanged exactly once.
        claim_sets = [self._issuer.claims(AUDIENCE) for _ in range(count)]
        chunks = [claim_sets[i : i + 250] for i in range(0, count, 250)]
        return [token for batch in self._pool.map(_sign_batch, chunks) for token in batch]

    def close(self) -> None:
        self._pool.shutdown()


def write_bodies(path: Path, field_name: str, values: Sequence[str]) -> Path:
    path.write_text("".join(json.dumps({field_name: v}) + "\n" for v in values))
    return path


# -- running wrk --------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    scenario: str
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: dict[str, int]
    wrapped: int
    cpu_percent: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Load:
    connections: int
    threads: int


def run_wrk(
    scenario: str,
    url: str,
    path: str,
    bodies: Path,
    seconds: float,
    load: Load,
    workdir: Path,
    watched: dict[str, int],
    auth: str = "",
) -> Run:
    out = workdir / f"wrk-{scenario}-{uuid.uuid4().hex[:8]}.json"
    env = dict(os.environ)
    env.update(
        BENCH_BODIES=str(bodies),
        BENCH_PATH=path,
        BENCH_AUTH=auth,
        BENCH_THREADS=str(load.threads),
        BENCH_OUT=str(out),
    )
    argv = [
        "wrk",
        f"-t{load.threads}",
        f"-c{load.connections}",
        f"-d{seconds:g}s",
        "--timeout",
        "10s",
        "-s",
        str(LUA),
        url,
    ]
    before = {name: cpu_seconds(pid) for name, pid in watched.items()}
    wall = time.monotonic()
    with (workdir / f"wrk-{scenario}.log").open("ab") as log:
        process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
        # wait4 reaps wrk and reports its own CPU use: the proof it was not the bottleneck.
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - wall
    if process.returncode != 0:
        raise SystemExit(f"wrk failed ({process.returncode}); see {workdir}/wrk-{scenario}.log")
    cpu = {
        name: round(100 * (cpu_seconds(pid) - before[name]) / wall, 1)
        for name, pid in watched.items()
    }
    cpu["wrk"] = round(100 * (usage.ru_utime + usage.ru_stime) / wall, 1)
    data = json.loads(out.read_text())
    duration = data["duration_us"] / 1e6
    latency = data["latency_us"]
    return Run(
        scenario=scenario,
        requests=data["requests"],
        seconds=round(duration, 3),
        rps=round(data["requests"] / duration, 1),
        p50_ms=latency["p50"] / 1000,
        p90_ms=latency["p90"] / 1000,
        p99_ms=latency["p99"] / 1000,
        max_ms=latency["max"] / 1000,
        errors=data["errors"],
        wrapped=data["wrapped"],
        cpu_percent=cpu,
    )


def check_clean(run: Run) -> None:
    errors = {k: v for k, v in run.errors.items() if v}
    if errors:
        raise SystemExit(f"{run.scenario}: wrk saw errors {errors}; the run is not valid")
    if run.scenario == "exchange" and run.wrapped:
        raise SystemExit("exchange: ran out of unique JWTs; raise --jwt-margin")


# -- profiling ----------------------------------------------------------------------------

# A sample goes to the first category matched walking from the innermost frame out.
CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    ("RSA verify + key ops (cryptography)", ("cryptography/",)),
    ("JSON encode/decode", ("json/",)),
    ("logging (audit + access log)", ("logging/", "trustpub/logs.py")),
    ("redis-py client", ("redis/",)),
    ("pyjwt (split, base64, checks)", ("jwt/",)),
    ("HTTP parsing (h11)", ("h11/",)),
    ("uvicorn protocol", ("uvicorn/",)),
    ("Starlette routing/requests/responses", ("starlette/",)),
    ("anyio", ("anyio/",)),
    ("asyncio event loop + sockets", ("asyncio/", "selectors.py", "socket.py")),
    ("trustpub code", ("trustpub/",)),
]
# Inclusive share of these frames (the time spent in them and everything they call).
INCLUSIVE = [
    ("trustpub.api.tokens.exchange_jwt (whole handler)", "exchange_jwt (trustpub/api/tokens.py"),
    ("Verifier.verify", "verify (trustpub/oidc/verify.py"),
    ("  jws.parse (split, base64, JSON)", "parse (trustpub/oidc/jws.py"),
    ("  RSA signature check", "verify_rs256 (trustpub/oidc/jws.py"),
    ("match (policies)", "match (trustpub/providers/matching.py"),
    ("TokenService.mint", "mint (trustpub/tokens/service.py"),
    ("  TokenFormat.generate", "generate (trustpub/tokens/format.py"),
    ("  RedisStore.issue (round trip)", "issue (trustpub/store/redis.py"),
    ("audit()", "audit (trustpub/logs.py"),
    ("access log line", "AccessLog.__call__ (trustpub/api/access.py>log_fields (trustpub/logs.py"),
    ("log_fields (access + audit lines)", "log_fields (trustpub/logs.py"),
    ("Logger._log (other log calls)", "_log (logging/__init__.py"),
    ("read_json_object", "read_json_object (trustpub/web/bodies.py"),
    ("JSON response render", "render (trustpub/web/responses.py"),
    (
        "trustpub.api.introspect.introspect (whole handler)",
        "introspect (trustpub/api/introspect.py",
    ),
    ("  _authenticate", "_authenticate (trustpub/api/introspect.py"),
    ("  TokenService.introspect", "introspect (trustpub/tokens/service.py"),
    ("    TokenFormat.is_well_formed", "is_well_formed (trustpub/tokens/format.py"),
    ("    RedisStore.lookup (round trip)", "lookup (trustpub/store/redis.py"),
    ("    TokenRecord.from_json", "from_json (trustpub/tokens/record.py"),
    ("metrics", "trustpub/metrics.py"),
]


def _has_frame(frames: Sequence[str], key: str) -> bool:
    """Whether a frame contains ``key``; ``"A>B"`` means a frame B called by a frame A."""
    if ">" not in key:
        return any(key in frame for frame in frames)
    caller, callee = key.split(">", 1)
    return any(caller in a and callee in b for a, b in itertools.pairwise(frames))


def summarise_profile(raw: Path) -> dict[str, Any]:
    """Categories and inclusive shares of the event-loop thread, from py-spy raw stacks."""
    stacks: list[tuple[list[str], int]] = []
    for line in raw.read_text().splitlines():
        joined, _, count = line.rpartition(" ")
        if joined and count.isdigit():
            stacks.append((joined.split(";"), int(count)))
    # Only the event-loop thread serves requests; other threads (an idle anyio worker
    # waiting on its queue) would read as busy time.
    if any(frames[0].startswith("_run_module_as_main") for frames, _ in stacks):
        stacks = [(f, n) for f, n in stacks if f[0].startswith("_run_module_as_main")]
    total = sum(n for _, n in stacks) or 1
    categories: dict[str, int] = {}
    leaves: dict[str, int] = {}
    for frames, n in stacks:
        category = "other (interpreter, stdlib)"
        for frame in reversed(frames):
            hit = next((name for name, keys in CATEGORIES if any(k in frame for k in keys)), None)
            if hit is not None:
                category = hit
                break
        categories[category] = categories.get(category, 0) + n
        leaf = frames[-1].split(":")[0] + ")" if "(" in frames[-1] else frames[-1]
        leaves[leaf] = leaves.get(leaf, 0) + n
    inclusive = {
        label: round(100 * sum(n for f, n in stacks if _has_frame(f, key)) / total, 1)
        for label, key in INCLUSIVE
    }
    return {
        "samples": total,
        "categories_percent": {
            k: round(100 * v / total, 1)
            for k, v in sorted(categories.items(), key=lambda kv: -kv[1])
        },
        "inclusive_percent": inclusive,
        "top_self_percent": {
            k: round(100 * v / total, 1)
            for k, v in sorted(leaves.items(), key=lambda kv: -kv[1])[:15]
        },
    }


def profile_run(
    py_spy: str, server_pid: int, seconds: float, run_wrk_now: Callable[[], Run], raw: Path
) -> tuple[Run, dict[str, Any]]:
    """One wrk run with py-spy sampling the server (blocking mode: whole stacks)."""
    argv = [py_spy, "record", "-p", str(server_pid), "-d", f"{seconds + 2:g}", "-r", "250"]
    argv += ["-f", "raw", "-o", str(raw)]
    spy = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(1)
    run = run_wrk_now()
    _, err = spy.communicate(timeout=seconds + 60)
    if spy.returncode != 0 or not raw.exists():
        raise SystemExit(f"py-spy failed: {err.decode(errors='replace')}")
    return run, summarise_profile(raw)


# -- report -------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    versions: dict[str, str] = {}
    for module in ("uvicorn", "starlette", "jwt", "cryptography", "redis", "h11"):
        with contextlib.suppress(Exception):
            versions[module] = __import__(module).__version__
    for module in ("uvloop", "httptools"):
        versions[module] = "installed" if _importable(module) else "not installed"
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    client = redis.Redis.from_url(REDIS_URL)
    try:
        versions["redis-server"] = str(client.info("server")["redis_version"])
    finally:
        client.close()
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "wrk": (wrk.stdout or wrk.stderr).splitlines()[0] if (wrk.stdout or wrk.stderr) else "",
        "versions": versions,
    }


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def table(runs: Sequence[Run], ceilings: dict[int, float], rounds: dict[int, int]) -> str:
    head = (
        f"{'scenario':<12} {'round':>5} {'requests':>9} {'req/s':>8} {'p50 ms':>8} "
        f"{'p99 ms':>8} {'vs ceiling':>10}  cpu% (server / redis / wrk)"
    )
    lines = [head, "-" * len(head)]
    for i, run in enumerate(runs):
        r = rounds[i]
        ratio = run.rps / ceilings[r] if ceilings.get(r) else float("nan")
        server = run.cpu_percent.get("ceiling" if run.scenario == "ceiling" else "trustpub", 0.0)
        lines.append(
            f"{run.scenario:<12} {r:>5} {run.requests:>9} {run.rps:>8.0f} {run.p50_ms:>8.2f} "
            f"{run.p99_ms:>8.2f} {ratio:>9.0%}   {server:.0f} / "
            f"{run.cpu_percent.get('redis', 0.0):.0f} / {run.cpu_percent.get('wrk', 0.0):.0f}"
        )
    return "\n".join(lines)


# -- main ---------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="trustpub load benchmark (see bench/RESULTS.md)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per timed run")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of warm-up")
    parser.add_argument("--connections", type=int, default=32, help="concurrent connections")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--rounds", type=int, default=1, help="repeat all scenarios")
    parser.add_argument(
        "--jwt-margin", type=float, default=1.5, help="JWTs minted per expected exchange"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also profile one exchange run with py-spy (not part of the table)",
    )
    parser.add_argument("--py-spy", default=None, help="py-spy executable (default: on PATH)")
    parser.add_argument(
        "--out", type=Path, default=BENCH / "results", help="directory for the JSON results"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        print("bench: wrk is missing; install it with: apt-get install -y wrk", file=sys.stderr)
        return 2
    py_spy = args.py_spy or shutil.which("py-spy")
    if args.profile and py_spy is None:
        print(
            "bench: --profile needs py-spy: python3 -m venv /tmp/pyspy && "
            "/tmp/pyspy/bin/pip install py-spy, then --py-spy /tmp/pyspy/bin/py-spy",
            file=sys.stderr,
        )
        return 2
    load = Load(args.connections, args.threads)
    prefix = f"bench:{uuid.uuid4().hex[:12]}:"
    runs: list[Run] = []
    run_rounds: dict[int, int] = {}
    ceilings: dict[int, float] = {}
    profiles: dict[str, dict[str, Any]] = {}
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="trustpub-bench-")))
        stack.callback(lambda: print(f"bench: deleted {delete_prefix(prefix)} redis keys"))
        issuer = stack.enter_context(serve_in_thread(provider="github", lifetime=JWT_LIFETIME))
        minter = Minter(issuer)
        stack.callback(minter.close)

        tp_port, ceiling_port = free_port(), free_port()
        config = write_trustpub_config(workdir, tp_port, issuer, prefix)
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRUSTPUB_")}
        trustpub = stack.enter_context(
            started(
                [sys.executable, "-m", "trustpub", "serve", "--config", str(config)],
                workdir / "trustpub.log",
                workdir,
                env,
            )
        )
        ceiling = stack.enter_context(
            started(
                [sys.executable, str(BENCH / "ceiling.py"), "--port", str(ceiling_port)],
                workdir / "ceiling.log",
                workdir,
            )
        )
        tp_url = f"http://127.0.0.1:{tp_port}"
        ceiling_url = f"http://127.0.0.1:{ceiling_port}"
        wait_for(f"{tp_url}/healthz", trustpub, workdir / "trustpub.log", post=False)
        wait_for(f"{ceiling_url}{CEILING}", ceiling, workdir / "ceiling.log", post=True)
        watched = {"trustpub": trustpub.pid, "ceiling": ceiling.pid, "redis": redis_pid()}

        # Tokens for introspection come from real exchanges (which also loads the keys).
        print("bench: minting JWTs and exchanging a token pool ...", flush=True)
        pool_jwts = minter.mint(256)
        tokens: list[str] = []
        with httpx.Client(base_url=tp_url, timeout=10) as client:
            for token in pool_jwts:
                response = client.post(EXCHANGE, json={"jwt": token})
                response.raise_for_status()
                tokens.append(response.json()["token"])
        ceiling_bodies = write_bodies(workdir / "ceiling.bodies", "jwt", pool_jwts)
        introspect_bodies = write_bodies(workdir / "introspect.bodies", "token", tokens)
        auth = f"Bearer {CREDENTIAL}"

        def wrk(scenario: str, url: str, path: str, bodies: Path, seconds: float, **kw: Any) -> Run:
            return run_wrk(scenario, url, path, bodies, seconds, load, workdir, watched, **kw)

        for round_no in range(1, args.rounds + 1):
            print(f"bench: round {round_no}: ceiling", flush=True)
            wrk("ceiling", ceiling_url, CEILING, ceiling_bodies, args.warmup)
            ceiling_run = wrk("ceiling", ceiling_url, CEILING, ceiling_bodies, args.duration)
            check_clean(ceiling_run)

            # Warm-up JWTs: the ceiling bounds any exchange rate; half of it is plenty.
            print(f"bench: round {round_no}: exchange (minting JWTs first)", flush=True)
            warm_count = max(200, int(ceiling_run.rps * args.warmup * 0.5))
            warm = write_bodies(workdir / "warm.bodies", "jwt", minter.mint(warm_count))
            warm_run = wrk("exchange-warmup", tp_url, EXCHANGE, warm, args.warmup)
            expected = max(warm_run.rps, 50.0) * args.duration * args.jwt_margin + 500
            timed = write_bodies(workdir / "exchange.bodies", "jwt", minter.mint(int(expected)))
            exchange_run = wrk("exchange", tp_url, EXCHANGE, timed, args.duration)
            check_clean(exchange_run)

            print(f"bench: round {round_no}: introspect", flush=True)
            wrk("introspect", tp_url, INTROSPECT, introspect_bodies, args.warmup, auth=auth)
            introspect_run = wrk(
                "introspect", tp_url, INTROSPECT, introspect_bodies, args.duration, auth=auth
            )
            check_clean(introspect_run)

            for run in (ceiling_run, exchange_run, introspect_run):
                run_rounds[len(runs)] = round_no
                runs.append(run)
            ceilings[round_no] = ceiling_run.rps

        if args.profile:
            assert py_spy is not None
            args.out.mkdir(parents=True, exist_ok=True)
            expected = max(exchange_run.rps, 50.0) * args.duration * args.jwt_margin + 500
            bodies = write_bodies(workdir / "profile.bodies", "jwt", minter.mint(int(expected)))
            jobs: dict[str, Callable[[], Run]] = {
                "exchange": lambda: wrk(
                    "exchange-profiled", tp_url, EXCHANGE, bodies, args.duration
                ),
                "introspect": lambda: wrk(
                    "introspect-profiled",
                    tp_url,
                    INTROSPECT,
                    introspect_bodies,
                    args.duration,
                    auth=auth,
                ),
            }
            for scenario, job in jobs.items():
                print(f"bench: profiling {scenario} with py-spy ...", flush=True)
                raw = args.out / f"{scenario}-profile.txt"
                profiled, shares = profile_run(py_spy, trustpub.pid, args.duration, job, raw)
                profiles[scenario] = shares | {"run": asdict(profiled)}

    report = {
        "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": " ".join(["bench/run", *(argv if argv is not None else sys.argv[1:])]),
        "settings": {
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "connections": args.connections,
            "wrk_threads": args.threads,
            "rounds": args.rounds,
            "server": "uvicorn, 1 worker, loop/http auto, no access log (both servers)",
            "store": "redis (127.0.0.1:6379), prefix unique to the run",
        },
        "machine": machine(),
        "runs": [asdict(r) | {"round": run_rounds[i]} for i, r in enumerate(runs)],
        "summary": _summary(runs),
        "profiles": profiles,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.json").write_text(json.dumps(report, indent=2) + "\n")
    print()
    print(table(runs, ceilings, run_rounds))
    ratios = _summary(runs)
    print(
        f"\nexchange {ratios['exchange_ratio']:.0%} of ceiling (goal 40%), "
        f"introspection {ratios['introspect_ratio']:.0%} (goal 60%); "
        f"medians over {args.rounds} round(s). Results: {args.out / 'latest.json'}"
    )
    for scenario, profile in profiles.items():
        print(f"\n{scenario} profile (py-spy samples of the server, innermost category):")
        for name, share in profile["categories_percent"].items():
            print(f"  {share:5.1f}%  {name}")
        print("  inclusive (a frame and all it calls):")
        for name, share in profile["inclusive_percent"].items():
            if share:
                print(f"  {share:5.1f}%  {name}")
    return 0


def _summary(runs: Sequence[Run]) -> dict[str, float]:
    def median_rps(name: str) -> float:
        return statistics.median(r.rps for r in runs if r.scenario == name)

    ceiling = median_rps("ceiling")
    return {
        "ceiling_rps": ceiling,
        "exchange_rps": median_rps("exchange"),
        "introspect_rps": median_rps("introspect"),
        "exchange_ratio": round(median_rps("exchange") / ceiling, 3),
        "introspect_ratio": round(median_rps("introspect") / ceiling, 3),
    }


if __name__ == "__main__":
    sys.exit(main())
