"""A TCP proxy to the tests' PostgreSQL server that cuts a connection at its COMMIT:
the registry's and the PostgreSQL store's tests of a commit whose answer is lost."""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Literal

# psycopg commits with a simple query: this message, whole, in one send.
COMMIT = b"Q\x00\x00\x00\x0bCOMMIT\x00"
# The server's ReadyForQuery, which ends its answer to a query.
READY = b"Z\x00\x00\x00\x05"
Mode = Literal["after", "before", "hold"]


class CommitCutter:
    """A TCP proxy to the test PostgreSQL server that, once armed, cuts the connection
    on which the next COMMIT is sent: ``after`` forwarding it, once the server has
    answered it (committed, the answer dropped: the client is cut only then, so whatever
    it does next sees the commit done),
    ``before`` (rolled back), or ``hold`` (not forwarded, the server's side kept open
    until ``release()``: the transaction stays open there, its locks held)."""

    def __init__(self, target: tuple[str, int] = ("127.0.0.1", 5432)) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.mode: Mode | None = None
        self.fired = threading.Event()
        self.held: list[socket.socket] = []
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        # Server sides whose next answer is dropped, then both sides cut: their client.
        self._answer_dropped: dict[socket.socket, socket.socket] = {}
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, database_url: str) -> str:
        name = database_url.rsplit("/", 1)[1]
        # Plain TCP, so the proxy can see the COMMIT.
        return (
            f"postgresql://postgres@127.0.0.1:{self.port}/{name}?sslmode=disable&gssencmode=disable"
        )

    def arm(self, mode: Mode) -> None:
        with self._lock:
            self.mode = mode
            self.fired.clear()

    def release(self) -> None:
        """Close the server sides kept open by ``hold``: the server rolls back."""
        for sock in self.held:
            _close(sock)
        self.held.clear()

    def close(self) -> None:
        self.release()
        _close(self.listener)
        for sock in self._sockets:
            _close(sock)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            self._sockets += [client, server]
            threading.Thread(target=self._to_server, args=(client, server), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client), daemon=True).start()

    def _to_server(self, client: socket.socket, server: socket.socket) -> None:
        while data := _recv(client):
            mode = None
            if COMMIT in data:
                with self._lock:
                    mode, self.mode = self.mode, None
            if mode is None:
                try:
                    server.sendall(data)
                except OSError:
                    break
                continue
            if mode == "after":
                with self._lock:
                    self._answer_dropped[server] = client
                server.sendall(data)
                return  # _pump cuts both sides once the server has answered
            if mode == "hold":
                self.held.append(server)
            self.fired.set()  # before the cut: the client may look at once
            _close(client)
            if mode != "hold":
                _close(server)
            return
        _close(server)

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        answered = b""
        while data := _recv(source):
            with self._lock:
                client = self._answer_dropped.get(source)
            if client is not None:
                answered += data
                if READY in answered:  # the COMMIT's answer, whole: dropped
                    self.fired.set()  # before the cut: the client may look at once
                    _close(client)
                    _close(source)
                    return
                continue
            try:
                sink.sendall(data)
            except OSError:
                break
        if source not in self.held:
            _close(sink)


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(65536)
    except OSError:
        return b""


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
