"""Load benchmark of issue 14: every hot path of trustpub against a fixed reference.

    bench/run [--quick] [--duration 10] [--warmup 3] [--connections 32] [--rounds 1]
              [--policies 100000] [--tokens 1000000] [--profile --py-spy PATH]

One run measures, side by side on one worker each, with ``wrk`` (a separate C process,
``bench/post.lua``):

- the **reference**: a trivial Starlette GET and POST route on uvicorn's default stack
  (h11, asyncio; ``bench/ceiling.py``), run at the start and at the end of each round
  (``--quick``: at the start only);
  every other figure is a ratio to the mean of the two: the exchange to the POST route,
  everything else (introspection included, as issue 14 asks) to the GET route;
- **exchange** (a fresh JWT each) and **introspection** (cycling over live tokens) on
  each token store: ``sqlite``, ``redis`` (127.0.0.1:6379, a prefix unique to the run)
  and ``postgresql`` (127.0.0.1:5432, tokens and registry data in a database created for
  the run and dropped after);
- the **scale** cases: ``redis-scale`` is a second Redis-backed service with 100,000
  file policies and 100,000 owner configs and 1,000,000 live tokens in its store (in
  Redis database 2, so the small case's keyspace in database 0 holds only its own
  1,000); its exchange and introspection are compared with ``redis``'s (10 policies,
  10 owner configs, 1,000 live tokens). Live tokens are 256 from real exchanges (the
  ones introspection cycles over) and copies of one of their records under other keys,
  made inside Redis. ``--quick`` uses a tenth of that scale;
- the **registry** read paths of the ``sqlite`` service (registry data in SQLite, crate
  files on local storage): an index file ``GET`` (one crate of 20 versions), its ``304``
  revalidation (``If-None-Match``), and a ``.crate`` download;
- the **static index**: the same index exported to a directory and served by nginx (one
  worker process), ``GET`` and ``304``.

JWTs are minted on both cores before any timing, once per round, and exchanged once on
each store (each store keeps its own used-JWT ids, so the same set is fresh on each).
CPU use of the server, Redis and wrk is sampled from /proc, so the table shows who was
saturated. ``--quick`` (2 s runs, no warm-up runs) finishes within 90 seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import datetime
import itertools
import json
import multiprocessing
import os
import platform
import shutil
import sqlite3
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
import psycopg
import redis
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from trustpub.devissuer import DevIssuer, serve_in_thread

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
LUA = BENCH / "post.lua"
AUDIENCE = "registry.bench"
EXCHANGE = "/api/v1/trusted_publishing/tokens"
INTROSPECT = "/api/v1/trusted_publishing/introspect"
CEILING = "/echo"
REFERENCE_GET = "/hello"
# Introspection needs a registry credential (16+ characters); this one lives for one run.
CREDENTIAL = f"bench-{uuid.uuid4().hex}"
REDIS_URL = "redis://127.0.0.1:6379/0"
# The scale case's store: its own Redis database, so the small case's keyspace stays small.
REDIS_SCALE_URL = "redis://127.0.0.1:6379/2"
ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
# JWTs are minted before the timed runs; an hour keeps the longest run inside exp.
JWT_LIFETIME = 3600
TICKS = os.sysconf("SC_CLK_TCK")
INDEX_CRATE = "bench-index"
INDEX_VERSIONS = 20
SMALL_POOL = 1000  # live tokens of the small Redis case
POOL = 256  # tokens from real exchanges, which introspection cycles over


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
    # Generous: a service with 100,000 policies parses them twice (supervisor and worker)
    # before it answers, which takes minutes on a loaded machine.
    deadline = time.monotonic() + 600
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


def policy_entry(issuer_url: str, index: int) -> str:
    """A GitHub policy for a repository no bench JWT names (the scale filler)."""
    return f"""
[[policy]]
name = "filler-{index}"
provider = "github"
issuer = "{issuer_url}"
crates = ["filler-{index}"]
repository = "org{index % 1000}/repo{index}"
repository_owner_id = "{100000 + index % 1000}"
workflow = "release.yml"
"""


def write_trustpub_config(
    home: Path,
    port: int,
    issuer: DevIssuer,
    prefix: str,
    *,
    store: str | None = None,
    registry_database: str | None = None,
    policies: int = 1,
) -> Path:
    """The service's configuration: ``policies`` policies (the bench's own and fillers),
    the Redis store under ``prefix`` unless ``store`` names another."""
    # BENCH_RATE_LIMIT=off measures the service without its rate limits.
    rate_limit = os.environ.get("BENCH_RATE_LIMIT", "1000000000/1s")
    policy_dir = home / "policies"
    policy_dir.mkdir(parents=True)
    (policy_dir / "bench.toml").write_text(
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
    per_file = 10_000
    for start in range(0, policies - 1, per_file):
        stop = min(policies - 1, start + per_file)
        text = "".join(policy_entry(issuer.url, i) for i in range(start, stop))
        (policy_dir / f"filler-{start // per_file:03d}.toml").write_text(text)
    store_url = store or f"{REDIS_URL}?prefix={prefix}&allow_volatile=1"
    registry = f'\n[registry]\ndatabase = "{registry_database}"\n' if registry_database else ""
    config = home / "trustpub.toml"
    config.write_text(
        f"""
listen = "127.0.0.1:{port}"
public_url = "http://127.0.0.1:{port}"
audience = "{AUDIENCE}"
policy_dir = "{policy_dir}"
store = "{store_url}"
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
{registry}"""
    )
    return config


def add_owner_configs(database: Path, issuer_url: str, count: int) -> None:
    """``count`` owner configs (trusted publishing set up per crate in the registry) for
    repositories no bench JWT names, written before the service starts."""
    from trustpub.registry.db import RegistryDB

    database.parent.mkdir(parents=True, exist_ok=True)
    db = RegistryDB(database)
    db.open()  # creates the schema
    user = db.add_user("bench-configs")
    db.close()
    now = int(time.time())
    rows = [
        (f"cfg-{i}", f"cfg-{i}", issuer_url, f"corg{i % 1000}", str(200000 + i % 1000),
         f"crepo{i}", user.id, now)
        for i in range(count)
    ]  # fmt: skip
    with contextlib.closing(sqlite3.connect(database)) as conn:
        conn.executemany(
            "INSERT INTO trustpub_configs (provider, crate_id, crate_name, canonical, issuer,"
            " repository_owner, owner_id, repository_name, workflow, created_by, created_at,"
            " expires_at) VALUES ('github', NULL, ?, ?, ?, ?, ?, ?, 'release.yml', ?, ?,"
            " 4102444800)",
            rows,
        )
        conn.commit()


@contextlib.contextmanager
def postgresql_database() -> Iterator[str]:
    """A database of its own for one run, dropped afterwards."""
    name = f"trustpub_bench_{uuid.uuid4().hex}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def registry_token(config: Path) -> str:
    """A registry API token that may publish, made with the CLI."""
    cli = [sys.executable, "-m", "trustpub", "registry", "--config", str(config)]
    subprocess.run([*cli, "user", "add", "bench"], check=True, capture_output=True)
    made = subprocess.run(
        [*cli, "token", "create", "--user", "bench", "--scope", "publish-new",
         "--scope", "publish-update"],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return made.stdout.strip()


def redis_pid() -> int:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        info = client.info("server")
    finally:
        client.close()
    return int(info["process_id"])


def delete_prefix(url: str, prefix: str) -> int:
    client = redis.Redis.from_url(url)
    deleted = 0
    try:
        batch: list[bytes] = []
        for key in client.scan_iter(match=f"{prefix}*", count=10_000):
            batch.append(key)
            if len(batch) >= 10_000:
                deleted += int(client.unlink(*batch))
                batch.clear()
        if batch:
            deleted += int(client.unlink(*batch))
    finally:
        client.close()
    return deleted


# Copies one real token record to keys ARGV[2]..ARGV[3] of the store's token layout,
# expiring with it: live tokens as far as the store can tell, made inside Redis.
_FILL = """
local record = redis.call('GET', KEYS[1])
local expires = redis.call('EXPIRETIME', KEYS[1])
for i = tonumber(ARGV[2]), tonumber(ARGV[3]) do
  redis.call('SET', ARGV[1] .. string.format('%064x', i), record, 'EXAT', expires)
end
return 1
"""


def report_deleted(url: str, prefix: str) -> None:
    print(f"bench: deleted {delete_prefix(url, prefix)} redis keys under {prefix}", flush=True)


def fill_tokens(url: str, prefix: str, count: int) -> None:
    """``count`` more live token records under ``prefix`` (copies of a real one)."""
    if count <= 0:
        return
    client = redis.Redis.from_url(url)
    try:
        template = next(client.scan_iter(match=f"{prefix}token:*", count=1000))
        script = client.register_script(_FILL)
        step = 50_000
        for start in range(0, count, step):
            stop = min(count, start + step) - 1
            script(keys=[template], args=[f"{prefix}token:", start, stop])
    finally:
        client.close()


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


@dataclass(frozen=True)
class Target:
    """What one scenario sends: ``POST`` of the bodies in a file, or one ``GET``."""

    url: str
    path: str
    bodies: Path | None = None
    auth: str = ""
    header: str = ""

    @property
    def method(self) -> str:
        return "GET" if self.bodies is None else "POST"


def run_wrk(
    scenario: str,
    target: Target,
    seconds: float,
    load: Load,
    workdir: Path,
    watched: dict[str, int],
) -> Run:
    out = workdir / f"wrk-{scenario}-{uuid.uuid4().hex[:8]}.json"
    env = dict(os.environ)
    env.update(
        BENCH_METHOD=target.method,
        BENCH_BODIES=str(target.bodies or ""),
        BENCH_PATH=target.path,
        BENCH_AUTH=target.auth,
        BENCH_HEADER=target.header,
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
        target.url,
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
    if run.scenario.startswith("exchange") and run.wrapped:
        raise SystemExit(f"{run.scenario}: ran out of unique JWTs; raise --jwt-margin")


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
    for module in ("uvicorn", "starlette", "jwt", "cryptography", "redis", "h11", "psycopg"):
        with contextlib.suppress(Exception):
            versions[module] = __import__(module).__version__
    for module in ("uvloop", "httptools"):
        versions[module] = "installed" if _importable(module) else "not installed"
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    nginx = subprocess.run(["nginx", "-v"], capture_output=True, text=True, check=False)
    client = redis.Redis.from_url(REDIS_URL)
    try:
        versions["redis-server"] = str(client.info("server")["redis_version"])
    finally:
        client.close()
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "load_average": os.getloadavg(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "wrk": (wrk.stdout or wrk.stderr).splitlines()[0] if (wrk.stdout or wrk.stderr) else "",
        "nginx": (nginx.stderr or nginx.stdout).strip(),
        "versions": versions,
    }


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


# Issue 14's goals: each scenario's share of its reference route's req/s.
GET, POST = "GET", "POST"
GOALS: dict[str, float] = {
    "exchange": 0.5,
    "introspect": 1.0,
    "index": 1.0,
    "index-304": 1.0,
    "download": 1.0,
    "static-index": 1.0,
    "static-304": 1.0,
}


@dataclass(frozen=True)
class Measured:
    backend: str
    scenario: str
    reference: str  # "GET" or "POST"; "" for the reference runs themselves
    round: int
    run: Run


def cpu_per_request(run: Run) -> float:
    """Server CPU microseconds per request: steadier than req/s on a shared machine."""
    return run.cpu_percent.get("server", 0.0) / 100 * run.seconds / max(run.requests, 1) * 1e6


def reference_rps(results: Sequence[Measured], round_no: int, method: str) -> float:
    runs = [
        m.run.rps for m in results if m.backend == "reference" and m.scenario == method
        and m.round == round_no
    ]  # fmt: skip
    return statistics.mean(runs) if runs else float("nan")


def table(results: Sequence[Measured]) -> str:
    head = (
        f"| {'backend':<11} | {'scenario':<12} | round | req/s | p50 ms | p99 ms | p99/p50 "
        f"| vs ref | goal | server CPU us/req | CPU % server / redis / wrk |"
    )
    lines = [head, "|" + "|".join("---" for _ in range(11)) + "|"]
    for m in results:
        run = m.run
        if m.reference:
            ratio = f"{run.rps / reference_rps(results, m.round, m.reference):.0%} {m.reference}"
            goal = f"{GOALS.get(m.scenario, float('nan')):.0%}"
        else:
            ratio, goal = "(reference)", ""
        spread = run.p99_ms / run.p50_ms if run.p50_ms else float("nan")
        cpu = run.cpu_percent
        lines.append(
            f"| {m.backend:<11} | {m.scenario:<12} | {m.round} | {run.rps:.0f} | "
            f"{run.p50_ms:.2f} | {run.p99_ms:.2f} | {spread:.1f} | {ratio} | {goal} | "
            f"{cpu_per_request(run):.0f} | "
            f"{cpu.get('server', 0):.0f} / {cpu.get('redis', 0):.0f} / "
            f"{cpu.get('wrk', 0):.0f} |"
        )
    return "\n".join(lines)


def summary(results: Sequence[Measured]) -> dict[str, Any]:
    """Medians over rounds: each scenario's ratio to its reference, and the scale ratios
    (cost with the large set / cost with the small, cost = 1 / req/s)."""
    ratios: dict[str, float] = {}
    spreads: dict[str, float] = {}
    rates: dict[str, float] = {}
    cpu: dict[str, float] = {}
    keys = sorted({(m.backend, m.scenario) for m in results})
    for backend, scenario in keys:
        runs = [m for m in results if (m.backend, m.scenario) == (backend, scenario)]
        name = f"{backend}/{scenario}"
        rates[name] = statistics.median(m.run.rps for m in runs)
        cpu[name] = round(statistics.median(cpu_per_request(m.run) for m in runs), 1)
        spreads[name] = round(statistics.median(m.run.p99_ms / m.run.p50_ms for m in runs), 2)
        if runs[0].reference:
            ratios[name] = round(
                statistics.median(
                    m.run.rps / reference_rps(results, m.round, m.reference) for m in runs
                ),
                3,
            )
    scale: dict[str, float] = {}
    for scenario in ("exchange", "introspect"):
        small, large = rates.get(f"redis/{scenario}"), rates.get(f"redis-scale/{scenario}")
        if small and large:
            scale[f"{scenario} (req/s)"] = round(small / large, 3)
        small, large = cpu.get(f"redis/{scenario}"), cpu.get(f"redis-scale/{scenario}")
        if small and large:
            scale[f"{scenario} (server CPU per request)"] = round(large / small, 3)
    return {
        "rps": rates,
        "vs_reference": ratios,
        "p99_over_p50": spreads,
        "server_cpu_us_per_request": cpu,
        "scale_cost": scale,
    }


# -- services -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Service:
    """One ``trustpub serve`` (1 worker) under test."""

    name: str
    url: str
    process: subprocess.Popen[bytes]
    home: Path
    config: Path
    log: Path


def start_service(
    stack: contextlib.ExitStack,
    name: str,
    store: str,
    issuer: DevIssuer,
    workdir: Path,
    *,
    prefix: str,
    policies: int,
    configs: int,
    redis_url: str = REDIS_URL,
    wrapper: Sequence[str] = (),
    pythonpath: str | None = None,
) -> Service:
    """Configure and start a service (``store``: sqlite, redis or postgresql) without
    waiting for it, so several start at once. ``wrapper`` runs it under another program
    (valgrind); ``pythonpath`` runs another copy of trustpub (a before/after pair)."""
    home = workdir / name
    home.mkdir()
    port = free_port()
    store_url: str | None
    registry_database = None
    if store == "sqlite":
        store_url = f"sqlite:///{home}/store.db"
    elif store == "redis":
        store_url = f"{redis_url}?prefix={prefix}&allow_volatile=1"
    else:
        store_url = registry_database = stack.enter_context(postgresql_database())
    config = write_trustpub_config(
        home,
        port,
        issuer,
        prefix,
        store=store_url,
        registry_database=registry_database,
        policies=policies,
    )
    if registry_database is None and configs:
        add_owner_configs(home / "data" / "registry" / "registry.db", issuer.url, configs)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRUSTPUB_")}
    if pythonpath is not None:
        env["PYTHONPATH"] = pythonpath
    log = home / "serve.log"
    argv = [*wrapper, sys.executable, "-m", "trustpub", "serve", "--config", str(config)]
    process = stack.enter_context(started(argv, log, home, env))
    return Service(name, f"http://127.0.0.1:{port}", process, home, config, log)


async def _exchanged(url: str, jwts: Sequence[str], concurrency: int = 8) -> list[str]:
    tokens: list[str] = []
    todo = iter(jwts)
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:

        async def worker() -> None:
            for token in todo:
                response = await client.post(EXCHANGE, json={"jwt": token})
                response.raise_for_status()
                tokens.append(response.json()["token"])

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return tokens


def exchanged(jobs: dict[str, tuple[str, Sequence[str]]]) -> dict[str, list[str]]:
    """Registry tokens from real exchanges: for each name, (service URL, JWTs)."""

    async def run() -> dict[str, list[str]]:
        done = await asyncio.gather(*(_exchanged(url, jwts) for url, jwts in jobs.values()))
        return dict(zip(jobs, done, strict=True))

    return asyncio.run(run())


def publish_index_crate(service: Service) -> None:
    """One crate of ``INDEX_VERSIONS`` versions, published through the API."""
    sys.path.insert(0, str(ROOT))
    from tests.registry.helpers import body_for

    api_token = registry_token(service.config)
    with httpx.Client(base_url=service.url, timeout=30) as client:
        for n in range(INDEX_VERSIONS):
            response = client.put(
                "/api/v1/crates/new",
                content=body_for(INDEX_CRATE, f"1.0.{n}"),
                headers={"Authorization": api_token},
            )
            response.raise_for_status()


def export_index(service: Service, directory: Path) -> str:
    """Write the registry's index to ``directory`` for nginx (``trustpub registry index
    export DIR``, as an operator would); says how it was made."""
    cli = [sys.executable, "-m", "trustpub", "registry", "--config", str(service.config)]
    subprocess.run([*cli, "index", "export", str(directory)], check=True, capture_output=True)
    return "trustpub registry index export"


NGINX_CONF = """
daemon off;
master_process off;
worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    default_type text/plain;
    keepalive_requests 1000000;
    client_body_temp_path {work}/nginx-body;
    proxy_temp_path {work}/nginx-proxy;
    fastcgi_temp_path {work}/nginx-fastcgi;
    uwsgi_temp_path {work}/nginx-uwsgi;
    scgi_temp_path {work}/nginx-scgi;
    server {{
        listen 127.0.0.1:{port};
        location /index/ {{ alias {root}/; }}
    }}
}}
"""


def start_nginx(stack: contextlib.ExitStack, root: Path, workdir: Path) -> tuple[str, int]:
    """nginx (one process) serving ``root`` under /index/; its URL and pid."""
    port = free_port()
    work = workdir / "nginx"
    work.mkdir()
    conf = work / "nginx.conf"
    conf.write_text(NGINX_CONF.format(work=work, port=port, root=root))
    log = work / "nginx.out"
    argv = ["nginx", "-p", str(work), "-e", str(work / "nginx-error.log"), "-c", str(conf)]
    process = stack.enter_context(started(argv, log, work))
    url = f"http://127.0.0.1:{port}"
    wait_for(f"{url}/index/config.json", process, log, post=False)
    return url, process.pid


# -- main ---------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="trustpub load benchmark (see bench/RESULTS.md)")
    parser.add_argument(
        "--quick", action="store_true", help="2 s runs, no warm-ups: within 90 seconds"
    )
    parser.add_argument("--duration", type=int, default=None, help="seconds per timed run")
    parser.add_argument("--warmup", type=int, default=None, help="seconds of warm-up")
    parser.add_argument("--connections", type=int, default=32, help="concurrent connections")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--rounds", type=int, default=1, help="repeat all scenarios")
    parser.add_argument(
        "--policies",
        type=int,
        default=None,
        help="policies and owner configs of the scale case (100,000; --quick: 10,000)",
    )
    parser.add_argument(
        "--tokens",
        type=int,
        default=None,
        help="live tokens in the scale case's store (1,000,000; --quick: 100,000)",
    )
    parser.add_argument(
        "--jwt-margin",
        type=float,
        default=0.8,
        help="JWTs minted per request/s of the reference POST and second",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also profile the redis exchange and introspection with py-spy (not in the table)",
    )
    parser.add_argument("--py-spy", default=None, help="py-spy executable (default: on PATH)")
    parser.add_argument(
        "--out", type=Path, default=BENCH / "results", help="directory for the JSON results"
    )
    args = parser.parse_args(argv)
    if args.duration is None:
        args.duration = 2.0 if args.quick else 10.0
    if args.warmup is None:
        args.warmup = 0 if args.quick else 3
    # --quick: a tenth of the scale, so that start-up (parsing the policies) fits.
    if args.policies is None:
        args.policies = 10_000 if args.quick else 100_000
    if args.tokens is None:
        args.tokens = 100_000 if args.quick else 1_000_000
    if args.duration < 1:
        parser.error("--duration: whole seconds, at least 1 (wrk's unit)")
    if args.warmup < 0:
        parser.error("--warmup: whole seconds (wrk's unit), 0 for none")
    return args


class Bench:
    """Runs scenarios and keeps their results."""

    def __init__(self, args: argparse.Namespace, workdir: Path, redis: int) -> None:
        self.args = args
        self.load = Load(args.connections, args.threads)
        self.workdir = workdir
        self.redis = redis
        self.results: list[Measured] = []

    def wrk(self, scenario: str, target: Target, seconds: float, server: int) -> Run:
        watched = {"server": server, "redis": self.redis}
        return run_wrk(scenario, target, seconds, self.load, self.workdir, watched)

    def measure(
        self,
        backend: str,
        scenario: str,
        reference: str,
        target: Target,
        server: int,
        round_no: int,
        warm: Target | None = None,
    ) -> Run:
        label = f"{backend}/{scenario}"
        print(f"bench: round {round_no}: {label}", flush=True)
        if self.args.warmup > 0:
            self.wrk(f"{label}-warmup".replace("/", "-"), warm or target, self.args.warmup, server)
        run = self.wrk(label.replace("/", "-"), target, self.args.duration, server)
        check_clean(run)
        self.results.append(Measured(backend, scenario, reference, round_no, run))
        return run


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started_at = time.monotonic()
    for tool in ("wrk", "nginx"):
        if shutil.which(tool) is None:
            print(
                f"bench: {tool} is missing; install it: apt-get install -y {tool}", file=sys.stderr
            )
            return 2
    py_spy = args.py_spy or shutil.which("py-spy")
    if args.profile and py_spy is None:
        print(
            "bench: --profile needs py-spy: python3 -m venv /tmp/pyspy && "
            "/tmp/pyspy/bin/pip install py-spy, then --py-spy /tmp/pyspy/bin/py-spy",
            file=sys.stderr,
        )
        return 2
    run_id = uuid.uuid4().hex[:12]
    prefixes = {
        "sqlite": f"bench:{run_id}:sqlite:",
        "redis": f"bench:{run_id}:redis:",
        "redis-scale": f"bench:{run_id}:scale:",
        "postgresql": f"bench:{run_id}:pg:",
    }
    profiles: dict[str, dict[str, Any]] = {}
    notes: dict[str, str] = {}
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="trustpub-bench-")))
        # Registered first, so it runs last: after every service has stopped.
        for url, prefix in (
            (REDIS_URL, prefixes["redis"]),
            (REDIS_SCALE_URL, prefixes["redis-scale"]),
        ):
            stack.callback(report_deleted, url, prefix)
        issuer = stack.enter_context(serve_in_thread(provider="github", lifetime=JWT_LIFETIME))
        minter = Minter(issuer)
        stack.callback(minter.close)

        ref_port = free_port()
        reference = stack.enter_context(
            started(
                [sys.executable, str(BENCH / "ceiling.py"), "--port", str(ref_port)],
                workdir / "reference.log",
                workdir,
            )
        )
        ref_url = f"http://127.0.0.1:{ref_port}"
        print("bench: starting the services ...", flush=True)
        services = {
            "sqlite": start_service(
                stack, "sqlite", "sqlite", issuer, workdir,
                prefix=prefixes["sqlite"], policies=10, configs=10,
            ),
            "redis": start_service(
                stack, "redis", "redis", issuer, workdir,
                prefix=prefixes["redis"], policies=10, configs=10,
            ),
            "redis-scale": start_service(
                stack, "redis-scale", "redis", issuer, workdir,
                prefix=prefixes["redis-scale"], policies=args.policies, configs=args.policies,
                redis_url=REDIS_SCALE_URL,
            ),
            "postgresql": start_service(
                stack, "postgresql", "postgresql", issuer, workdir,
                prefix=prefixes["postgresql"], policies=10, configs=0,
            ),
        }  # fmt: skip
        pool_jwts = minter.mint(POOL)
        wait_for(f"{ref_url}{CEILING}", reference, workdir / "reference.log", post=True)
        for service in services.values():
            wait_for(f"{service.url}/healthz", service.process, service.log, post=False)
        print(f"bench: services up after {time.monotonic() - started_at:.0f} s", flush=True)

        auth = f"Bearer {CREDENTIAL}"
        introspect: dict[str, Target] = {}
        pools = exchanged({name: (s.url, pool_jwts) for name, s in services.items()})
        for name, service in services.items():
            bodies = write_bodies(workdir / f"{name}-introspect.bodies", "token", pools[name])
            introspect[name] = Target(service.url, INTROSPECT, bodies, auth=auth)
        print(f"bench: token pools after {time.monotonic() - started_at:.0f} s", flush=True)
        # Live tokens: POOL from real exchanges, the rest copies of one of their records.
        fill_tokens(REDIS_URL, prefixes["redis"], SMALL_POOL - POOL)
        fill_tokens(REDIS_SCALE_URL, prefixes["redis-scale"], args.tokens - POOL)
        print(
            f"bench: {args.tokens} tokens after {time.monotonic() - started_at:.0f} s", flush=True
        )

        registry = services["sqlite"]
        publish_index_crate(registry)
        print(f"bench: index crate published after {time.monotonic() - started_at:.0f} s")
        index_path = f"/index/{INDEX_CRATE[:2]}/{INDEX_CRATE[2:4]}/{INDEX_CRATE}"
        etag = httpx.get(f"{registry.url}{index_path}").headers["etag"]
        static_root = workdir / "static-index"
        notes["static index files"] = export_index(registry, static_root)
        static_url, nginx_pid = start_nginx(stack, static_root, workdir)
        static_etag = httpx.get(f"{static_url}{index_path}").headers["etag"]
        print(f"bench: set up after {time.monotonic() - started_at:.0f} s", flush=True)

        ref_bodies = write_bodies(workdir / "reference.bodies", "jwt", pool_jwts[:POOL])
        ref_post = Target(ref_url, CEILING, ref_bodies)
        ref_get = Target(ref_url, REFERENCE_GET)
        bench = Bench(args, workdir, redis_pid())

        for round_no in range(1, args.rounds + 1):
            bench.measure("reference", GET, "", ref_get, reference.pid, round_no)
            posts = bench.measure("reference", POST, "", ref_post, reference.pid, round_no)
            # Each store keeps its own used JWT ids: one set serves every store once.
            warm_count = int(posts.rps * args.warmup * args.jwt_margin) + 100 * (args.warmup > 0)
            timed_count = int(posts.rps * args.duration * args.jwt_margin) + 200
            print(f"bench: round {round_no}: minting {warm_count + timed_count} JWTs", flush=True)
            jwts = minter.mint(warm_count + timed_count)
            warm_bodies = write_bodies(workdir / "warm.bodies", "jwt", jwts[:warm_count])
            timed_bodies = write_bodies(workdir / "exchange.bodies", "jwt", jwts[warm_count:])
            for name, service in services.items():
                pid = service.process.pid
                # Introspection first: in round 1 the store holds only the pool's tokens.
                # Issue 14 holds introspection to the trivial GET (the faster reference).
                bench.measure(name, "introspect", GET, introspect[name], pid, round_no)
                bench.measure(
                    name, "exchange", POST, Target(service.url, EXCHANGE, timed_bodies), pid,
                    round_no, warm=Target(service.url, EXCHANGE, warm_bodies),
                )  # fmt: skip
            pid = registry.process.pid
            revalidate = f"If-None-Match: {etag}"
            bench.measure("sqlite", "index", GET, Target(registry.url, index_path), pid, round_no)
            bench.measure(
                "sqlite", "index-304", GET, Target(registry.url, index_path, header=revalidate),
                pid, round_no,
            )  # fmt: skip
            download = f"/api/v1/crates/{INDEX_CRATE}/1.0.0/download"
            bench.measure("sqlite", "download", GET, Target(registry.url, download), pid, round_no)
            bench.measure(
                "nginx", "static-index", GET, Target(static_url, index_path), nginx_pid, round_no
            )
            bench.measure(
                "nginx", "static-304", GET,
                Target(static_url, index_path, header=f"If-None-Match: {static_etag}"),
                nginx_pid, round_no,
            )  # fmt: skip
            if not args.quick:  # the reference again: the ratios use the mean of both
                bench.measure("reference", GET, "", ref_get, reference.pid, round_no)
                bench.measure("reference", POST, "", ref_post, reference.pid, round_no)

        if args.profile:
            assert py_spy is not None
            profiles = profile_redis(bench, services["redis"], introspect["redis"], minter, py_spy)
        print(f"bench: measured after {time.monotonic() - started_at:.0f} s", flush=True)

    report = {
        "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": " ".join(["bench/run", *(argv if argv is not None else sys.argv[1:])]),
        "settings": {
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "connections": args.connections,
            "wrk_threads": args.threads,
            "rounds": args.rounds,
            "policies_and_configs_scale": args.policies,
            "tokens_scale": args.tokens,
            "reference": "bench/ceiling.py: Starlette on uvicorn, h11 + asyncio, 1 worker",
            "trustpub": "trustpub serve, 1 worker, its own stack (trustpub.server)",
        },
        "notes": notes,
        "machine": machine(),
        "runs": [asdict(m) for m in bench.results],
        "summary": summary(bench.results),
        "profiles": profiles,
        "wall_seconds": round(time.monotonic() - started_at, 1),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.json").write_text(json.dumps(report, indent=2) + "\n")
    print()
    print(table(bench.results))
    print()
    print(json.dumps(report["summary"], indent=2))
    for key, value in notes.items():
        print(f"{key}: {value}")
    for scenario, profile in profiles.items():
        print(f"\n{scenario} profile (py-spy samples of the server, innermost category):")
        for name, share in profile["categories_percent"].items():
            print(f"  {share:5.1f}%  {name}")
        print("  inclusive (a frame and all it calls):")
        for name, share in profile["inclusive_percent"].items():
            if share:
                print(f"  {share:5.1f}%  {name}")
    print(f"\nbench: {report['wall_seconds']} s in all; results: {args.out / 'latest.json'}")
    return 0


def profile_redis(
    bench: Bench, service: Service, introspect: Target, minter: Minter, py_spy: str
) -> dict[str, dict[str, Any]]:
    """py-spy samples of the redis service under exchange and introspection load."""
    args = bench.args
    out: dict[str, dict[str, Any]] = {}
    args.out.mkdir(parents=True, exist_ok=True)
    count = int(3000 * args.duration * args.jwt_margin) + 500
    bodies = write_bodies(bench.workdir / "profile.bodies", "jwt", minter.mint(count))
    jobs: dict[str, Target] = {
        "exchange": Target(service.url, EXCHANGE, bodies),
        "introspect": introspect,
    }
    for scenario, target in jobs.items():
        print(f"bench: profiling {scenario} with py-spy ...", flush=True)
        raw = args.out / f"{scenario}-profile.txt"

        def job(target: Target = target, scenario: str = scenario) -> Run:
            return bench.wrk(f"{scenario}-profiled", target, args.duration, service.process.pid)

        profiled, shares = profile_run(py_spy, service.process.pid, args.duration, job, raw)
        out[scenario] = shares | {"run": asdict(profiled)}
    return out


if __name__ == "__main__":
    sys.exit(main())
