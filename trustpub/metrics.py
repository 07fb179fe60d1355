"""Prometheus metrics, rendered in the text exposition format without a dependency.

Labels are always drawn from small fixed sets (outcomes, error class names, issuer
URLs from the configuration), never from request data.
"""

from __future__ import annotations

import bisect
import threading
from collections import Counter as _Counter
from collections.abc import Callable, Iterable

__all__ = ["DEFAULT_BUCKETS", "Counter", "Gauge", "Histogram", "MetricsRegistry"]

LabelValues = tuple[str, ...]

DEFAULT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: tuple[str, ...], values: LabelValues, extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


class Counter:
    def __init__(self, name: str, help: str, labels: tuple[str, ...] = ()) -> None:
        self.name, self.help, self.label_names = name, help, labels
        self._values: _Counter[LabelValues] = _Counter()
        self._lock = threading.Lock()

    def inc(self, *labels: str, amount: int = 1) -> None:
        with self._lock:
            self._values[labels] += amount

    def value(self, *labels: str) -> int:
        return self._values[labels]

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} counter"
        for labels, value in sorted(self._values.items()):
            yield f"{self.name}{_labels(self.label_names, labels)} {value:g}"


class Gauge:
    """A value read when metrics are rendered. ``kind="counter"`` exposes a count kept
    elsewhere (such as the key sets' fetch outcomes) with the counter type."""

    def __init__(
        self,
        name: str,
        help: str,
        read: Callable[[], Iterable[tuple[LabelValues, float]]],
        labels: tuple[str, ...] = (),
        kind: str = "gauge",
    ) -> None:
        self.name, self.help, self.label_names, self._read = name, help, labels, read
        self.kind = kind

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} {self.kind}"
        for labels, value in self._read():
            yield f"{self.name}{_labels(self.label_names, labels)} {value:g}"


class Histogram:
    def __init__(self, name: str, help: str, buckets: tuple[float, ...] = DEFAULT_BUCKETS) -> None:
        self.name, self.help, self.buckets = name, help, buckets
        self._counts = [0] * (len(buckets) + 1)
        self._sum = 0.0
        self._lock = threading.Lock()

    def observe(self, seconds: float) -> None:
        with self._lock:
            self._counts[bisect.bisect_left(self.buckets, seconds)] += 1
            self._sum += seconds

    @property
    def count(self) -> int:
        return sum(self._counts)

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} histogram"
        cumulative = 0
        for bound, count in zip(self.buckets, self._counts, strict=False):
            cumulative += count
            yield f'{self.name}_bucket{{le="{bound:g}"}} {cumulative}'
        cumulative += self._counts[-1]
        yield f'{self.name}_bucket{{le="+Inf"}} {cumulative}'
        yield f"{self.name}_sum {self._sum:g}"
        yield f"{self.name}_count {cumulative}"


class MetricsRegistry:
    """The service's metrics. One instance per application."""

    def __init__(self) -> None:
        self.exchanges = Counter(
            "trustpub_exchanges_total",
            "Token exchanges by outcome (issued or refused) and reason.",
            ("outcome", "reason"),
        )
        self.exchange_seconds = Histogram(
            "trustpub_exchange_duration_seconds", "Time to answer a token exchange."
        )
        self.introspections = Counter(
            "trustpub_introspections_total", "Token introspections by result.", ("result",)
        )
        self.revocations = Counter(
            "trustpub_revocations_total", "Token revocation requests by result.", ("result",)
        )
        self.store_errors = Counter(
            "trustpub_store_errors_total",
            "Requests answered 503 because the store was unavailable.",
        )
        self.policy_reloads = Counter(
            "trustpub_policy_reloads_total", "Policy reloads by result.", ("result",)
        )
        self.unexpected_errors = Counter(
            "trustpub_unexpected_errors_total",
            "Requests answered 500 because of an unexpected error (a bug).",
        )
        self._gauges: list[Gauge] = []

    def add_gauge(self, gauge: Gauge) -> None:
        self._gauges.append(gauge)

    def render(self) -> str:
        families: list[Counter | Histogram | Gauge] = [
            self.exchanges,
            self.exchange_seconds,
            self.introspections,
            self.revocations,
            self.store_errors,
            self.policy_reloads,
            self.unexpected_errors,
            *self._gauges,
        ]
        lines: list[str] = []
        for family in families:
            lines.extend(family.render())
        return "\n".join(lines) + "\n"
