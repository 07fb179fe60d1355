"""Metrics with two real uvicorn workers (``trustpub serve --workers 2``, which gives
them one multiprocess directory): whichever worker answers ``/metrics``, counters never
go backwards and add up every worker's."""

from __future__ import annotations

import os
import re
from pathlib import Path

import httpx
import pytest

from tests.live import run_service
from trustpub.metrics import MULTIPROC_ENV
from trustpub.oidc.issuers import DEFAULT_ISSUERS

TOKENS = "/api/v1/trusted_publishing/tokens"
REFUSED = re.compile(
    r'^trustpub_exchanges_total\{outcome="refused",reason="InvalidJWT"\} (\S+)$', re.M
)
WORKER = re.compile(r'^process_resident_memory_bytes\{pid="(\d+)"\}', re.M)


@pytest.mark.slow
def test_counters_never_go_backwards_across_two_workers(tmp_path: Path) -> None:
    requests = 40
    # serve sets the directory up itself; none is inherited from this process.
    assert MULTIPROC_ENV not in os.environ
    with run_service(tmp_path, issuers=DEFAULT_ISSUERS, args=["--workers", "2"]) as svc:
        last = 0.0
        workers: set[str] = set()
        for i in range(requests):
            # A new connection each time, so both workers take requests and scrapes.
            refused = httpx.post(f"{svc.url}{TOKENS}", json={"jwt": "not-a-jwt"}, timeout=30)
            assert refused.status_code == 400
            text = httpx.get(f"{svc.url}/metrics", timeout=30).text
            match = REFUSED.search(text)
            assert match is not None, text
            value = float(match.group(1))
            assert value >= last, f"went backwards at scrape {i}: {last} -> {value}"
            last = value
            workers.update(WORKER.findall(text))
        assert last == requests
        # Both workers write to the shared directory (their process metrics show).
        assert len(workers) == 2
