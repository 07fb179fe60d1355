"""What the hardened server costs per request, measured without a network.

    .venv/bin/python bench/server_overhead.py [--requests 20000] [--repeats 5]

On a machine shared with other work, wrk's throughput varies by more than the 5 %
budget of the connection limits (issue 9), so their cost is measured where it is spent:
CPU time per request of

- uvicorn's ``H11Protocol`` against ``GuardedH11Protocol``, and its
  ``HttpToolsProtocol`` against ``GuardedHttpToolsProtocol`` (trustpub/server/protocol.py),
  each driving the same trivial application over a keep-alive connection with an
  in-memory transport;
- the application bare against wrapped in ``Served`` (the request bound);
- the access log's per-request additions: request id, user agent, client address.

Each pair alternates ``--repeats`` times and the best run of each counts (the least
disturbed by other processes). Compare the added microseconds with the CPU time of one
exchange (bench/RESULTS.md: about 500 us at 1969 req/s on one saturated core).
"""

from __future__ import annotations

import argparse
import asyncio
import time
import timeit
from collections.abc import Callable
from typing import Any

from starlette.types import Receive, Scope, Send
from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from trustpub.api.access import request_id, user_agent
from trustpub.server.protocol import ConnectionLimits, guarded_protocol
from trustpub.server.worker import Served
from trustpub.web.forwarded import ClientAddress

REQUEST = b"POST /api/v1/trusted_publishing/tokens HTTP/1.1\r\nHost: bench\r\n" + (
    b"User-Agent: cargo/1.90.0\r\nContent-Type: application/json\r\nContent-Length: 12\r\n\r\n"
    b'{"jwt": "x"}'
)


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    await receive()
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
    )
    await send({"type": "http.response.body", "body": b"{}"})


class Transport(asyncio.Transport):
    """Enough of a transport for uvicorn's protocol: counts the responses written."""

    def __init__(self) -> None:
        super().__init__()
        self.responses = 0
        self.done: asyncio.Event = asyncio.Event()
        self.closing = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8080), "peername": ("127.0.0.1", 40000)}.get(
            name, default
        )

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if bytes(data).endswith(b"{}"):
            self.responses += 1
            self.done.set()

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def drive(protocol_class: Callable[..., Any], requests: int) -> float:
    """CPU seconds per request over one keep-alive connection."""
    config = Config(app, http="h11", lifespan="off", log_config=None, access_log=False)
    config.load()
    protocol = protocol_class(config=config, server_state=ServerState(), app_state={})
    transport = Transport()
    protocol.connection_made(transport)
    started = time.process_time()
    for _ in range(requests):
        transport.done.clear()
        protocol.data_received(REQUEST)
        await transport.done.wait()
    elapsed = time.process_time() - started
    protocol.connection_lost(None)
    return elapsed / requests


async def drive_app(asgi: Any, requests: int) -> float:
    scope = {"type": "http", "method": "POST", "path": "/", "headers": []}
    sent: list[Any] = []

    async def receive() -> Any:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    started = time.process_time()
    for _ in range(requests):
        await asgi(scope, receive, send)
    sent.clear()
    return (time.process_time() - started) / requests


def best_pair(
    first: Callable[[], float], second: Callable[[], float], repeats: int
) -> tuple[float, float]:
    a, b = [], []
    for _ in range(repeats):
        a.append(first())
        b.append(second())
    return min(a), min(b)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    n, repeats = args.requests, args.repeats
    limits = ConnectionLimits(10, 15, 1024)
    guarded = guarded_protocol(limits, "h11")
    guarded_ht = guarded_protocol(limits, "httptools")

    plain_us, guarded_us = (
        x * 1e6
        for x in best_pair(
            lambda: asyncio.run(drive(H11Protocol, n)),
            lambda: asyncio.run(drive(guarded, n)),
            repeats,
        )
    )
    plain_ht_us, guarded_ht_us = (
        x * 1e6
        for x in best_pair(
            lambda: asyncio.run(drive(HttpToolsProtocol, n)),
            lambda: asyncio.run(drive(guarded_ht, n)),
            repeats,
        )
    )
    bare_us, served_us = (
        x * 1e6
        for x in best_pair(
            lambda: asyncio.run(drive_app(app, n)),
            lambda: asyncio.run(drive_app(Served(app, 256), n)),
            repeats,
        )
    )
    headers = [
        (b"host", b"bench"),
        (b"user-agent", b"cargo/1.90.0 (2025-09-14)"),
        (b"x-request-id", b"ci-run-42"),
        (b"x-forwarded-for", b"203.0.113.9"),
    ]
    resolver = ClientAddress(["127.0.0.1"])
    scope = {"client": ("127.0.0.1", 40000), "headers": headers}

    def access_additions() -> None:
        request_id(headers[:2])  # none sent: a new one is generated
        user_agent(headers)
        resolver.resolve(scope)

    access_us = min(timeit.repeat(access_additions, number=n, repeat=repeats)) / n * 1e6
    print(f"requests per run {n}, best of {repeats} alternating runs, CPU time per request:")
    print(f"  uvicorn H11Protocol        {plain_us:4.1f} us")
    print(f"  GuardedH11Protocol         {guarded_us:4.1f} us  (+{guarded_us - plain_us:.1f} us)")
    print(f"  uvicorn HttpToolsProtocol  {plain_ht_us:4.1f} us")
    print(
        f"  GuardedHttpToolsProtocol   {guarded_ht_us:4.1f} us"
        f"  (+{guarded_ht_us - plain_ht_us:.1f} us)"
    )
    print(f"  app bare                {bare_us:7.1f} us")
    print(f"  app in Served           {served_us:7.1f} us  (+{served_us - bare_us:.1f} us)")
    print(f"  access log additions    {access_us:7.1f} us  (trusted proxy and X-Forwarded-For)")
    added = (guarded_us - plain_us) + (served_us - bare_us) + access_us
    print(f"  total added             {added:7.1f} us per request")


if __name__ == "__main__":
    main()
