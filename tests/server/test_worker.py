"""The worker's exit statuses and its request bound, in process."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import socket
import time
from dataclasses import replace
from pathlib import Path

import anyio
import httpx
import pytest
from starlette.testclient import TestClient
from starlette.types import Message, Receive, Scope, Send

from trustpub.api.app import create_app
from trustpub.config import Settings
from trustpub.server import worker
from trustpub.server.worker import (
    EXIT_CONFIGURATION,
    EXIT_OK,
    Served,
    effective_max_connections,
    freeze_long_lived,
    run_worker,
)


def test_a_configuration_error_at_start_up_is_one_line_and_status_2(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The supervisor checks policies before starting workers; a worker can still meet a
    # broken directory (edited in between) and no last good set.
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "p.toml").write_text('[[policy]]\nname = "x"\n')
    settings = Settings(policy_dir=policies, data_dir=tmp_path / "data", registry_enabled=False)
    with socket.socket() as sock, caplog.at_level(logging.INFO):
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        status = run_worker(settings, sock)
    assert status == EXIT_CONFIGURATION
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    (line,) = errors
    assert line.getMessage().startswith("cannot start: ")
    assert "p.toml" in line.getMessage()
    assert line.name == "trustpub.server"


@pytest.mark.anyio
async def test_requests_past_the_bound_are_answered_503_at_once() -> None:
    entered, release = anyio.Event(), anyio.Event()

    async def slow(scope: Scope, receive: Receive, send: Send) -> None:
        entered.set()
        await release.wait()

    served = Served(slow, max_requests=1)
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:
        return {"type": "http.disconnect"}

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(served, {"type": "http"}, receive, send)
        await entered.wait()
        await served({"type": "http"}, receive, send)  # the second: over the bound
        assert sent[0]["status"] == 503
        assert (b"retry-after", b"1") in sent[0]["headers"]
        assert json.loads(sent[1]["body"])["errors"][0]["detail"]
        release.set()
    assert served.active == 0


def test_the_connection_cap_fits_the_descriptor_limit() -> None:
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert effective_max_connections(10**6) <= soft - 64 or soft == resource.RLIM_INFINITY
    assert effective_max_connections(16) == min(16, max(8, soft - 64))


def test_the_worker_serves_on_uvloop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # uvicorn applies Config.loop only in its own run(); the worker runs the server itself.
    import uvloop

    loops: list[type[asyncio.AbstractEventLoop]] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "lifespan"
        await receive()  # startup
        loops.append(type(asyncio.get_running_loop()))
        await send({"type": "lifespan.startup.complete"})
        assert worker._stop.server is not None
        worker._stop.server.should_exit = True
        await receive()  # shutdown
        await send({"type": "lifespan.shutdown.complete"})

    monkeypatch.setattr("trustpub.api.app.create_app", lambda settings, **_: app)
    settings = Settings(data_dir=tmp_path / "data", registry_enabled=False)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        status = run_worker(settings, sock)
    assert status == EXIT_OK
    assert loops == [uvloop.Loop]


def test_freezing_keeps_what_exists_out_of_the_collectors_passes() -> None:
    kept = [[i] for i in range(1000)]
    before = gc.get_freeze_count()
    try:
        freeze_long_lived()
        assert gc.get_freeze_count() >= before + len(kept)
        # Frozen objects are in no generation: no pass of the collector walks them.
        scanned = {id(o) for o in gc.get_objects()}
        assert not any(id(x) in scanned for x in kept)
    finally:
        gc.unfreeze()


@pytest.mark.parametrize("registry", [False, True])
def test_the_app_says_once_when_what_start_up_builds_is_built(
    tmp_path: Path, registry: bool
) -> None:
    (tmp_path / "policies").mkdir()
    settings = replace(
        Settings(),
        audience="trustpub-test",
        policy_dir=tmp_path / "policies",
        store_url=f"sqlite:///{tmp_path}/store.db",
        data_dir=tmp_path / "data",
        policy_reload_interval=0,
        registry_enabled=registry,
    )
    built: list[int] = []
    # No issuer is reachable here: key set fetches fail in the background, as offline.
    http = httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(404)))
    app = create_app(settings, http_client=http, on_built=lambda: built.append(1))
    with TestClient(app):
        for _ in range(500):  # with the registry, after the owner configs' index
            if built:
                break
            time.sleep(0.01)
        assert built == [1]
    assert built == [1]
