"""``trustpub serve``'s process model: bind, announce, run the workers, watch them.

uvicorn's own supervisor (``--workers``, uvicorn 0.54) was measured unfit:

- a worker that dies while a policy file is broken cannot be restarted (the new one
  refuses the file), and the supervisor then stops and exits 0, so a service manager
  that restarts on failure never brings the service back;
- SIGHUP restarts every worker instead of reloading in place: cached key sets are lost
  and connections dropped;
- workers outlive a supervisor killed outright, still serving the port.

This one is small and does only what is listed here:

- The socket is bound here, once, and handed to every worker (``pass_fds``); "serving"
  is announced only once it is bound.
- N = 1 runs the worker in this process. N > 1 starts N ``python -m
  trustpub.server.worker`` processes, which die with this one (``PR_SET_PDEATHSIG``).
- A worker that exits is started again: at once if it had run for a while, with a
  growing delay (0.5 s, 1 s, ... up to 10 s) if it keeps failing at start, and after 5
  failures in a row the service stops with status 1. A worker that stops on a
  configuration error (status 2) stops the service with status 2: restarting would not
  fix it.
- SIGHUP is passed to every worker, which reloads its policies in place.
- SIGTERM or SIGINT: every worker gets SIGTERM and shuts down gracefully within
  ``server.shutdown_timeout``; one still running 5 s after that is killed. Status 0.

Exit statuses: 0 stopped on request, 1 failure, 2 configuration error.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from trustpub.metrics import worker_exited
from trustpub.server.worker import (
    EXIT_CONFIGURATION,
    EXIT_FAILURE,
    EXIT_OK,
    LISTEN_FD,
    SUPERVISOR_PID,
    install_stop_handlers,
    run_worker,
    stop_requested,
)

if TYPE_CHECKING:
    from trustpub.config import Settings

log = logging.getLogger("trustpub.server")

QUICK_FAILURE = 10.0  # a worker that exits sooner than this after its start "failed at start"
MAX_QUICK_FAILURES = 5
KILL_GRACE = 5.0


class BindError(Exception):
    """The listening socket cannot be bound; the message says why."""


def bind(host: str, port: int, backlog: int = 2048) -> socket.socket:
    """The listening socket, bound and listening (inheritable by worker processes)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise BindError(f"listen: cannot resolve {host!r}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise BindError(f"listen: cannot bind {host}:{port}: {exc.strerror}") from None
    sock.set_inheritable(True)
    return sock


@dataclass
class Slot:
    """One worker position: its current process and its run of failed starts."""

    index: int
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    failures: int = 0
    restart_at: float = 0.0


@dataclass
class Supervisor:
    settings: Settings
    sock: socket.socket
    workers: int
    slots: list[Slot] = field(default_factory=list)
    _stop: bool = False
    _reload: bool = False

    def run(self) -> int:
        wake_read, wake_write = os.pipe()
        os.set_blocking(wake_write, False)
        signal.set_wakeup_fd(wake_write)
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_hup)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)  # wakes the loop
        self._stop = stop_requested()  # a SIGTERM before these handlers
        self.slots = [Slot(i) for i in range(self.workers)]
        try:
            for slot in self.slots:
                self._start(slot)
            status = self._watch(wake_read)
        finally:
            self._stop_all()
            signal.set_wakeup_fd(-1)
            os.close(wake_read)
            os.close(wake_write)
        return status

    def _on_stop(self, signum: int, frame: object) -> None:
        self._stop = True

    def _on_hup(self, signum: int, frame: object) -> None:
        self._reload = True

    def _start(self, slot: Slot) -> None:
        env = {
            **os.environ,
            LISTEN_FD: str(self.sock.fileno()),
            SUPERVISOR_PID: str(os.getpid()),
        }
        slot.process = subprocess.Popen(
            [sys.executable, "-m", "trustpub.server.worker"],
            pass_fds=(self.sock.fileno(),),
            env=env,
        )
        slot.started = time.monotonic()
        log.info(
            "worker started", extra={"fields": {"worker": slot.index, "pid": slot.process.pid}}
        )

    def _watch(self, wake: int) -> int:
        while True:
            pending = [s.restart_at for s in self.slots if s.process is None]
            timeout = max(0.0, min(pending) - time.monotonic()) if pending else 5.0
            try:
                ready, _, _ = select.select([wake], [], [], min(timeout, 5.0))
            except InterruptedError:  # pragma: no cover - PEP 475 retries select itself
                ready = []
            if ready:
                os.read(wake, 512)  # drain; the flags say which signals came
            if self._stop:
                log.info("stopping: shutting the workers down")
                return EXIT_OK
            if self._reload:
                self._reload = False
                log.info("SIGHUP: reloading policies in every worker")
                for slot in self.slots:
                    if slot.process is not None and slot.process.poll() is None:
                        slot.process.send_signal(signal.SIGHUP)
            status = self._reap()
            if status is not None:
                return status

    def _reap(self) -> int | None:
        """Start again the workers that exited; a status if the service must stop."""
        now = time.monotonic()
        for slot in self.slots:
            process = slot.process
            if process is None:
                if now >= slot.restart_at:
                    self._start(slot)
                continue
            code = process.poll()
            if code is None:
                continue
            slot.process = None
            worker_exited(process.pid)  # its per-worker process metrics go with it
            fields = {"worker": slot.index, "pid": process.pid, "status": code}
            if code == EXIT_CONFIGURATION:
                log.error("worker stopped on a configuration error", extra={"fields": fields})
                return EXIT_CONFIGURATION
            if now - slot.started < QUICK_FAILURE:
                slot.failures += 1
            else:
                slot.failures = 0
            if slot.failures >= MAX_QUICK_FAILURES:
                log.error(
                    "worker keeps failing at start; stopping the service",
                    extra={"fields": {**fields, "failures": slot.failures}},
                )
                return EXIT_FAILURE
            delay = min(0.5 * 2 ** (slot.failures - 1), 10.0) if slot.failures else 0.0
            log.error(
                "worker exited; starting it again", extra={"fields": {**fields, "in_s": delay}}
            )
            slot.restart_at = now + delay
            if delay == 0.0:
                self._start(slot)
        return None

    def _stop_all(self) -> None:
        running = [s.process for s in self.slots if s.process is not None]
        for process in running:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.settings.server.shutdown_timeout + KILL_GRACE
        for process in running:
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error(
                    "worker did not stop in time: killed", extra={"fields": {"pid": process.pid}}
                )
                process.kill()
                process.wait()


def serve(settings: Settings, workers: int, announce: str) -> int:
    """Bind, announce, serve until stopped; the exit status."""
    install_stop_handlers()  # the supervisor installs its own once it runs
    # Until a handler is installed (the application's, or the supervisor's), a SIGHUP
    # must not end the process: the policies are read at start anyway.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        sock = bind(settings.host, settings.port)
    except BindError as exc:
        log.error(f"cannot start: {exc}")
        return EXIT_FAILURE
    log.info(announce, extra={"fields": {"workers": workers, "pid": os.getpid()}})
    try:
        if workers == 1:
            return run_worker(settings, sock)
        return Supervisor(settings, sock, workers).run()
    finally:
        sock.close()
