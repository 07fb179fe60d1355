"""``trustpub serve``'s processes, with 2 real workers: policies reloaded in place,
the last good set surviving a broken file and a restart, workers dying with their
supervisor, and an exit status for every failure."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_connections import PATIENCE, connect, get_raw, log_entries, wait_for_line
from tests.e2e.test_serve import AUDIENCE, policy_for
from tests.live import LiveService, free_port, run_service
from trustpub.devissuer import DevIssuer, serve_in_thread

pytestmark = pytest.mark.slow

TOKENS = "/api/v1/trusted_publishing/tokens"
TWO_WORKERS = f'audience = "{AUDIENCE}"\npolicy_reload_interval = 0\n[server]\nworkers = 2\n'


@pytest.fixture
def issuer() -> Iterator[DevIssuer]:
    with serve_in_thread(provider="github") as running:
        yield running


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("TRUSTPUB_")}


def worker_pids(svc: LiveService) -> list[int]:
    """The pids of the workers the supervisor started, oldest first."""
    return [int(e["pid"]) for e in log_entries(svc) if e.get("msg") == "worker started"]  # type: ignore[call-overload]


def exchanges_until_each_worker_served(
    svc: LiveService, pids: set[int], mint: Callable[[], str]
) -> None:
    """Exchange fresh JWTs, one connection each, until every worker in ``pids`` has
    answered one; every answer must be a token."""
    served: set[int] = set()
    deadline = time.monotonic() + PATIENCE
    while not pids <= served:
        assert time.monotonic() < deadline, f"workers {pids - served} never answered"
        response = httpx.post(f"{svc.url}{TOKENS}", json={"jwt": mint()}, timeout=PATIENCE)
        assert response.status_code == 200, response.text
        rid = response.headers["x-request-id"]
        lines = [e for e in log_entries(svc) if e.get("request_id") == rid and "pid" in e]
        served.update(int(e["pid"]) for e in lines)  # type: ignore[call-overload]


def test_sighup_reloads_every_worker_in_place_during_a_key_server_outage(
    tmp_path: Path,
) -> None:
    running = serve_in_thread(provider="github")
    issuer = running.__enter__()
    try:
        with run_service(
            tmp_path,
            issuers=[issuer.trustpub_issuer()],
            policies=policy_for(issuer),
            extra_config=TWO_WORKERS,
        ) as svc:
            wait_for_line(svc, "worker ready", 2)
            pids = set(worker_pids(svc))
            # Both workers hold the issuer's keys...
            exchanges_until_each_worker_served(svc, pids, lambda: issuer.mint(AUDIENCE))
            kept = connect(svc)
            assert b" 200 " in get_raw(kept).split(b"\r\n")[0]
            # ...then the key server goes away, a new policy arrives, and SIGHUP.
            running.__exit__(None, None, None)
            (svc.config.parent / "policies" / "second.toml").write_text(
                policy_for(issuer).replace("octo-org/octo-lib", "octo-org/second")
            )
            svc.process.send_signal(signal.SIGHUP)
            wait_for_line(svc, "policies loaded", 2)
            # Same workers, same connection, keys still cached: the new policy is served.
            exchanges_until_each_worker_served(
                svc, pids, lambda: issuer.mint(AUDIENCE, repository="octo-org/second")
            )
            assert b" 200 " in get_raw(kept).split(b"\r\n")[0]
            kept.close()
            assert set(worker_pids(svc)) == pids
    finally:
        running.__exit__(None, None, None)


def test_a_worker_restarted_while_a_policy_file_is_broken_serves_the_last_good_set(
    tmp_path: Path, issuer: DevIssuer
) -> None:
    with run_service(
        tmp_path,
        issuers=[issuer.trustpub_issuer()],
        policies=policy_for(issuer),
        extra_config=TWO_WORKERS,
    ) as svc:
        wait_for_line(svc, "worker ready", 2)
        first, second = worker_pids(svc)
        (svc.config.parent / "policies" / "policies.toml").write_text("[[policy]]\nname = 1\n")
        svc.process.send_signal(signal.SIGHUP)
        wait_for_line(svc, "policy reload failed; keeping the last good set", 2)
        os.kill(first, signal.SIGKILL)
        wait_for_line(svc, "worker ready", 3)
        replacement = worker_pids(svc)[-1]
        assert replacement not in (first, second)
        assert svc.process.poll() is None
        exchanges_until_each_worker_served(
            svc, {second, replacement}, lambda: issuer.mint(AUDIENCE)
        )


def test_a_restart_with_a_broken_policy_file_serves_the_last_good_set(
    tmp_path: Path, issuer: DevIssuer
) -> None:
    common = {"issuers": [issuer.trustpub_issuer()], "extra_config": f'audience = "{AUDIENCE}"'}
    with run_service(tmp_path, policies=policy_for(issuer), **common) as svc:  # type: ignore[arg-type]
        pass
    with run_service(tmp_path, policies="[[policy]]\nname = 1\n", **common) as svc:  # type: ignore[arg-type]
        response = httpx.post(f"{svc.url}{TOKENS}", json={"jwt": issuer.mint(AUDIENCE)})
        assert response.status_code == 200, response.text
        broken = [e for e in log_entries(svc) if e.get("level") == "error"]
        assert broken
        assert all("policies.toml" in json.dumps(e) for e in broken)


def test_workers_die_with_their_supervisor(tmp_path: Path, issuer: DevIssuer) -> None:
    with run_service(tmp_path, issuers=[issuer.trustpub_issuer()], extra_config=TWO_WORKERS) as svc:
        wait_for_line(svc, "worker ready", 2)
        pids = worker_pids(svc)
        svc.process.kill()
        svc.process.wait()
        deadline = time.monotonic() + PATIENCE
        for pid in pids:
            while alive(pid):
                assert time.monotonic() < deadline, f"worker {pid} outlived its supervisor"
                time.sleep(0.05)
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{svc.url}/healthz")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # Exited but not yet reaped by init (a zombie) counts as dead.
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return False


def test_a_worker_that_keeps_failing_stops_the_service_with_status_1(
    tmp_path: Path, issuer: DevIssuer
) -> None:
    with run_service(tmp_path, issuers=[issuer.trustpub_issuer()], extra_config=TWO_WORKERS) as svc:
        killed: set[int] = set()
        deadline = time.monotonic() + 4 * PATIENCE
        while svc.process.poll() is None:
            assert time.monotonic() < deadline, "the supervisor never gave up"
            started = [e for e in log_entries(svc) if e.get("msg") == "worker started"]
            for pid in [int(e["pid"]) for e in started if e["worker"] == 0]:  # type: ignore[call-overload]
                if pid not in killed:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                    killed.add(pid)
            time.sleep(0.05)
        assert svc.process.returncode == 1
        assert any(
            e.get("msg") == "worker keeps failing at start; stopping the service"
            for e in log_entries(svc)
        )


def serve_once(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "policies").mkdir(exist_ok=True)
    return subprocess.run(
        [sys.executable, "-m", "trustpub", "serve", *args],
        capture_output=True,
        text=True,
        env=clean_env(),
        cwd=tmp_path,
        timeout=60,
    )


def test_a_bad_store_url_is_one_line_naming_the_key_and_status_2(tmp_path: Path) -> None:
    result = serve_once(tmp_path, "--store", "mysql://db/trustpub")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "store" in lines[0]
    assert "mysql" in lines[0]


def test_workers_out_of_range_is_one_line_naming_the_key_and_status_2(tmp_path: Path) -> None:
    result = serve_once(tmp_path, "--workers", "0")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "server.workers" in lines[0]


def test_a_port_in_use_is_not_announced_and_exits_1(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = serve_once(tmp_path, "--listen", f"127.0.0.1:{port}")
    assert result.returncode == 1
    entries = [json.loads(line) for line in result.stderr.strip().splitlines()]
    assert [e["msg"] for e in entries] == [
        f"cannot start: listen: cannot bind 127.0.0.1:{port}: Address already in use"
    ]


def test_serving_is_announced_once_the_port_is_bound(tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / "policies").mkdir()
    process = subprocess.Popen(
        [sys.executable, "-m", "trustpub", "serve", "--listen", f"127.0.0.1:{port}"],
        stderr=subprocess.PIPE,
        env=clean_env(),
        cwd=tmp_path,
        text=True,
    )
    try:
        assert process.stderr is not None
        first = json.loads(process.stderr.readline())
        assert first["msg"].startswith(f"serving http://localhost:{port} ")
        # Announced means bound: a connection is accepted now (queued until served).
        socket.create_connection(("127.0.0.1", port), timeout=PATIENCE).close()
    finally:
        process.terminate()
        process.communicate(timeout=PATIENCE)
    assert process.returncode == 0
