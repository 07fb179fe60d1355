"""Running the dev issuer: in a background thread (tests) or in the foreground (CLI)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from trustpub.devissuer.app import create_app
from trustpub.devissuer.issuer import DevIssuer
from trustpub.oidc.issuers import is_loopback_host

_START_TIMEOUT = 10.0


def bind(host: str, port: int) -> socket.socket:
    """A listening socket; ``port=0`` picks a free one (read it from getsockname)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


def url_for(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


def _config(issuer: DevIssuer) -> uvicorn.Config:
    return uvicorn.Config(
        create_app(issuer),
        log_config=None,
        log_level="warning",
        access_log=False,
        lifespan="off",
        ws="none",
        server_header=False,
    )


def serve_forever(issuer: DevIssuer, sock: socket.socket) -> None:
    """Serve ``issuer`` on ``sock`` until interrupted (Ctrl-C)."""
    uvicorn.Server(_config(issuer)).run(sockets=[sock])


@contextmanager
def serve_in_thread(
    *, host: str = "127.0.0.1", port: int = 0, **issuer_args: Any
) -> Iterator[DevIssuer]:
    """Run a ``DevIssuer`` on ``host`` (a free port by default) in a background thread.

    Yields the issuer, whose ``url`` is the address it serves; keyword arguments go to
    ``DevIssuer`` (``key``, ``kid``, ``provider``, ``claims_overrides``,
    ``request_token``, ``lifetime``, ``audience``, ``clock``). The server stops when the
    block exits.
    """
    # Tests must never expose a signing endpoint beyond the machine.
    if not is_loopback_host(host):
        raise ValueError(f"serve_in_thread: {host!r} is not a loopback address")
    sock = bind(host, port)
    try:
        issuer = DevIssuer(url_for(host, sock.getsockname()[1]), **issuer_args)
        server = uvicorn.Server(_config(issuer))
        failure: list[BaseException] = []

        def run() -> None:
            try:
                server.run(sockets=[sock])
            except BaseException as exc:  # reported to the caller below
                failure.append(exc)

        thread = threading.Thread(target=run, name="trustpub-dev-issuer", daemon=True)
        thread.start()
        deadline = time.monotonic() + _START_TIMEOUT
        while not server.started:
            thread.join(0.01)
            if not thread.is_alive() or time.monotonic() > deadline:
                server.should_exit = True
                raise RuntimeError("dev issuer failed to start") from (
                    failure[0] if failure else None
                )
        try:
            yield issuer
        finally:
            server.should_exit = True
            thread.join(_START_TIMEOUT)
    finally:
        sock.close()
