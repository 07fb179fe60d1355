"""Live processes for the action's end-to-end tests: `trustpub dev-issuer` and node."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import pytest


@dataclass(frozen=True)
class LiveIssuer:
    url: str
    request_token: str

    @property
    def token_request_url(self) -> str:
        return f"{self.url}/token?api-version=2.0"


@contextlib.contextmanager
def dev_issuer(*args: str) -> Iterator[LiveIssuer]:
    """`trustpub dev-issuer` on a free loopback port, its URL read from its banner."""
    request_token = secrets.token_urlsafe(16)
    command = [sys.executable, "-m", "trustpub", "dev-issuer", "--listen", "127.0.0.1:0"]
    with subprocess.Popen(
        # `--opt=value`: a random token may start with "-", which argparse would read
        # as an option.
        [*command, f"--request-token={request_token}", *args],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    ) as process:
        try:
            assert process.stdout is not None
            seen: list[str] = []
            url = None
            for line in process.stdout:
                seen.append(line)
                if "TRUSTPUB_ISSUERS=" in line:
                    url = line.split("=", 2)[2].split("+dev", 1)[0]
                    break
            if url is None:
                raise RuntimeError(f"dev-issuer did not start: {''.join(seen)}")
            yield LiveIssuer(url, request_token)
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def node() -> str:
    path = shutil.which("node")
    if path is None:
        pytest.skip("node is not installed")
    return path
