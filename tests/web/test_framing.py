"""Request framing through a real socket and a real uvicorn server: what a test client
cannot send (a lying Content-Length beside Transfer-Encoding, a body that never ends, a
client that leaves mid-body) reaches the body reader as it would in production."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

import pytest
import uvicorn
from starlette.types import ASGIApp

from tests.api.conftest import GITHUB_POLICY
from trustpub.api.app import create_app
from trustpub.config import Settings
from trustpub.registry import Limits, Registry, create_registry_app
from trustpub.registry.auth import generate_user_token, user_token_hash
from trustpub.server.protocol import ConnectionLimits, guarded_protocol
from trustpub.web import JSON_LIMIT

pytestmark = pytest.mark.slow

TOKENS = b"/api/v1/trusted_publishing/tokens"
PUBLISH = b"/api/v1/crates/new"
REGISTRY_LIMIT = 8 * 1024


DEFAULTS = Settings().server


@pytest.fixture(scope="module", params=["httptools", "h11"])
def parser(request: pytest.FixtureRequest) -> str:
    """Each HTTP parser `trustpub serve` offers ([server] http), with its guard."""
    chosen: str = request.param
    return chosen


@contextmanager
def serving(app: ASGIApp, parser: str) -> Iterator[int]:
    """``app`` under uvicorn in a thread, on a free loopback port, with the guarded
    protocol `trustpub serve` runs for ``parser``."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    config = uvicorn.Config(
        app,
        http=guarded_protocol(
            ConnectionLimits(
                head_timeout=DEFAULTS.head_timeout,
                body_timeout=DEFAULTS.body_timeout,
                max_connections=DEFAULTS.max_connections,
            ),
            parser,
        ),
        log_config=None,
        access_log=False,
        lifespan="on",
        ws="none",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        while not server.started:
            thread.join(0.01)
            assert thread.is_alive(), "the server did not start"
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


@pytest.fixture(scope="module")
def api_port(tmp_path_factory: pytest.TempPathFactory, parser: str) -> Iterator[int]:
    tmp = tmp_path_factory.mktemp("api")
    (tmp / "policies").mkdir()
    (tmp / "policies" / "policies.toml").write_text(GITHUB_POLICY)
    settings = replace(
        Settings(),
        audience="registry.example",
        policy_dir=tmp / "policies",
        store_url=f"sqlite:///{tmp}/store.db",
        data_dir=tmp / "data",
        policy_reload_interval=0,
        registry_enabled=False,
    )
    with serving(create_app(settings), parser) as port:
        yield port


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory, parser: str) -> Iterator[tuple[int, str]]:
    """The standalone registry with a small body limit, and an API token of alice's."""
    app = create_registry_app(
        tmp_path_factory.mktemp("registry"),
        "http://127.0.0.1",
        limits=Limits(body=REGISTRY_LIMIT, metadata=1024, crate=4096),
    )
    with serving(app, parser) as port:
        opened: Registry = app.state.registry
        opened.db.add_user("alice")
        token = generate_user_token()
        opened.db.add_token("alice", "t", user_token_hash(token), ["publish-new"], [], None)
        yield port, token


def send(port: int, data: bytes, *, close_write: bool = False) -> bytes:
    """Send ``data`` (without waiting for the server to read all of it) and read the
    answer up to the end of its body."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as conn:
        conn.sendall(data)
        if close_write:
            conn.shutdown(socket.SHUT_WR)
        answer = b""
        while True:
            try:
                chunk = conn.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            answer += chunk
            head, sep, body = answer.partition(b"\r\n\r\n")
            if sep:
                lengths = [
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                ]
                if lengths and len(body) >= lengths[0]:
                    break
        return answer


def status_and_body(answer: bytes) -> tuple[int, bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def head(path: bytes, *headers: bytes, method: bytes = b"POST") -> bytes:
    lines = [method + b" " + path + b" HTTP/1.1", b"Host: 127.0.0.1", *headers]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def test_content_length_beside_transfer_encoding_is_refused_before_the_body(
    api_port: int,
) -> None:
    # The body never ends: an answer at all shows it was refused without being read.
    request = head(TOKENS, b"Content-Length: 10", b"Transfer-Encoding: chunked")
    status, body = status_and_body(send(api_port, request + chunk(b"x" * 4096)))
    assert status == 400
    assert b"Content-Length and Transfer-Encoding" in body


def test_a_chunked_body_is_cut_at_the_limit_without_waiting_for_its_end(api_port: int) -> None:
    pieces = b"".join(chunk(b"x" * 1024) for _ in range(JSON_LIMIT // 1024 + 4))
    status, body = status_and_body(
        send(api_port, head(TOKENS, b"Transfer-Encoding: chunked") + pieces)
    )
    assert status == 413
    assert b'"errors"' in body


def test_a_chunked_json_body_within_the_limit_is_read(api_port: int) -> None:
    request = head(TOKENS, b"Transfer-Encoding: chunked", b"Content-Type: application/json")
    body = chunk(b'{"jwt":') + chunk(b'"not.a.jwt"}') + b"0\r\n\r\n"
    status, answer = status_and_body(send(api_port, request + body))
    # Past the body reader: the JWT itself is what is refused.
    assert status == 400
    assert b"Failed to decode JWT" in answer


def test_a_declared_length_over_the_limit_is_refused_unread(api_port: int) -> None:
    request = head(TOKENS, b"Content-Length: %d" % (JSON_LIMIT + 1))
    status, _ = status_and_body(send(api_port, request + b"{"))
    assert status == 413


@pytest.mark.parametrize("length", [b"+5", b"\xc2\xb2", b"5 5", b"99999999999999999999999"])
def test_a_content_length_that_is_not_a_plain_number_is_a_bad_request(
    api_port: int, length: bytes
) -> None:
    status, _ = status_and_body(send(api_port, head(TOKENS, b"Content-Length: " + length)))
    assert status == 400


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.aborted = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        if record.getMessage() == "client aborted the request":
            self.aborted.set()


@pytest.fixture
def records() -> Iterator[Records]:
    handler = Records()
    loggers = [logging.getLogger(name) for name in ("trustpub", "uvicorn", "uvicorn.error")]
    saved = [(lg.level, lg.propagate) for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        for lg, (level, propagate) in zip(loggers, saved, strict=True):
            lg.removeHandler(handler)
            lg.setLevel(level)
            lg.propagate = propagate


def test_a_client_that_leaves_mid_body_is_logged_once_as_an_abort(
    api_port: int, records: Records
) -> None:
    send(api_port, head(TOKENS, b"Content-Length: 100") + b'{"jwt": "', close_write=True)
    assert records.aborted.wait(30), [r.getMessage() for r in records.records]
    aborts = [r for r in records.records if r.getMessage() == "client aborted the request"]
    assert len(aborts) == 1
    assert aborts[0].levelno == logging.INFO
    assert [r.getMessage() for r in records.records if r.levelno >= logging.WARNING] == []


def test_the_registry_publish_has_its_own_limit_counted_as_the_body_arrives(
    registry: tuple[int, str],
) -> None:
    port, token = registry
    request = head(
        PUBLISH, b"Authorization: " + token.encode(), b"Transfer-Encoding: chunked", method=b"PUT"
    )
    pieces = b"".join(chunk(b"x" * 1024) for _ in range(REGISTRY_LIMIT // 1024 + 4))
    status, body = status_and_body(send(port, request + pieces))
    assert status == 413
    assert b"limit %d bytes" % REGISTRY_LIMIT in body


def test_the_registry_publish_refuses_a_lying_content_length(registry: tuple[int, str]) -> None:
    port, token = registry
    request = head(
        PUBLISH,
        b"Authorization: " + token.encode(),
        b"Content-Length: 4",
        b"Transfer-Encoding: chunked",
        method=b"PUT",
    )
    status, body = status_and_body(send(port, request + chunk(b"x" * 1024)))
    assert status == 400
    assert b"Content-Length and Transfer-Encoding" in body
