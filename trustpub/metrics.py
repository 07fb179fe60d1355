"""Prometheus metrics, kept and rendered by ``prometheus-client``.

One ``MetricsRegistry`` per application. Its counters keep the call sites short:
``metrics.exchanges.inc("refused", "InvalidJWT")``. Labels are always drawn from small
fixed sets (outcomes, error class names, issuer URLs from the configuration), never
from request data.

Several worker processes: each worker keeps its own values, so a worker answering
``/metrics`` with only its own would make counters go backwards from one scrape to the
next. ``setup_multiprocess(directory)`` (called by ``trustpub serve`` before it starts
workers) sets ``PROMETHEUS_MULTIPROC_DIR``; workers then write their values to files
there (prometheus-client's multiprocess mode) and ``/metrics`` adds them up, whichever
worker answers. Counters of a worker that died stay counted. Process metrics are per
worker (a ``pid`` label), refreshed every few seconds by each worker; gauges of state
(policies loaded, policy files broken) show the most recently written value.

prometheus-client replaced a hand-written registry; the allowance was 3 % of exchange
throughput. Measured on the shared 2-core machine (load average 12, so every figure is
inflated alike): the metrics of one exchange (a counter increment and a histogram
observation, ``timeit``, best of 5 x 200k) cost 4.0-4.5 µs hand-written, 7.7-8.1 µs with
prometheus-client, 16.5-20.6 µs in multiprocess mode, against 1.5-2.3 ms of server CPU
per exchange (``bench/load.py``, old and new interleaved, 3 rounds each): at most
+16 µs, under 1 %. Throughput itself varied by more than 3 % from run to run there.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Iterable
from pathlib import Path
from typing import Final, Literal

import anyio
import prometheus_client
from prometheus_client import CollectorRegistry, multiprocess, values
from prometheus_client.core import Metric

__all__ = [
    "CONTENT_TYPE",
    "DEFAULT_BUCKETS",
    "MULTIPROC_ENV",
    "Counter",
    "Gauge",
    "Histogram",
    "MetricsRegistry",
    "RegistryMetrics",
    "setup_multiprocess",
    "worker_exited",
]

MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE: Final = prometheus_client.CONTENT_TYPE_LATEST

DEFAULT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

GaugeMode = Literal["all", "liveall", "min", "max", "sum", "livesum", "mostrecent"]


def setup_multiprocess(directory: str | os.PathLike[str]) -> Path:
    """Prepare ``directory`` for the metrics of several worker processes.

    Call once, in the supervisor, before any worker starts: it creates the directory,
    removes the files of an earlier run (their values would be added to this run's)
    and sets ``PROMETHEUS_MULTIPROC_DIR``, which the workers inherit.
    """
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink()
    os.environ[MULTIPROC_ENV] = str(path)
    # prometheus-client chooses where values live when it is first imported; this
    # process may have imported it before the variable was set.
    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
    return path


def worker_exited(pid: int) -> None:
    """Forget a dead worker's per-process gauges (its counters stay counted). For the
    supervisor, when it reaps a worker."""
    if os.environ.get(MULTIPROC_ENV):
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


def _multiprocess_dir() -> str | None:
    directory = os.environ.get(MULTIPROC_ENV) or None
    if directory is not None and values.ValueClass is values.MutexValue:
        # Set after prometheus-client was imported (tests, embedding): follow it.
        values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
    return directory


class Counter:
    """A counter, with label values given positionally: ``inc("issued", "")``."""

    def __init__(
        self,
        name: str,
        help: str,
        labels: tuple[str, ...] = (),
        *,
        registry: CollectorRegistry,
    ) -> None:
        self.name = name
        self.label_names = labels
        self._metric = prometheus_client.Counter(
            name.removesuffix("_total"), help, labels, registry=registry
        )
        # The child of each label set, looked up once: prometheus-client's labels()
        # validates and locks on every call, which would be most of an inc's cost.
        self._children: dict[tuple[str, ...], prometheus_client.Counter] = {}

    def _child(self, labels: tuple[str, ...]) -> prometheus_client.Counter:
        child = self._children.get(labels)
        if child is None:
            child = self._metric.labels(*labels) if labels else self._metric
            self._children[labels] = child
        return child

    def inc(self, *labels: str, amount: float = 1) -> None:
        self._child(labels).inc(amount)

    def value(self, *labels: str) -> float:
        """This process's count (tests and tools)."""
        return float(self._child(labels)._value.get())


class Gauge:
    """A gauge set by the code that knows the value (it works across processes, where
    a value read at scrape time would come from whichever worker answers)."""

    def __init__(
        self,
        name: str,
        help: str,
        labels: tuple[str, ...] = (),
        *,
        registry: CollectorRegistry,
        mode: GaugeMode = "mostrecent",
    ) -> None:
        self.name = name
        self._metric = prometheus_client.Gauge(
            name, help, labels, registry=registry, multiprocess_mode=mode
        )

    def set(self, value: float, *labels: str) -> None:
        (self._metric.labels(*labels) if labels else self._metric).set(value)


class Histogram:
    def __init__(
        self,
        name: str,
        help: str,
        buckets: tuple[float, ...] = DEFAULT_BUCKETS,
        *,
        registry: CollectorRegistry,
    ) -> None:
        self.name = name
        self._metric = prometheus_client.Histogram(name, help, buckets=buckets, registry=registry)

    def observe(self, seconds: float) -> None:
        self._metric.observe(seconds)


# Refusals of the companion registry, by HTTP status: a small fixed set of reasons.
_REFUSAL_REASONS: Final = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    409: "conflict",
    413: "too_large",
    422: "invalid",
    429: "too_many_requests",
    503: "unavailable",
    507: "insufficient_storage",
}


class RegistryMetrics:
    """The companion Cargo registry's counters."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = registry if registry is not None else CollectorRegistry()
        self.publishes = Counter(
            "trustpub_registry_publishes_total",
            "Crate versions published, by the kind of token used (trustpub or api-token).",
            ("token",),
            registry=r,
        )
        self.downloads = Counter(
            "trustpub_registry_downloads_total", "Crate files downloaded.", registry=r
        )
        self.download_counts = Counter(
            "trustpub_registry_download_counts_total",
            "Download counts per version and day, by stage: counted (every successful "
            "download), flushed (written to the database), dropped (lost: memory bound "
            "reached, or the version was deleted); counted - flushed - dropped wait in "
            "memory. Published at each flush.",
            ("stage",),
            registry=r,
        )
        self.index_requests = Counter(
            "trustpub_registry_index_requests_total",
            "Sparse index file requests answered, by result (ok, not_modified).",
            ("result",),
            registry=r,
        )
        self.yanks = Counter(
            "trustpub_registry_yanks_total",
            "Yank and unyank requests carried out, by action (yank, unyank).",
            ("action",),
            registry=r,
        )
        self.owner_changes = Counter(
            "trustpub_registry_owner_changes_total",
            "Owner changes carried out, by action (add, remove).",
            ("action",),
            registry=r,
        )
        self.refusals = Counter(
            "trustpub_registry_refusals_total",
            "Registry requests refused, by reason (from the HTTP status).",
            ("reason",),
            registry=r,
        )

    def refused(self, status: int) -> None:
        reason = _REFUSAL_REASONS.get(status, "server_error" if status >= 500 else "other")
        self.refusals.inc(reason)


class MetricsRegistry:
    """The service's metrics. One instance per application."""

    def __init__(self, version: str | None = None) -> None:
        self._multiprocess_dir = _multiprocess_dir()
        self._registry = r = CollectorRegistry()
        self.exchanges = Counter(
            "trustpub_exchanges_total",
            "Token exchanges by outcome (issued or refused) and reason.",
            ("outcome", "reason"),
            registry=r,
        )
        self.exchange_seconds = Histogram(
            "trustpub_exchange_duration_seconds", "Time to answer a token exchange.", registry=r
        )
        self.introspections = Counter(
            "trustpub_introspections_total",
            "Token introspections by result.",
            ("result",),
            registry=r,
        )
        self.revocations = Counter(
            "trustpub_revocations_total",
            "Token revocation requests by result.",
            ("result",),
            registry=r,
        )
        self.store_errors = Counter(
            "trustpub_store_errors_total",
            "Requests answered 503 because the store was unavailable.",
            registry=r,
        )
        self.policy_reloads = Counter(
            "trustpub_policy_reloads_total", "Policy reloads by result.", ("result",), registry=r
        )
        self.unexpected_errors = Counter(
            "trustpub_unexpected_errors_total",
            "Requests answered 500 because of an unexpected error (a bug).",
            registry=r,
        )
        self.key_fetches = Counter(
            "trustpub_key_fetches_total",
            "Key set fetches by issuer and result.",
            ("issuer", "result"),
            registry=r,
        )
        self.policies = Gauge("trustpub_policies", "Policies in the live set.", registry=r)
        self.policy_files_broken = Gauge(
            "trustpub_policy_files_broken",
            "1 while the last policy reload failed (the last good set stays in force); "
            "/status lists the problems.",
            registry=r,
        )
        self.registry = RegistryMetrics(r)
        build = Gauge(
            "trustpub_build_info",
            "trustpub's version and Python's (always 1).",
            ("version", "python"),
            registry=r,
            mode="max",
        )
        build.set(1, version or _version(), platform.python_version())
        self._process_gauges: dict[str, Gauge] = {}
        if self._multiprocess_dir is None:
            prometheus_client.ProcessCollector(registry=r)
        else:
            # Per worker: prometheus-client's process collector reads this process
            # only, so each worker copies its figures to gauges labelled with its pid.
            for name, help in _PROCESS_METRICS.items():
                self._process_gauges[name] = Gauge(name, help, registry=r, mode="liveall")
            self.sample_process()

    @property
    def multiprocess(self) -> bool:
        return self._multiprocess_dir is not None

    def policies_reloaded(self, result: str, loaded: int) -> None:
        """Count a policy reload (``ok`` or ``error``) and show the set in force."""
        self.policy_reloads.inc(result)
        self.observe_policies(loaded, broken=result != "ok")

    def observe_policies(self, loaded: int, broken: bool) -> None:
        self.policies.set(loaded)
        self.policy_files_broken.set(1 if broken else 0)

    def sample_process(self) -> None:
        """Copy this process's figures to its per-worker gauges (multiprocess mode)."""
        if not self._process_gauges:
            return
        for family in _process_families():
            for sample in family.samples:
                gauge = self._process_gauges.get(sample.name)
                if gauge is not None:
                    gauge.set(sample.value)

    async def sample_process_forever(self, interval: float = 5.0) -> None:
        """Refresh this worker's process gauges every ``interval`` seconds (a task of
        the application's lifespan; returns at once with a single process)."""
        while self._process_gauges:
            self.sample_process()
            await anyio.sleep(interval)

    def render(self) -> str:
        if self._multiprocess_dir is None:
            return prometheus_client.generate_latest(self._registry).decode()
        self.sample_process()
        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged, path=self._multiprocess_dir)  # type: ignore[no-untyped-call]
        return prometheus_client.generate_latest(merged).decode()


_PROCESS_METRICS: Final = {
    "process_cpu_seconds_total": "Total user and system CPU time spent in seconds.",
    "process_resident_memory_bytes": "Resident memory size in bytes.",
    "process_virtual_memory_bytes": "Virtual memory size in bytes.",
    "process_start_time_seconds": "Start time of the process since unix epoch in seconds.",
    "process_open_fds": "Number of open file descriptors.",
    "process_max_fds": "Maximum number of open file descriptors.",
}


def _process_families() -> Iterable[Metric]:
    return prometheus_client.ProcessCollector(registry=None).collect()


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("trustpub")
    except PackageNotFoundError:
        return "unknown"
