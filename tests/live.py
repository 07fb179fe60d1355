"""Run a real ``trustpub serve`` process for end-to-end tests.

with run_service(tmp_path, issuers=[issuer.trustpub_issuer()], policies=TEXT) as svc:
    httpx.post(f"{svc.url}/api/v1/trusted_publishing/tokens", json={"jwt": jwt})
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from trustpub.oidc.issuers import Issuer


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class LiveService:
    url: str
    audience: str
    process: subprocess.Popen[bytes]
    config: Path
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def write_config(
    path: Path,
    *,
    port: int,
    issuers: Sequence[Issuer],
    policy_dir: Path,
    store_url: str,
    data_dir: Path,
    extra: str = "",
) -> None:
    lines = [
        f'listen = "127.0.0.1:{port}"',
        f'public_url = "http://127.0.0.1:{port}"',
        f'policy_dir = "{policy_dir}"',
        f'store = "{store_url}"',
        f'data_dir = "{data_dir}"',
        extra,
    ]
    for issuer in issuers:
        lines += [
            "[[issuers]]",
            f'url = "{issuer.url}"',
            f'provider = "{issuer.provider}"',
            f"development = {'true' if issuer.development else 'false'}",
        ]
    path.write_text("\n".join(lines) + "\n")


def wait_until_up(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"trustpub serve exited ({process.returncode}):\n{log.read_text()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        time.sleep(0.05)
    raise RuntimeError(f"trustpub serve did not come up:\n{log.read_text()}")


@contextlib.contextmanager
def run_service(
    workdir: Path,
    *,
    issuers: Sequence[Issuer],
    policies: str | None = None,
    store_url: str | None = None,
    extra_config: str = "",
    name: str = "service",
    port: int | None = None,
    env: dict[str, str] | None = None,
    args: Sequence[str] = (),
    files_limit: int | None = None,
) -> Iterator[LiveService]:
    """Start ``trustpub serve`` with a config under ``workdir/name``; stop it on exit.

    ``files_limit``: the service's descriptor limit (RLIMIT_NOFILE), when given."""
    home = workdir / name
    home.mkdir(parents=True, exist_ok=True)
    policy_dir = home / "policies"
    policy_dir.mkdir(exist_ok=True)
    if policies is not None:
        (policy_dir / "policies.toml").write_text(policies)
    port = port or free_port()
    config = home / "trustpub.toml"
    write_config(
        config,
        port=port,
        issuers=issuers,
        policy_dir=policy_dir,
        store_url=store_url or f"sqlite:///{home}/store.db",
        data_dir=home / "data",
        extra=extra_config,
    )
    log = home / "serve.log"
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TRUSTPUB_")}
    environment.update(env or {})
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "trustpub", "serve", "--config", str(config), *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=environment,
            cwd=home,
            preexec_fn=None if files_limit is None else lambda: _limit_files(files_limit),
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url, process, log)
        yield LiveService(url, f"127.0.0.1:{port}", process, config, log)
    finally:
        stop(process)


def _limit_files(limit: int) -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def registry_cli(service: LiveService, *args: str) -> str:
    """`trustpub registry` on the live service's data, as an operator runs it."""
    result = subprocess.run(
        [sys.executable, "-m", "trustpub", "registry", "--config", str(service.config), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith("TRUSTPUB_")},
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()
