"""The delivery worker's loop (``OutboxWorker.run_forever``): a storage outage or a
failing pass is logged and the next pass still runs, on the poll interval."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import anyio
import anyio.from_thread
import httpx
import pytest

from trustpub.notify.outbox import OutboxWorker
from trustpub.notify.settings import NotificationSettings
from trustpub.registry.db import RegistryDB
from trustpub.registry.db.errors import StorageUnavailable

pytestmark = pytest.mark.anyio


class FlakyDB(RegistryDB):
    """A real registry database whose first two listings of due deliveries fail: an
    outage, then a bug; the third pass lists (nothing) and ends the test."""

    def __init__(self, location: Path) -> None:
        super().__init__(location)
        self.passes = 0
        self.third = anyio.Event()

    def outbox_due(self, lease: int, limit: int) -> list[int]:
        self.passes += 1
        if self.passes == 1:
            raise StorageUnavailable("database is locked")
        if self.passes == 2:
            raise RuntimeError("a bug in one pass")
        # Called in a worker thread (anyio.to_thread): set the event on the loop.
        anyio.from_thread.run_sync(self.third.set)
        return super().outbox_due(lease, limit)


async def test_the_loop_survives_an_outage_and_a_failing_pass(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = FlakyDB(tmp_path / "registry.db")
    db.open()
    settings = replace(NotificationSettings(), poll_interval=0.05)
    caplog.set_level(logging.WARNING, logger="trustpub.notify")
    try:
        async with httpx.AsyncClient() as http, anyio.create_task_group() as group:
            group.start_soon(OutboxWorker(db, settings, http).run_forever)
            with anyio.fail_after(30):
                await db.third.wait()
            group.cancel_scope.cancel()
    finally:
        db.close()
    assert db.passes >= 3
    messages = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert (logging.WARNING, "outbox: storage unavailable") in messages
    assert (logging.ERROR, "outbox: delivery pass failed") in messages
    outage = next(r for r in caplog.records if r.getMessage() == "outbox: storage unavailable")
    assert outage.fields == {"reason": "database is locked"}  # type: ignore[attr-defined]
    failed = next(r for r in caplog.records if r.getMessage() == "outbox: delivery pass failed")
    assert failed.exc_info is not None
    assert isinstance(failed.exc_info[1], RuntimeError)
