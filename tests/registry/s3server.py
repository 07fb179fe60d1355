"""An S3 emulator for the tests: moto's server mode, a real HTTP server in its own
process on loopback (the most faithful S3 implementation that installs from PyPI; it is
an emulator, not S3). Each test gets a bucket of its own."""

from __future__ import annotations

import functools
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import boto3
import httpx

from trustpub.registry.storage import S3Settings, StorageSettings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
else:
    S3Client = Any

ACCESS_KEY = "AKIATESTTESTTEST0000"
SECRET_KEY = "test-secret-" + "s" * 28
REGION: Literal["eu-west-1"] = "eu-west-1"


@dataclass(frozen=True)
class S3Server:
    endpoint: str

    def settings(self, **changes: str) -> S3Settings:
        values = {
            "endpoint_url": self.endpoint,
            "region": REGION,
            "access_key_id": ACCESS_KEY,
            "secret_access_key": SECRET_KEY,
            "addressing_style": "path",
            **changes,
        }
        return S3Settings(**values)

    def client(self) -> S3Client:
        """The tests' own client of this server: one per process (building a boto3
        client loads its service model, most of a second on a busy machine; boto3
        clients are thread-safe)."""
        return _client(self.endpoint)

    def new_bucket(self) -> str:
        name = f"crates-{secrets.token_hex(6)}"
        self.client().create_bucket(
            Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION}
        )
        return name

    def storage(self, downloads: str = "stream", prefix: str = "registry") -> StorageSettings:
        """Settings for a fresh bucket (objects under ``prefix/``)."""
        return StorageSettings(f"s3://{self.new_bucket()}/{prefix}", downloads, self.settings())

    def keys(self, bucket: str) -> list[str]:
        listed = self.client().list_objects_v2(Bucket=bucket)
        return sorted(item["Key"] for item in listed.get("Contents", []))


@functools.cache
def _client(endpoint: str) -> S3Client:
    client: S3Client = boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )
    return client


def run_moto_server() -> Iterator[S3Server]:
    """Start ``moto_server`` on a free loopback port; stop it afterwards."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"moto_server exited with {process.returncode}")
            try:
                httpx.get(f"{endpoint}/moto-api/", timeout=2, trust_env=False)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise RuntimeError("moto_server did not start within 60 s") from None
                time.sleep(0.1)
        yield S3Server(endpoint)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
