"""The guarded protocols' limits, on both parsers, with real sockets against uvicorn
serving a small application in this process (tests/e2e/test_connections.py proves the
timers and the caps against ``trustpub serve`` itself)."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import Iterable, Iterator

import pytest
import uvicorn
from starlette.types import Receive, Scope, Send

from trustpub.server.protocol import (
    MAX_HEAD,
    MAX_HEADERS,
    MAX_PIPELINED,
    PARSERS,
    ConnectionLimits,
    _Corked,
    guarded_protocol,
)

PATIENCE = 30.0


async def echo(scope: Scope, receive: Receive, send: Send) -> None:
    """Answers with the method, path and body it received."""
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    answer = f"{scope['method']} {scope['path']} ".encode() + body
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-length", str(len(answer)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": answer})


class Running:
    def __init__(self, port: int, server: uvicorn.Server) -> None:
        self.port = port
        self.server = server

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=PATIENCE)


@pytest.fixture(params=PARSERS)
def running(request: pytest.FixtureRequest) -> Iterator[Running]:
    limits = ConnectionLimits(head_timeout=0.5, body_timeout=0.5, max_connections=64)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    config = uvicorn.Config(
        echo,
        http=guarded_protocol(limits, request.param),
        loop="uvloop",
        ws="none",
        lifespan="off",
        log_config=None,
        access_log=False,
        timeout_keep_alive=30,
    )
    server = uvicorn.Server(config)

    def serve() -> None:
        with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
            runner.run(server.serve(sockets=[sock]))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    deadline = time.monotonic() + PATIENCE
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.01)
    try:
        yield Running(sock.getsockname()[1], server)
    finally:
        server.should_exit = True
        thread.join(PATIENCE)
        sock.close()


def read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    received = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return received
        if not chunk:
            return received
        received += chunk


def responses(data: bytes) -> list[tuple[bytes, bytes]]:
    """(status line, body) of each response in ``data`` (bodies with a length)."""
    found = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        length = next(
            int(line.split(b":")[1])
            for line in lines
            if line.lower().startswith(b"content-length:")
        )
        found.append((lines[0], rest[:length]))
        data = rest[length:]
    return found


def exchange(sock: socket.socket, request: bytes) -> tuple[bytes, bytes]:
    """Send one request; its one response."""
    sock.sendall(request)
    data = b""
    while True:
        chunk = sock.recv(65536)
        assert chunk, f"closed after {data!r}"
        data += chunk
        head, sep, rest = data.partition(b"\r\n\r\n")
        if sep:
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            if len(rest) >= length:
                assert len(rest) == length
                return responses(data)[0]


def test_a_head_over_the_limit_in_one_write_is_refused_431(running: Running) -> None:
    with running.connect() as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * MAX_HEAD + b"\r\n\r\n")
        answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:100]
    assert b"GET /" not in answer  # not served


def test_a_head_over_the_limit_in_many_writes_is_refused_431(running: Running) -> None:
    with running.connect() as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: ")
        try:
            for _ in range(MAX_HEAD // 1024 + 2):  # one header value, never ended
                sock.sendall(b"a" * 1024)
                time.sleep(0.001)
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:100]


def test_a_request_line_over_the_limit_is_refused_431(running: Running) -> None:
    with running.connect() as sock:
        sock.sendall(b"GET /" + b"a" * MAX_HEAD + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:100]


def test_too_many_header_lines_are_refused_431(running: Running) -> None:
    lines = b"".join(b"X-%d: a\r\n" % i for i in range(MAX_HEADERS + 1))
    with running.connect() as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n" + lines + b"\r\n")
        answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:100]


def test_a_head_just_under_the_limits_is_served(running: Running) -> None:
    lines = b"".join(b"X-%d: a\r\n" % i for i in range(MAX_HEADERS - 2))
    request = b"GET /ok HTTP/1.1\r\nHost: x\r\n" + lines
    request += b"X-Pad: " + b"a" * (MAX_HEAD - len(request) - 200) + b"\r\n\r\n"
    assert len(request) < MAX_HEAD
    with running.connect() as sock:
        assert exchange(sock, request) == (b"HTTP/1.1 200 OK", b"GET /ok ")


def test_cargos_h2c_upgrade_is_served_as_http_1_1_on_a_kept_alive_connection(
    running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    upgrade = (
        b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
        b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nUser-Agent: cargo/1.90.0\r\n"
    )
    with running.connect() as sock:
        get = b"GET /a HTTP/1.1\r\nHost: x\r\n" + upgrade + b"\r\n"
        assert exchange(sock, get) == (b"HTTP/1.1 200 OK", b"GET /a ")
        put = b"PUT /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n" + upgrade + b"\r\nhello"
        assert exchange(sock, put) == (b"HTTP/1.1 200 OK", b"PUT /b hello")
        chunked = (
            b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            + upgrade
            + b"\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
        )
        assert exchange(sock, chunked) == (b"HTTP/1.1 200 OK", b"POST /c abcde")
        # The body in a later write than its head, then all in one write with the next.
        sock.sendall(b"PUT /d HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n" + upgrade + b"\r\n")
        time.sleep(0.05)
        assert exchange(sock, b"wxyz") == (b"HTTP/1.1 200 OK", b"PUT /d wxyz")
        both = put + get
        sock.sendall(both)
        data = b""
        while len(responses_so_far := _complete(data)) < 2:
            chunk = sock.recv(65536)
            assert chunk
            data += chunk
        assert responses_so_far == [
            (b"HTTP/1.1 200 OK", b"PUT /b hello"),
            (b"HTTP/1.1 200 OK", b"GET /a "),
        ]
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def _complete(data: bytes) -> list[tuple[bytes, bytes]]:
    """The complete responses at the start of ``data``."""
    done: list[tuple[bytes, bytes]] = []
    while True:
        head, sep, rest = data.partition(b"\r\n\r\n")
        if not sep:
            return done
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        if len(rest) < length:
            return done
        done.append((head.split(b"\r\n")[0], rest[:length]))
        data = rest[length:]


def test_pipelined_requests_are_answered_in_order_and_the_queue_is_bounded(
    running: Running, request: pytest.FixtureRequest
) -> None:
    count = MAX_PIPELINED * 3
    burst = b"".join(b"GET /%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(count))
    with running.connect() as sock:
        sock.sendall(burst)
        data = b""
        while len(answers := _complete(data)) < count:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    assert answers, "no answer"
    assert [body for _, body in answers] == [b"GET /%d " % i for i in range(len(answers))]
    if request.node.callspec.params["running"] == "httptools":
        # The one being answered and those queued behind it; then the connection closed.
        assert len(answers) == 1 + MAX_PIPELINED
    else:  # h11 parses one at a time and leaves the rest in its buffer
        assert len(answers) == count


def test_a_connection_that_sends_nothing_is_closed(running: Running) -> None:
    with running.connect() as sock:
        assert read_all(sock) == b""


def test_a_head_trickled_line_by_line_is_closed(running: Running) -> None:
    with running.connect() as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        sock.settimeout(0.1)
        deadline = time.monotonic() + PATIENCE
        while time.monotonic() < deadline:
            try:
                sock.sendall(b"X-Slow: a\r\n")
                if sock.recv(1024) == b"":
                    return
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                return
        pytest.fail("the trickled head was not closed")


def test_a_body_that_stalls_is_closed(running: Running) -> None:
    with running.connect() as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
        assert read_all(sock) == b""


def test_an_upgrade_body_that_stalls_is_closed(running: Running) -> None:
    with running.connect() as sock:
        sock.sendall(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
            b"Connection: Upgrade\r\nUpgrade: h2c\r\n\r\nabc"
        )
        assert read_all(sock) == b""


def test_bytes_between_requests_do_not_hold_a_connection(running: Running) -> None:
    with running.connect() as sock:
        assert exchange(sock, b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")[1] == b"GET /a "
        sock.sendall(b"\r\n")  # not a request: the keep-alive timer is gone, ours runs
        answer = read_all(sock)  # closed (h11 refuses the line first, llhttp skips it)
        assert answer == b"" or answer.startswith(b"HTTP/1.1 400 "), answer[:100]


class RecordingTransport(asyncio.Transport):
    """A transport that records what it is asked to do (the socket's side of it)."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[list[bytes]] = []
        self.closed = False
        self.aborted = False

    def writelines(self, data: Iterable[bytes | bytearray | memoryview]) -> None:
        self.sent.append([bytes(d) for d in data])

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def get_write_buffer_size(self) -> int:
        return 7


@pytest.mark.anyio
async def test_what_one_turn_of_the_loop_writes_leaves_in_one_send() -> None:
    raw = RecordingTransport()
    corked = _Corked(raw, asyncio.get_running_loop())
    corked.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    corked.write(b"")
    corked.write(b"ok")
    assert raw.sent == []  # nothing yet: the turn is not over
    await asyncio.sleep(0)
    assert raw.sent == [[b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n", b"ok"]]
    corked.write(b"next")
    await asyncio.sleep(0)
    assert raw.sent[1:] == [[b"next"]]
    assert corked.get_write_buffer_size() == 7  # the rest is the transport's own


@pytest.mark.anyio
async def test_closing_sends_what_waits_and_aborting_drops_it() -> None:
    raw = RecordingTransport()
    corked = _Corked(raw, asyncio.get_running_loop())
    corked.write(b"last words")
    corked.close()
    assert raw.sent == [[b"last words"]]
    assert raw.closed
    await asyncio.sleep(0)
    assert raw.sent == [[b"last words"]]  # sent once

    raw = RecordingTransport()
    corked = _Corked(raw, asyncio.get_running_loop())
    corked.write(b"never")
    corked.abort()
    await asyncio.sleep(0)
    assert raw.sent == []
    assert raw.aborted


@pytest.mark.anyio
async def test_nothing_is_written_to_a_transport_closed_meanwhile() -> None:
    raw = RecordingTransport()
    corked = _Corked(raw, asyncio.get_running_loop())
    corked.write(b"too late")
    raw.closed = True  # the peer went away during the turn
    await asyncio.sleep(0)
    assert raw.sent == []
    assert corked.is_closing()
