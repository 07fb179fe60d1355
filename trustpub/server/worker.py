"""One worker: the application under uvicorn on a socket the supervisor bound.

``run_worker`` serves until SIGTERM or SIGINT (graceful shutdown, bounded by
``server.shutdown_timeout``) and returns the process's exit status: 0 after a requested
stop, 2 for a configuration error found at start-up, 1 for any other failure. SIGHUP
reloads the policies in place (the application's lifespan installs that handler), so
connections and cached key sets survive it.

Run as ``python -m trustpub.server.worker`` by the supervisor, which passes the listening
socket's descriptor in ``TRUSTPUB_LISTEN_FD`` and its own pid in
``TRUSTPUB_SUPERVISOR_PID``: the worker asks the kernel to send it SIGTERM when the
supervisor dies (``PR_SET_PDEATHSIG``), so workers never outlive it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
import sys
import time
from typing import TYPE_CHECKING

import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from trustpub.errors import ConfigurationError
from trustpub.server.protocol import ConnectionLimits, guarded_protocol

if TYPE_CHECKING:
    from trustpub.config import Settings

log = logging.getLogger("trustpub.server")

LISTEN_FD = "TRUSTPUB_LISTEN_FD"
SUPERVISOR_PID = "TRUSTPUB_SUPERVISOR_PID"

EXIT_OK, EXIT_FAILURE, EXIT_CONFIGURATION = 0, 1, 2

_BUSY = b'{"errors":[{"detail":"The service is busy; retry shortly."}]}'


class Served:
    """The application as the worker serves it: at most ``max_requests`` at once (past
    that, a 503 at once instead of a queue), and start-up configuration errors kept, so
    the worker can exit with status 2 and one line instead of a traceback."""

    def __init__(self, app: ASGIApp, max_requests: int) -> None:
        self.app = app
        self.max_requests = max_requests
        self.active = 0
        self.configuration_error: ConfigurationError | None = None
        self._last_busy_log = 0.0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        if self.active >= self.max_requests:
            await self._busy(send)
            return
        self.active += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.active -= 1

    async def _busy(self, send: Send) -> None:
        now = time.monotonic()
        if now - self._last_busy_log >= 1.0:  # at most a line a second under a flood
            self._last_busy_log = now
            log.warning(
                "request limit reached: answering 503",
                extra={"fields": {"max_requests": self.max_requests}},
            )
        await send(
            {
                "type": "http.response.start",
                "status": 503,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"retry-after", b"1"),
                    (b"content-length", str(len(_BUSY)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": _BUSY})

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_quietly(message: Message) -> None:
            if message["type"] == "lifespan.startup.complete":
                log.info("worker ready", extra={"fields": {"pid": os.getpid()}})
            elif message["type"] == "lifespan.startup.failed":
                exc = sys.exc_info()[1]  # the exception the application is reporting
                if isinstance(exc, ConfigurationError):
                    self.configuration_error = exc
                    message = {**message, "message": ""}  # one line, from run_worker
            await send(message)

        try:
            await self.app(scope, receive, send_quietly)
        except ConfigurationError as exc:
            self.configuration_error = exc


def freeze_long_lived() -> None:
    """Keep what exists now out of the cyclic garbage collector's passes, for the rest of
    the process's life. Called once start-up has built the policies and the owner
    configs' index: at 100,000 policies a full pass over them took 90 ms (measured
    with ``gc.collect()`` after loading them), a stall every request in flight then
    waits for. Garbage is collected first, so none of it is kept."""
    gc.collect()
    gc.freeze()


def server_config(settings: Settings, app: ASGIApp) -> uvicorn.Config:
    limits = settings.server
    return uvicorn.Config(
        app,
        http=guarded_protocol(
            ConnectionLimits(
                head_timeout=limits.head_timeout,
                body_timeout=limits.body_timeout,
                max_connections=effective_max_connections(limits.max_connections),
            ),
            limits.http,
        ),
        loop=event_loop(),
        ws="none",
        lifespan="on",
        log_config=None,
        access_log=False,
        server_header=False,
        proxy_headers=False,  # trustpub.web.forwarded decides, for trusted proxies only
        timeout_keep_alive=limits.keep_alive_timeout,
        timeout_graceful_shutdown=limits.shutdown_timeout,
    )


def event_loop() -> str:
    """uvloop (libuv) where it is installed, a dependency on every platform it supports:
    the same asyncio API at about half the per-request cost of the event loop and its
    sockets (bench/RESULTS.md); else asyncio's own loop."""
    import importlib.util

    return "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"


# Descriptors a worker needs besides its client connections: the listening socket, the
# event loop, stores and their pools, key set fetches, log and data files.
RESERVED_DESCRIPTORS = 64


def effective_max_connections(configured: int) -> int:
    """``configured``, lowered to fit the process's descriptor limit, so that the cap
    (which makes room by closing idle connections) bites before ``accept()`` fails."""
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, OSError, ValueError):
        return configured
    if soft == resource.RLIM_INFINITY:
        return configured
    return max(8, min(configured, soft - RESERVED_DESCRIPTORS))


class _DropStartupFailure(logging.Filter):
    def __init__(self, served: Served) -> None:
        super().__init__()
        self.served = served

    def filter(self, record: logging.LogRecord) -> bool:
        return self.served.configuration_error is None or record.levelno < logging.ERROR


class _Stop:
    """A stop requested by SIGTERM or SIGINT, before or while uvicorn serves."""

    requested = False
    server: uvicorn.Server | None = None

    def __call__(self, signum: int, frame: object) -> None:
        self.requested = True
        if self.server is not None:
            self.server.should_exit = True


_stop = _Stop()


def stop_requested() -> bool:
    return _stop.requested


def install_stop_handlers() -> None:
    """Catch a stop from the process's first moment: a signal that arrives before uvicorn
    installs its own handlers (or after it restored ours and raised the signal again,
    which it does once it has shut down) stops the server instead of killing the
    process, so that it exits with its own status."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _stop)


def run_worker(settings: Settings, sock: socket.socket) -> int:
    """Serve on ``sock`` until told to stop; the exit status."""
    from trustpub.api.app import create_app

    try:
        served = Served(
            create_app(settings, on_built=freeze_long_lived), settings.server.max_requests
        )
    except ConfigurationError as exc:
        log.error(f"cannot start: {exc.detail}")
        return EXIT_CONFIGURATION
    server = uvicorn.Server(server_config(settings, served))
    # Its "Application startup failed" would be a second line for one configuration error.
    quiet = _DropStartupFailure(served)
    logging.getLogger("uvicorn.error").addFilter(quiet)
    _stop.server = server
    server.should_exit = _stop.requested
    try:
        # The loop the configuration names (uvicorn applies it only in its own run()).
        with asyncio.Runner(loop_factory=server.config.get_loop_factory()) as runner:
            runner.run(server.serve(sockets=[sock]))
    except SystemExit:  # uvicorn's way to say the application failed to start
        pass
    except Exception:
        log.exception("the server failed")
        return EXIT_FAILURE
    finally:
        logging.getLogger("uvicorn.error").removeFilter(quiet)
    if served.configuration_error is not None:
        log.error(f"cannot start: {served.configuration_error.detail}")
        return EXIT_CONFIGURATION
    if not server.started:
        log.error("cannot start: the application failed to start (see above)")
        return EXIT_FAILURE
    return EXIT_OK


def _die_with_supervisor(supervisor: int) -> None:
    """SIGTERM when the supervisor dies; exit now if it already has."""
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != supervisor:  # it died before the request above took effect
        raise SystemExit(EXIT_FAILURE)


def main() -> int:
    from trustpub.config import load_settings
    from trustpub.logs import configure

    install_stop_handlers()
    _die_with_supervisor(int(os.environ[SUPERVISOR_PID]))
    # Until the application installs its SIGHUP handler, a reload must not kill us.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        settings = load_settings()
    except ConfigurationError as exc:
        configure()
        log.error(f"cannot start: {exc.detail}")
        return EXIT_CONFIGURATION
    configure(settings.log_level)
    sock = socket.socket(fileno=int(os.environ[LISTEN_FD]))
    return run_worker(settings, sock)


if __name__ == "__main__":
    sys.exit(main())
