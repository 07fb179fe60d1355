"""GitHub's side of secret scanning for tests: its P-256 keys, and its key endpoint as a
small HTTP server on loopback (a thread), counting the requests it answers."""

from __future__ import annotations

import base64
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec


class GitHubKey:
    """A P-256 key pair with its identifier, as GitHub holds one."""

    def __init__(self, identifier: str) -> None:
        self.identifier = identifier
        self.private = ec.generate_private_key(ec.SECP256R1())

    def entry(self, is_current: bool = True) -> dict[str, object]:
        pem = self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return {"key_identifier": self.identifier, "key": pem.decode(), "is_current": is_current}

    def sign(self, body: bytes) -> str:
        return base64.b64encode(self.private.sign(body, ec.ECDSA(hashes.SHA256()))).decode()


class KeyServer:
    """GitHub's key endpoint on 127.0.0.1: serves ``keys``, counts the requests."""

    def __init__(self) -> None:
        self.keys: list[GitHubKey] = []
        self.requests = 0
        self.status = 200
        self.body: bytes | None = None  # served instead of the keys when set
        self.delay = 0.0  # seconds before answering
        self.location: str | None = None  # answer 302 to it when set
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests += 1
                time.sleep(server.delay)
                if server.location is not None:
                    self.send_response(302)
                    self.send_header("Location", server.location)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = server.body
                if body is None:
                    body = json.dumps({"public_keys": [k.entry() for k in server.keys]}).encode()
                self.send_response(server.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = (
            f"http://127.0.0.1:{self.httpd.server_address[1]}/meta/public_keys/secret_scanning"
        )
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
