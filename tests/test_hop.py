"""trustpub.hop: blocking calls in a thread of one's own, with anyio's semantics."""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections.abc import Callable

import pytest

from trustpub.hop import Hop, _answer


@pytest.mark.anyio
async def test_a_call_runs_in_the_hop_s_thread_and_returns_its_value() -> None:
    hop = Hop("test-hop")
    try:
        names = [await hop.run(lambda: threading.current_thread().name) for _ in range(3)]
        assert names == ["test-hop"] * 3
        assert await hop.run(lambda: 42) == 42
    finally:
        hop.close()


@pytest.mark.anyio
async def test_what_the_call_raises_is_raised_to_its_caller() -> None:
    hop = Hop("test-hop")

    def fail() -> None:
        raise KeyError("gone")

    try:
        with pytest.raises(KeyError, match="gone"):
            await hop.run(fail)
        assert await hop.run(lambda: "still serving") == "still serving"
    finally:
        hop.close()


@pytest.mark.anyio
async def test_a_cancelled_caller_waits_for_its_call_to_end() -> None:
    hop = Hop("test-hop")
    started, release = threading.Event(), threading.Event()
    ended: list[bool] = []

    def slow() -> None:
        started.set()
        release.wait(10)
        ended.append(True)

    try:
        task = asyncio.ensure_future(hop.run(slow))
        assert await asyncio.to_thread(started.wait, 10)
        task.cancel()
        await asyncio.sleep(0.02)
        assert not task.done()  # still waiting for the call
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert ended == [True]
    finally:
        hop.close()


@pytest.mark.anyio
async def test_calls_run_one_at_a_time_in_order() -> None:
    hop = Hop("test-hop")
    seen: list[int] = []

    def record(n: int) -> int:
        seen.append(n)
        time.sleep(0.001)
        return n

    try:
        results = await asyncio.gather(*(hop.run(functools.partial(record, n)) for n in range(20)))
        assert results == list(range(20))
        assert seen == list(range(20))
    finally:
        hop.close()


def test_close_ends_the_thread_and_the_hop_can_start_again() -> None:
    hop = Hop("test-hop-close")
    assert asyncio.run(hop.run(lambda: 6)) == 6
    hop.close()
    assert not any(t.name == "test-hop-close" for t in threading.enumerate())
    assert asyncio.run(hop.run(lambda: 7)) == 7
    hop.close()
    hop.close()  # idempotent


def test_an_answer_for_a_closed_loop_is_dropped_quietly() -> None:
    loop = asyncio.new_event_loop()
    answered: list[object] = []
    loop.close()
    _answer(loop, lambda value, error: answered.append(value), 1, None)  # no error raised
    assert answered == []


@pytest.mark.anyio
async def test_submit_calls_back_on_the_loop_with_what_the_call_raised() -> None:
    hop = Hop("test-hop")
    outcomes: list[tuple[str, BaseException | None]] = []
    done = asyncio.Event()

    def fail() -> None:
        raise KeyError("gone")

    def record(name: str) -> Callable[[BaseException | None], None]:
        def called(error: BaseException | None) -> None:
            outcomes.append((threading.current_thread().name, error))
            if len(outcomes) == 2:
                done.set()

        return called

    try:
        hop.submit(lambda: 1, record("ok"))
        hop.submit(fail, record("fail"))
        await asyncio.wait_for(done.wait(), 10)
        loop_thread = threading.current_thread().name
        assert [name for name, _ in outcomes] == [loop_thread, loop_thread]
        assert outcomes[0][1] is None
        assert isinstance(outcomes[1][1], KeyError)
    finally:
        hop.close()
