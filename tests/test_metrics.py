"""trustpub.metrics: the multiprocess set-up that ``serve`` runs before its workers."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import values

from trustpub.metrics import MULTIPROC_ENV, MetricsRegistry, setup_multiprocess


def test_setup_multiprocess_empties_the_directory_and_points_workers_at_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # setenv records the variable's state, so that setup_multiprocess's own setting is
    # undone afterwards too; the rest of this test process keeps in-process values.
    monkeypatch.setenv(MULTIPROC_ENV, "")
    monkeypatch.delenv(MULTIPROC_ENV)
    monkeypatch.setattr(values, "ValueClass", values.ValueClass)
    directory = tmp_path / "metrics"
    directory.mkdir()
    (directory / "counter_12345.db").write_bytes(b"left by an earlier run")
    (directory / "keep.txt").write_text("not ours")

    assert setup_multiprocess(directory) == directory
    assert sorted(p.name for p in directory.iterdir()) == ["keep.txt"]
    import os

    assert os.environ[MULTIPROC_ENV] == str(directory)

    metrics = MetricsRegistry(version="1.2.3")
    assert metrics.multiprocess
    metrics.exchanges.inc("issued", "")
    text = metrics.render()
    assert 'trustpub_exchanges_total{outcome="issued",reason=""} 1.0' in text
    assert 'trustpub_build_info{python="' in text
    assert 'version="1.2.3"' in text
    assert "process_resident_memory_bytes{pid=" in text
    assert any(p.name.startswith("counter_") for p in directory.iterdir())


def test_single_process_metrics_need_no_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    metrics = MetricsRegistry()
    assert not metrics.multiprocess
    metrics.registry.refused(403)
    metrics.registry.refused(599)
    text = metrics.render()
    assert 'trustpub_registry_refusals_total{reason="forbidden"} 1.0' in text
    assert 'trustpub_registry_refusals_total{reason="server_error"} 1.0' in text
    assert "process_cpu_seconds_total" in text
