"""Key sets fetched over real HTTP from a local issuer on 127.0.0.1."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from tests.conftest import AUDIENCE, SigningKey, github_claims
from trustpub.errors import KeySetUnavailable
from trustpub.oidc.issuers import Issuer
from trustpub.oidc.keys import KeySets
from trustpub.oidc.verify import Verifier

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


class LocalIssuer(ThreadingHTTPServer):
    """A development issuer: discovery document and key set, or an endless body."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        self.keys: list[dict[str, Any]] = []
        self.endless_jwks = False
        self.paths: list[str] = []

    def handle_error(self, request: Any, client_address: Any) -> None:
        # The client hanging up on an endless body is expected; keep test output clean.
        pass


class _Handler(BaseHTTPRequestHandler):
    server: LocalIssuer

    def do_GET(self) -> None:
        self.server.paths.append(self.path)
        if self.path == "/.well-known/openid-configuration":
            body = {"issuer": self.server.url, "jwks_uri": f"{self.server.url}/.well-known/jwks"}
            self._json(body)
        elif self.path == "/.well-known/jwks" and self.server.endless_jwks:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()  # no Content-Length: the body ends when we close
            self.wfile.write(b'{"keys": [')
            for _ in range(4096):  # 4 MiB, far past the cap
                self.wfile.write(b" " * 1024)
        elif self.path == "/.well-known/jwks":
            self._json({"keys": self.server.keys})
        else:
            self.send_error(404)

    def _json(self, data: dict[str, Any]) -> None:
        payload = json.dumps(data).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def local_issuer() -> Iterator[LocalIssuer]:
    server = LocalIssuer()
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


async def test_token_of_local_development_issuer_is_verified(
    local_issuer: LocalIssuer, signing_key: SigningKey
) -> None:
    local_issuer.keys = [signing_key.jwk()]
    issuer = Issuer(local_issuer.url, "github", development=True)
    async with httpx.AsyncClient(trust_env=False) as http:
        keys = KeySets(http)
        verifier = Verifier([issuer], AUDIENCE, keys)
        verified = await verifier.verify(signing_key.sign(github_claims(iss=issuer.url)))
    assert verified.issuer == issuer
    assert local_issuer.paths == ["/.well-known/openid-configuration", "/.well-known/jwks"]
    assert keys.fetch_outcomes == {(issuer.url, "ok"): 1}


async def test_endless_key_set_from_a_real_server_is_cut_at_the_cap(
    local_issuer: LocalIssuer,
) -> None:
    local_issuer.endless_jwks = True
    issuer = Issuer(local_issuer.url, "github", development=True)
    async with httpx.AsyncClient(trust_env=False) as http:
        keys = KeySets(http, max_bytes=64 * 1024)
        with pytest.raises(KeySetUnavailable):
            await keys.get_key(issuer, "any")
    assert keys.fetch_outcomes == {(issuer.url, "too_large"): 1}
