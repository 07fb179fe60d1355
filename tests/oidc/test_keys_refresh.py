"""Key refresh against a real HTTP key server on loopback that hangs or fails.

No wall-clock assertions: the key sets run on a fake clock, and "did not wait" is shown
by the server still holding the refresh request when the request for a key returns.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.conftest import SigningKey, make_signing_key
from tests.oidc.conftest import FakeClock
from trustpub.errors import KeySetUnavailable
from trustpub.oidc.issuers import Issuer
from trustpub.oidc.keys import KeySets

pytestmark = pytest.mark.anyio

KID = "local-key"


class KeyServer:
    """A minimal HTTP/1.1 issuer on 127.0.0.1: discovery document and key set.

    ``mode`` is ``ok``, ``fail`` (HTTP 500) or ``hang`` (holds the request until
    ``release()``, then answers as ``ok``).
    """

    def __init__(self, key: SigningKey) -> None:
        self.key = key
        self.mode = "ok"
        self.requests: list[str] = []
        self.held = asyncio.Event()  # a request is being held
        self._release = asyncio.Event()
        self._server: asyncio.Server | None = None
        self.url = ""

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        self._release.set()
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    def release(self) -> None:
        self.mode = "ok"
        self._release.set()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                path = head.split(b" ", 2)[1].decode()
                self.requests.append(path)
                if self.mode == "hang":
                    self.held.set()
                    await self._release.wait()
                if self.mode == "fail":
                    await self._send(writer, 500, b"{}")
                    continue
                body: dict[str, object]
                if path.endswith("/openid-configuration"):
                    body = {"issuer": self.url, "jwks_uri": f"{self.url}/.well-known/jwks"}
                else:
                    body = {"keys": [self.key.jwk()]}
                await self._send(writer, 200, json.dumps(body).encode())
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    @staticmethod
    async def _send(writer: asyncio.StreamWriter, status: int, body: bytes) -> None:
        writer.write(
            f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        await writer.drain()

    @property
    def discoveries(self) -> int:
        return sum(1 for path in self.requests if path.endswith("/openid-configuration"))


@pytest.fixture
async def key_server() -> AsyncIterator[KeyServer]:
    server = KeyServer(make_signing_key(KID))
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(trust_env=False) as client:
        yield client


def local_issuer(server: KeyServer) -> Issuer:
    return Issuer(server.url, "github", development=True)


async def test_a_hanging_key_server_does_not_stall_requests_while_stale_keys_serve(
    key_server: KeyServer, http: httpx.AsyncClient
) -> None:
    clock = FakeClock(1000.0)
    # A long fetch timeout: had a request waited for the refresh, it would still be
    # waiting (or the refresh would have been given up) when the checks below run.
    keys = KeySets(http, max_age=60, max_stale=3600, timeout=300, clock=clock)
    issuer = local_issuer(key_server)
    first = await keys.get_key(issuer, KID)
    key_server.mode = "hang"
    clock.advance(61)  # the set is now stale, still usable

    assert await keys.get_key(issuer, KID) is first
    await key_server.held.wait()  # the background refresh reached the server and hangs
    for _ in range(5):
        assert await keys.get_key(issuer, KID) is first
        assert keys.ready(issuer) is True
    # Every answer above came while the refresh was still held: nobody waited for it,
    # and it was not started again by each request.
    status = keys.status(issuer)
    assert status.refreshing is True
    assert key_server.discoveries == 2

    key_server.release()
    await keys.settle()
    status = keys.status(issuer)
    assert (status.refreshing, status.age, status.failures) == (False, 0.0, 0)
    await keys.aclose()


async def test_readiness_answers_from_the_cache_while_the_first_fetch_hangs(
    key_server: KeyServer, http: httpx.AsyncClient
) -> None:
    keys = KeySets(http, timeout=300, clock=FakeClock(1000.0))
    issuer = local_issuer(key_server)
    key_server.mode = "hang"
    assert keys.ready(issuer) is False  # starts a fetch, does not wait for it
    await key_server.held.wait()
    assert keys.ready(issuer) is False
    assert keys.status(issuer).refreshing is True
    assert key_server.discoveries == 1  # the second call joined, it did not fetch again
    key_server.release()
    await keys.settle()
    assert keys.ready(issuer) is True


async def test_a_failing_key_server_is_retried_with_exponential_back_off(
    key_server: KeyServer, http: httpx.AsyncClient
) -> None:
    clock = FakeClock(1000.0)
    keys = KeySets(http, backoff_base=2, backoff_max=8, clock=clock)
    issuer = local_issuer(key_server)
    key_server.mode = "fail"
    with pytest.raises(KeySetUnavailable, match=r"^Failed to load OIDC key set$"):
        await keys.get_key(issuer, KID)
    assert key_server.discoveries == 1
    for delay in (2, 4, 8, 8):  # doubling, capped at backoff_max
        clock.advance(delay - 0.5)
        with pytest.raises(KeySetUnavailable):
            await keys.get_key(issuer, KID)
        assert keys.ready(issuer) is False
        attempts = key_server.discoveries  # nothing fetched inside the back-off
        clock.advance(0.5)
        with pytest.raises(KeySetUnavailable):
            await keys.get_key(issuer, KID)
        assert key_server.discoveries == attempts + 1
    assert keys.status(issuer).failures == 5
    assert keys.status(issuer).last_error == "discovery document returned HTTP 500"

    key_server.mode = "ok"
    clock.advance(8)
    assert await keys.get_key(issuer, KID) is not None
    assert keys.status(issuer).failures == 0


async def test_aclose_cancels_a_hanging_refresh(
    key_server: KeyServer, http: httpx.AsyncClient
) -> None:
    keys = KeySets(http, timeout=300, clock=FakeClock(1000.0))
    issuer = local_issuer(key_server)
    key_server.mode = "hang"
    keys.ready(issuer)
    await key_server.held.wait()
    await keys.aclose()
    assert keys.status(issuer).refreshing is False
