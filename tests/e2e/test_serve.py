"""``trustpub serve`` as a real process: start-up, replay safety across processes, and
the store going away under a running service."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from tests.isolation import new_redis_prefix
from tests.live import free_port, run_service
from trustpub.devissuer import DevIssuer, serve_in_thread

pytestmark = pytest.mark.slow

AUDIENCE = "registry.example"
TOKENS = "/api/v1/trusted_publishing/tokens"


def policy_for(issuer: DevIssuer) -> str:
    return f"""
[[policy]]
name = "release"
provider = "github"
issuer = "{issuer.url}"
crates = ["octo-lib"]
repository = "octo-org/octo-lib"
repository_owner_id = "131804563"
workflow = "release.yml"
"""


@pytest.fixture
def issuer() -> Iterator[DevIssuer]:
    with serve_in_thread(provider="github") as running:
        yield running


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    prefix = new_redis_prefix()
    yield prefix
    client = redis.Redis(host="127.0.0.1", port=6379)
    keys = list(client.scan_iter(match=f"{prefix}*"))
    if keys:
        client.delete(*keys)
    client.close()


async def fire(urls: list[str], jwt: str, count: int) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=30) as client:
        return list(
            await asyncio.gather(
                *(
                    client.post(f"{urls[i % len(urls)]}{TOKENS}", json={"jwt": jwt})
                    for i in range(count)
                )
            )
        )


def test_two_processes_on_one_redis_issue_exactly_one_token_per_jwt(
    tmp_path: Path, issuer: DevIssuer, redis_prefix: str
) -> None:
    store = f"redis://127.0.0.1:6379/0?prefix={redis_prefix}&allow_volatile=1"
    common = {
        "issuers": [issuer.trustpub_issuer()],
        "policies": policy_for(issuer),
        "store_url": store,
        "extra_config": f'audience = "{AUDIENCE}"',
    }
    with (
        run_service(tmp_path, name="a", **common) as a,  # type: ignore[arg-type]
        run_service(tmp_path, name="b", **common) as b,  # type: ignore[arg-type]
    ):
        jwt = issuer.mint(AUDIENCE)
        responses = asyncio.run(fire([a.url, b.url], jwt, 50))
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [200] + [400] * 49
        refusals = {r.json()["errors"][0]["detail"] for r in responses if r.status_code == 400}
        assert refusals == {"JWT has already been used"}
        # Both processes served some of the requests, and a second JWT still works.
        fresh = httpx.post(f"{b.url}{TOKENS}", json={"jwt": issuer.mint(AUDIENCE)})
        assert fresh.status_code == 200


def start_redis(port: int, workdir: Path) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(host="127.0.0.1", port=port)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
    client.close()
    return process


def test_redis_going_away_gives_503_and_the_service_recovers(
    tmp_path: Path, issuer: DevIssuer
) -> None:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is needed for this test")
    port = free_port()
    server = start_redis(port, tmp_path)
    try:
        with run_service(
            tmp_path,
            issuers=[issuer.trustpub_issuer()],
            policies=policy_for(issuer),
            store_url=f"redis://127.0.0.1:{port}/0?allow_volatile=1",
            extra_config=f'audience = "{AUDIENCE}"',
        ) as svc:
            ok = httpx.post(f"{svc.url}{TOKENS}", json={"jwt": issuer.mint(AUDIENCE)})
            assert ok.status_code == 200
            server.terminate()
            server.wait(10)
            jwt = issuer.mint(AUDIENCE)
            down = httpx.post(f"{svc.url}{TOKENS}", json={"jwt": jwt}, timeout=30)
            assert down.status_code == 503
            assert down.json()["errors"][0]["detail"]
            assert jwt not in down.text
            ready = httpx.get(f"{svc.url}/readyz", timeout=30)
            assert ready.status_code == 503
            assert ready.json()["checks"]["store"] == "failed"
            server = start_redis(port, tmp_path)
            # Recovery: the same JWT, never recorded while the store was down, now works.
            again = httpx.post(f"{svc.url}{TOKENS}", json={"jwt": jwt}, timeout=30)
            assert again.status_code == 200, again.text
            assert httpx.get(f"{svc.url}/readyz", timeout=30).json()["checks"]["store"] == "ok"
    finally:
        server.terminate()
        server.wait(10)


def test_unwritable_sqlite_store_gives_503_and_the_service_recovers(
    tmp_path: Path, issuer: DevIssuer
) -> None:
    store_dir = tmp_path / "store"
    store_dir.mkdir()
    db = store_dir / "store.db"
    with run_service(
        tmp_path,
        issuers=[issuer.trustpub_issuer()],
        policies=policy_for(issuer),
        store_url=f"sqlite:///{db}",
        extra_config=f'audience = "{AUDIENCE}"',
    ) as svc:
        assert httpx.post(f"{svc.url}{TOKENS}", json={"jwt": issuer.mint(AUDIENCE)}).is_success
        # Root ignores file modes, so take the database away: the directory becomes a
        # file, and nothing can be created or opened there.
        moved = tmp_path / "moved"
        store_dir.rename(moved)
        store_dir.write_text("not a directory")
        jwt = issuer.mint(AUDIENCE)
        down = httpx.post(f"{svc.url}{TOKENS}", json={"jwt": jwt}, timeout=30)
        assert down.status_code == 503, down.text
        store_dir.unlink()
        moved.rename(store_dir)
        again = httpx.post(f"{svc.url}{TOKENS}", json={"jwt": jwt}, timeout=30)
        assert again.status_code == 200, again.text
        metrics = httpx.get(f"{svc.url}/metrics").text
        assert "trustpub_store_errors_total 1" in metrics
        assert 'trustpub_exchanges_total{outcome="refused",reason="StoreUnavailable"} 1' in metrics


def test_serve_refuses_a_bad_configuration_with_one_clear_message(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('listen = "nowhere"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRUSTPUB_")}
    result = subprocess.run(
        [sys.executable, "-m", "trustpub", "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"trustpub serve: error: cannot start: {config}: listen: expected HOST:PORT, got 'nowhere'"
    ]


def test_serve_refuses_broken_policies(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "bad.toml").write_text('[[policy]]\nname = "x"\nprovider = "github"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRUSTPUB_")}
    result = subprocess.run(
        [sys.executable, "-m", "trustpub", "serve", "--policy-dir", str(policies)],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "cannot start" in result.stderr
    assert "bad.toml" in result.stderr


def test_serve_with_no_configuration_runs_the_embedded_default(tmp_path: Path) -> None:
    (tmp_path / "policies").mkdir()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRUSTPUB_")}
    env["TRUSTPUB_LISTEN"] = f"127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "trustpub", "serve"],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        # The embedded store is a SQLite file under ./data, created on first use.
        response = httpx.post(
            f"http://127.0.0.1:{port}{TOKENS}",
            headers={"Authorization": "Bearer nonsense"},
            json={"jwt": "nonsense"},
        )
        assert response.status_code == 400
        assert response.json() == {"errors": [{"detail": "Failed to decode JWT"}]}
        assert (tmp_path / "data" / "trustpub.db").exists()
        # The banner names the store as configured (relative: three slashes).
        assert "0 policies from policies, store sqlite:///data/trustpub.db)" in log.read_text()
    finally:
        process.terminate()
        process.wait(10)


def test_sighup_reloads_policies(tmp_path: Path, issuer: DevIssuer) -> None:
    with run_service(
        tmp_path,
        issuers=[issuer.trustpub_issuer()],
        policies=policy_for(issuer),
        # No polling: only the signal may reload.
        extra_config=f'audience = "{AUDIENCE}"\npolicy_reload_interval = 0',
    ) as svc:
        jwt = issuer.mint(AUDIENCE, repository="octo-org/second")
        refused = httpx.post(f"{svc.url}{TOKENS}", json={"jwt": jwt})
        assert refused.status_code == 400
        policy_dir = svc.config.parent / "policies"
        (policy_dir / "second.toml").write_text(
            policy_for(issuer).replace("octo-org/octo-lib", "octo-org/second")
        )
        svc.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while True:
            metrics = httpx.get(f"{svc.url}/metrics").text
            if 'trustpub_policy_reloads_total{result="ok"} 1' in metrics:
                break
            assert time.monotonic() < deadline, "SIGHUP did not reload the policies"
            time.sleep(0.05)
        assert "trustpub_policies 2" in metrics
        assert httpx.post(f"{svc.url}{TOKENS}", json={"jwt": jwt}).status_code == 200


def test_several_workers_on_the_embedded_store_issue_one_token_per_jwt(
    tmp_path: Path, issuer: DevIssuer
) -> None:
    with run_service(
        tmp_path,
        issuers=[issuer.trustpub_issuer()],
        policies=policy_for(issuer),
        extra_config=f'audience = "{AUDIENCE}"',
        args=["--workers", "2"],
    ) as svc:
        for _ in range(3):
            jwt = issuer.mint(AUDIENCE)
            responses = asyncio.run(fire([svc.url], jwt, 30))
            assert sorted(r.status_code for r in responses) == [200] + [400] * 29
