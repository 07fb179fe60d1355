"""A thread of one's own for blocking calls on a hot path: ``Hop.run(fn)``.

The SQLite store commits each batch of exchanges in a worker thread: a hop per batch.
``anyio.to_thread.run_sync`` costs 108 us of CPU per hop on the benchmark machine (its
capacity limiter, its thread pool's bookkeeping, a cancel scope),
``loop.run_in_executor`` 85 us; a thread of one's own fed through a
``queue.SimpleQueue``, answering through ``loop.call_soon_threadsafe``, 23 us (a loop of
5,000 hops of a function that returns at once, under uvloop). The callers of a ``Hop``
were serialised anyway (the store's lock), so one thread loses nothing.

Semantics kept from ``anyio.to_thread.run_sync`` (not cancellable): a caller cancelled
while its function runs waits for the function to end, then is cancelled; what the
function raises is raised to the caller. The thread starts on first use and ends with
``close``, which waits for what was queued before it.

``submit`` is the same hop with a callback, called on the loop as soon as the function
has run: a turn of the loop sooner than an awaiting task is woken, which under load is
milliseconds (the SQLite store's batches, where every turn a batch waits is a turn its
callers wait).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

# Called on the loop with (value, error) once the function has run.
_Done = Callable[[Any, BaseException | None], None]
_Job = tuple[Callable[[], Any], asyncio.AbstractEventLoop, _Done]


class Hop:
    def __init__(self, name: str) -> None:
        self._name = name
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    async def run(self, fn: Callable[[], T]) -> T:
        """``fn()`` in this hop's thread; its value, or what it raised."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[T] = loop.create_future()

        def settle(value: T, error: BaseException | None) -> None:
            if done.done():
                return
            if error is not None:
                done.set_exception(error)
            else:
                done.set_result(value)

        self._put((fn, loop, settle))
        try:
            return await asyncio.shield(done)
        except asyncio.CancelledError:
            # As anyio's: the call runs to its end whatever happens to its caller, who
            # is told (cancelled) once it has.
            if not done.done():
                with contextlib.suppress(BaseException):
                    await done
            raise

    def submit(
        self, fn: Callable[[], object], done: Callable[[BaseException | None], None]
    ) -> None:
        """Run ``fn()`` in this hop's thread, then ``done(error)`` on the calling event
        loop as soon as it has (``error``: what ``fn`` raised, else None). Nothing is
        called if the loop has closed meanwhile."""
        self._put((fn, asyncio.get_running_loop(), lambda value, error: done(error)))

    def _put(self, job: _Job) -> None:
        if self._thread is None:
            with self._start_lock:
                if self._thread is None:
                    thread = threading.Thread(target=self._serve, name=self._name, daemon=True)
                    thread.start()
                    self._thread = thread
        self._jobs.put(job)

    def _serve(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            fn, loop, done = job
            try:
                value = fn()
            except BaseException as exc:  # given to the caller, not raised here
                _answer(loop, done, None, exc)
            else:
                _answer(loop, done, value, None)

    def close(self) -> None:
        """End the thread once what is queued has run (blocking; idempotent)."""
        with self._start_lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._jobs.put(None)
            if thread is not threading.current_thread():
                thread.join()


def _answer(
    loop: asyncio.AbstractEventLoop, done: _Done, value: object, error: BaseException | None
) -> None:
    # A closed loop has no one left to answer.
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(done, value, error)
