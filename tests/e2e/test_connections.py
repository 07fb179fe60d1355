"""Connection limits of ``trustpub serve``, with real sockets against a real process:
slow or stalled clients are closed, idle sockets cannot lock out requests, and shutdown
has a deadline."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.live import LiveService, run_service
from trustpub.devissuer import DevIssuer, serve_in_thread
from trustpub.server.protocol import PARSERS

pytestmark = pytest.mark.slow

TOKENS = "/api/v1/trusted_publishing/tokens"
# Long enough for any loaded machine; the limits under test are 1-2 s.
PATIENCE = 30.0


@pytest.fixture
def issuer() -> Iterator[DevIssuer]:
    with serve_in_thread(provider="github") as running:
        yield running


Limits = Callable[..., str]


@pytest.fixture(params=PARSERS)
def limits(request: pytest.FixtureRequest) -> Limits:
    """The ``[server]`` table for some limits, on each HTTP parser in turn."""

    def table(**values: int) -> str:
        lines = [f'http = "{request.param}"\n']
        lines += [f"{key} = {value}\n" for key, value in values.items()]
        return "[server]\n" + "".join(lines)

    return table


def connect(svc: LiveService) -> socket.socket:
    host, port = svc.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=PATIENCE)
    return sock


def closed_by_server(sock: socket.socket, *, trickle: bytes = b"") -> bytes:
    """Wait until the server closes ``sock`` (sending ``trickle`` every 0.2 s meanwhile,
    as a slow client would); what it sent before closing. Fails after PATIENCE."""
    received = b""
    deadline = time.monotonic() + PATIENCE
    sock.settimeout(0.2)
    while time.monotonic() < deadline:
        try:
            if trickle:
                sock.sendall(trickle)
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except (BrokenPipeError, ConnectionResetError):
            return received
        if not chunk:
            return received
        received += chunk
    pytest.fail(f"the server kept the connection open for {PATIENCE} s")


def stalled_post(svc: LiveService) -> socket.socket:
    """A request in progress whose body stops after 10 of its 1000 bytes.

    It asks for ``100 Continue`` and waits for it: proof that the server has read the
    head and the application is waiting for the body."""
    sock = connect(svc)
    sock.sendall(
        f"POST {TOKENS} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        "Content-Length: 1000\r\nExpect: 100-continue\r\n\r\n".encode()
    )
    interim = b""
    while b"\r\n\r\n" not in interim:
        chunk = sock.recv(1024)
        assert chunk, "closed before 100 Continue"
        interim += chunk
    assert interim.startswith(b"HTTP/1.1 100 "), interim
    sock.sendall(b'{"jwt": "a')
    return sock


def get_raw(sock: socket.socket, path: str = "/healthz") -> bytes:
    """One keep-alive GET on ``sock``; the whole response (small, with a length)."""
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def log_entries(svc: LiveService) -> list[dict[str, object]]:
    """Every line the service wrote, each parsed as JSON (a line that is not fails)."""
    return [json.loads(line) for line in svc.output().splitlines() if line.strip()]


def test_a_connection_that_sends_nothing_is_closed(
    tmp_path: Path, issuer: DevIssuer, limits: Limits
) -> None:
    with run_service(
        tmp_path, issuers=[issuer.trustpub_issuer()], extra_config=limits(head_timeout=1)
    ) as svc:
        with connect(svc) as sock:
            assert closed_by_server(sock) == b""
        assert httpx.get(f"{svc.url}/healthz").status_code == 200


def test_a_request_head_sent_byte_by_byte_is_closed(
    tmp_path: Path, issuer: DevIssuer, limits: Limits
) -> None:
    with (
        run_service(
            tmp_path, issuers=[issuer.trustpub_issuer()], extra_config=limits(head_timeout=1)
        ) as svc,
        connect(svc) as sock,
    ):
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        # One header line every 0.2 s: the head is never complete, the timer never reset.
        assert closed_by_server(sock, trickle=b"X-Slow: a\r\n") == b""


def test_a_kept_alive_connection_cannot_trickle_its_next_head(
    tmp_path: Path, issuer: DevIssuer, limits: Limits
) -> None:
    with (
        run_service(
            tmp_path,
            issuers=[issuer.trustpub_issuer()],
            extra_config=limits(head_timeout=1, keep_alive_timeout=30),
        ) as svc,
        connect(svc) as sock,
    ):
        assert b" 200 " in get_raw(sock).split(b"\r\n")[0]
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        assert closed_by_server(sock, trickle=b"X-Slow: a\r\n") == b""


def test_a_body_that_stalls_is_closed(tmp_path: Path, issuer: DevIssuer, limits: Limits) -> None:
    with run_service(
        tmp_path, issuers=[issuer.trustpub_issuer()], extra_config=limits(body_timeout=1)
    ) as svc:
        with stalled_post(svc) as sock:
            closed_by_server(sock)
        assert httpx.get(f"{svc.url}/healthz").status_code == 200


def test_an_idle_keep_alive_connection_times_out(
    tmp_path: Path, issuer: DevIssuer, limits: Limits
) -> None:
    with (
        run_service(
            tmp_path, issuers=[issuer.trustpub_issuer()], extra_config=limits(keep_alive_timeout=1)
        ) as svc,
        connect(svc) as sock,
    ):
        assert b" 200 " in get_raw(sock).split(b"\r\n")[0]
        assert closed_by_server(sock) == b""


def test_idle_sockets_beyond_the_descriptor_limit_do_not_lock_out_healthz(
    tmp_path: Path, issuer: DevIssuer, limits: Limits
) -> None:
    # 128 descriptors leave room for 64 connections; 200 idle sockets would exhaust them.
    # The head timeout is long: only closing the idle ones to make room can let us in.
    with run_service(
        tmp_path,
        issuers=[issuer.trustpub_issuer()],
        extra_config=limits(head_timeout=300),
        files_limit=128,
    ) as svc:
        idle = [connect(svc) for _ in range(200)]
        try:
            response = httpx.get(f"{svc.url}/healthz", timeout=PATIENCE)
            assert response.status_code == 200
            assert svc.process.poll() is None
        finally:
            for sock in idle:
                sock.close()


def test_requests_past_the_limit_get_a_fast_503(
    tmp_path: Path, issuer: DevIssuer, limits: Limits
) -> None:
    with run_service(
        tmp_path,
        issuers=[issuer.trustpub_issuer()],
        extra_config=limits(max_requests=2, body_timeout=300),
    ) as svc:
        stalled = [stalled_post(svc) for _ in range(2)]
        try:
            # The two stalled requests occupy both places.
            deadline = time.monotonic() + PATIENCE
            while (busy := httpx.get(f"{svc.url}/healthz")).status_code != 503:
                assert time.monotonic() < deadline, "no 503 past the request limit"
                time.sleep(0.05)
            assert busy.headers["retry-after"] == "1"
            assert busy.json()["errors"][0]["detail"]
        finally:
            for sock in stalled:
                sock.close()
        deadline = time.monotonic() + PATIENCE
        while httpx.get(f"{svc.url}/healthz").status_code != 200:
            assert time.monotonic() < deadline, "places were not given back"
            time.sleep(0.05)


def test_a_connection_past_the_limit_with_every_one_busy_gets_a_503(
    tmp_path: Path, issuer: DevIssuer, limits: Limits
) -> None:
    with run_service(
        tmp_path,
        issuers=[issuer.trustpub_issuer()],
        extra_config=limits(max_connections=16, max_requests=64, body_timeout=300),
    ) as svc:
        stalled = [stalled_post(svc) for _ in range(16)]
        try:
            deadline = time.monotonic() + PATIENCE
            while True:
                with connect(svc) as sock:
                    answer = closed_by_server(sock, trickle=b"")
                if answer.startswith(b"HTTP/1.1 503 "):
                    break
                assert time.monotonic() < deadline, "no 503 past the connection limit"
            assert b"retry-after: 1" in answer
        finally:
            for sock in stalled:
                sock.close()


@pytest.mark.parametrize("workers", [1, 2])
def test_shutdown_with_a_stalled_client_ends_within_the_deadline(
    tmp_path: Path, issuer: DevIssuer, limits: Limits, workers: int
) -> None:
    with run_service(
        tmp_path,
        issuers=[issuer.trustpub_issuer()],
        extra_config=limits(workers=workers, body_timeout=300, shutdown_timeout=1),
    ) as svc:
        wait_for_line(svc, "worker ready", workers)
        with stalled_post(svc):
            svc.process.send_signal(signal.SIGTERM)
            try:
                status = svc.process.wait(PATIENCE)
            except subprocess.TimeoutExpired:
                pytest.fail("shutdown waited for the stalled client past its deadline")
        assert status == 0
        log_entries(svc)  # every line JSON, the shutdown's included


def wait_for_line(svc: LiveService, msg: str, count: int) -> list[dict[str, object]]:
    deadline = time.monotonic() + PATIENCE
    while True:
        found = [e for e in log_entries(svc) if e.get("msg") == msg]
        if len(found) >= count:
            return found
        assert time.monotonic() < deadline, f"fewer than {count} {msg!r} lines"
        time.sleep(0.05)


def test_cargos_h2c_upgrade_request_is_served_without_a_warning(
    tmp_path: Path, issuer: DevIssuer, limits: Limits
) -> None:
    with run_service(tmp_path, issuers=[issuer.trustpub_issuer()], extra_config=limits()) as svc:
        for _ in range(3):
            response = httpx.get(
                f"{svc.url}/healthz",
                headers={
                    "Connection": "Upgrade, HTTP2-Settings",
                    "Upgrade": "h2c",
                    "HTTP2-Settings": "AAMAAABkAARAAAAAAAIAAAAA",
                    "User-Agent": "cargo/1.90.0 (2025-09-14)",
                },
            )
            assert response.status_code == 200
        cargo = "cargo/1.90.0 (2025-09-14)"
        # The access line is written after the answer: wait for the three of them.
        deadline = time.monotonic() + PATIENCE
        while True:
            entries = log_entries(svc)
            access = [e for e in entries if e.get("logger") == "trustpub.access"]
            if sum(e.get("user_agent") == cargo for e in access) >= 3:
                break
            assert time.monotonic() < deadline, "fewer than 3 access lines for cargo"
            time.sleep(0.05)
        assert [e for e in entries if e.get("level") == "warning"] == []
        # (before them, the start-up checks' /healthz from httpx)
        assert [e["user_agent"] for e in access[-3:]] == [cargo] * 3
