"""The real ``cargo`` reading an exported index from a plain static file server.

A crate is published to a live ``trustpub serve``; ``trustpub registry index export``
writes the index to a directory; Python's ``http.server`` serves that directory; a
consumer whose cargo knows only the static server builds against the crate (the index
from the static server, the download from the registry, as ``config.json`` says).
"""

from __future__ import annotations

import functools
import shutil
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.live import registry_cli, run_service
from tests.registry.test_cargo_e2e import Cargo, make_package
from trustpub.devissuer import DevIssuer, serve_in_thread

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("cargo") is None, reason="needs cargo"),
]


class Handler(SimpleHTTPRequestHandler):
    """A static file server that notes the paths asked for."""

    seen: list[str]

    def log_message(self, format: str, *args: Any) -> None:
        self.seen.append(self.path)


@pytest.fixture
def issuer() -> Iterator[DevIssuer]:
    with serve_in_thread(provider="github") as running:
        yield running


def serve_directory(root: Path, seen: list[str]) -> ThreadingHTTPServer:
    handler = type("Seen", (Handler,), {"seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_cargo_builds_from_an_exported_index_on_a_static_server(
    tmp_path: Path, issuer: DevIssuer
) -> None:
    with run_service(tmp_path, issuers=[issuer.trustpub_issuer()]) as svc:
        work = tmp_path / "work"
        work.mkdir()
        registry_cli(svc, "user", "add", "alice")
        alice = registry_cli(svc, "token", "create", "--user", "alice", "--scope", "publish-new")
        publisher = Cargo(tmp_path / "publisher", f"sparse+{svc.url}/index/")
        base = make_package(work, "exp-base", "0.1.0")
        publisher.ok(base, "publish", "--registry", "trustpub", "--no-verify", token=alice)

        export = tmp_path / "export"
        registry_cli(svc, "index", "export", str(export))
        assert (export / "ex/p-/exp-base").is_file()

        seen: list[str] = []
        server = serve_directory(export, seen)
        try:
            static = f"http://127.0.0.1:{server.server_address[1]}"
            consumer_cargo = Cargo(tmp_path / "consumer", f"sparse+{static}/")
            consumer = make_package(
                work,
                "consumer",
                "0.0.0",
                deps='exp-base = { version = "0.1", registry = "trustpub" }\n',
                code="pub fn twice() -> u32 { exp_base::answer() * 2 }\n",
            )
            built = consumer_cargo.ok(consumer, "build")
        finally:
            server.shutdown()
            server.server_close()
        assert "Compiling exp-base v0.1.0" in built
        # The index came from the static server; only the download from the registry.
        assert "/config.json" in seen
        assert "/ex/p-/exp-base" in seen
