"""Download counts per version and day, kept without slowing the downloads down.

A download adds 1 to a count in memory (``DownloadCounter.count``: a dict update, no
I/O, no lock, no metric call; it always runs on the event loop, as the counter's
other methods do). The counts are written in batches by ``run_forever``, a task of the
registry's lifespan: every ``interval`` seconds, sooner once ``batch`` downloads wait,
and a last time at shutdown; each batch is ONE write transaction
(``RegistryDB.add_downloads``: an upsert per (version, day), the totals of versions
and crates with it). Each worker process keeps its own batch; their transactions add
up in the database.

What can go wrong, and what it costs:

- The database is down: the flush fails, and its counts are kept for the next one
  (added to those counted meanwhile); a download never waits for the database because
  of its count, nor fails because of it.
- Memory is bounded: at most ``max_keys`` distinct (version, day) pairs wait (twice
  that while a batch is being written). A count that needs a new pair beyond that is
  dropped; so are counts for a version deleted before they were written. Drops are
  logged (once per flush, with the number) and counted in
  ``trustpub_registry_download_counts_total{stage="dropped"}``.
- A crash (kill -9, power loss) loses what was not written yet: at most one interval's
  counts of that worker. A clean stop writes them.

The metric's stages: every successful download is ``counted``, then ``flushed`` or
``dropped`` (what is neither waits in memory). ``counted`` and ``dropped`` are
published at each flush, not at each download: a Prometheus update per download would
cost more than the count.

Hand-written: "aggregate in memory, write in batches" is a dict and a loop here; a
task queue or a metrics pipeline would add a service to run for it.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import anyio
import anyio.to_thread

from trustpub.metrics import RegistryMetrics
from trustpub.registry.db import RegistryDB, StorageUnavailable

log = logging.getLogger("trustpub.registry")

DAY = 86_400
#: The window of ``recent_downloads`` and of the downloads endpoints, today included.
RECENT_DAYS = 90


def utc_day(timestamp: float) -> str:
    """The UTC day of a unix time, as 'YYYY-MM-DD'."""
    return time.strftime("%Y-%m-%d", time.gmtime(timestamp))


def recent_window(now: float) -> tuple[str, str]:
    """The first and last day (today) of the ``RECENT_DAYS`` days ending ``now``."""
    return utc_day(now - (RECENT_DAYS - 1) * DAY), utc_day(now)


@dataclass(frozen=True, slots=True)
class FlushPolicy:
    """When counts are written: every ``interval`` seconds, or once ``batch``
    downloads wait; ``max_keys``: the (version, day) pairs kept while they cannot be
    written."""

    interval: float = 10.0
    batch: int = 10_000
    max_keys: int = 100_000

    def __post_init__(self) -> None:
        if not (math.isfinite(self.interval) and self.interval > 0):
            raise ValueError(
                f"interval: expected a positive number of seconds, got {self.interval}"
            )
        if self.batch < 1 or self.max_keys < 1:
            raise ValueError(
                f"batch and max_keys: expected at least 1, got {self.batch} and {self.max_keys}"
            )


class DownloadCounter:
    """One worker's download counts, waiting to be written (see the module docstring)."""

    def __init__(
        self,
        db: RegistryDB,
        metrics: RegistryMetrics,
        clock: Callable[[], float] = time.time,
        policy: FlushPolicy | None = None,
    ) -> None:
        self.policy = policy or FlushPolicy()
        self._db = db
        self._metrics = metrics
        self._clock = clock
        self._pending: dict[tuple[int, str], int] = {}
        self._waiting = 0  # downloads counted since the last flush
        self._counted = 0  # not yet published to the metric
        self._dropped = 0  # idem, and not yet logged
        self._day_index = -1
        self._day = ""
        # Made on the event loop, at first use (anyio needs a running loop for them).
        self._wake: anyio.Event | None = None
        self._lock: anyio.Lock | None = None

    @property
    def pending(self) -> int:
        """Downloads counted and not written yet."""
        return sum(self._pending.values())

    def count(self, version_id: int) -> None:
        """Count one download of ``version_id`` today (UTC)."""
        now = self._clock()
        index = int(now // DAY)
        if index != self._day_index:
            self._day_index, self._day = index, utc_day(now)
        key = (version_id, self._day)
        self._counted += 1
        pending = self._pending
        n = pending.get(key)
        if n is None:
            if len(pending) >= self.policy.max_keys:
                self._dropped += 1
                return
            pending[key] = 1
        else:
            pending[key] = n + 1
        self._waiting += 1
        if self._waiting >= self.policy.batch and self._wake is not None:
            self._wake.set()

    async def flush(self) -> bool:
        """Write the waiting counts in one transaction. False if the database refused
        them (they are kept for the next flush). Never raises but for cancellation."""
        if self._lock is None:
            self._lock = anyio.Lock()
        async with self._lock:
            # Shielded: a shutdown must not cancel a batch between taking it from
            # memory and either writing it or putting it back.
            with anyio.CancelScope(shield=True):
                written = await self._flush()
        return written

    async def _flush(self) -> bool:
        batch, self._pending = self._pending, {}
        self._waiting = 0
        written = True
        if batch:
            total = sum(batch.values())
            try:
                recorded = await anyio.to_thread.run_sync(self._db.add_downloads, batch)
            except Exception as exc:
                written = False
                self._keep(batch)
                log.warning(
                    "download counts not written; kept for the next flush",
                    extra={"fields": {"downloads": total, "reason": str(exc)[:300]}},
                    # A bug, not an outage: its traceback.
                    exc_info=not isinstance(exc, StorageUnavailable),
                )
            else:
                self._metrics.download_counts.inc("flushed", amount=recorded)
                # Versions deleted after their download was counted.
                self._dropped += total - recorded
        self._publish()
        return written

    def discard(self) -> int:
        """Drop what waits (a stop whose last flush failed), counted and logged as
        dropped; returns how many downloads it was."""
        lost = sum(self._pending.values())
        self._pending = {}
        self._waiting = 0
        self._dropped += lost
        self._publish()
        return lost

    def _keep(self, batch: dict[tuple[int, str], int]) -> None:
        """Put a batch that could not be written back, within the memory bound."""
        pending = self._pending
        for key, n in batch.items():
            if key in pending:
                pending[key] += n
            elif len(pending) < self.policy.max_keys:
                pending[key] = n
            else:
                self._dropped += n
                continue
            self._waiting += n

    def _publish(self) -> None:
        if self._counted:
            self._metrics.download_counts.inc("counted", amount=self._counted)
            self._counted = 0
        if self._dropped:
            self._metrics.download_counts.inc("dropped", amount=self._dropped)
            log.warning(
                "download counts dropped",
                extra={"fields": {"downloads": self._dropped, "max_keys": self.policy.max_keys}},
            )
            self._dropped = 0

    async def run_forever(self) -> None:
        """Flush every ``interval`` seconds, or sooner when ``batch`` downloads wait
        (a task of the registry's lifespan; cancel it, then ``flush`` a last time)."""
        while True:
            self._wake = wake = anyio.Event()
            if self._waiting >= self.policy.batch:
                wake.set()
            with anyio.move_on_after(self.policy.interval):
                await wake.wait()
            if not await self.flush():
                # The database is down: retry after a whole interval, not at each
                # batch of downloads.
                await anyio.sleep(self.policy.interval)
