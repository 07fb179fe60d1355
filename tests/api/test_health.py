"""Liveness, readiness, metrics, and live policy reloading."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from tests.api.conftest import GITHUB_POLICY, Service, ServiceFactory


def test_healthz(service: Service) -> None:
    response = service.client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_ready_when_store_policies_and_keys_are_usable(service: Service) -> None:
    response = service.client.get("/readyz")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ready"
    assert body["store"] == "ok"
    assert body["policies"] == {"loaded": 1, "error": None}
    assert set(body["issuers"].values()) == {"ok"}


def test_not_ready_when_key_sets_cannot_be_fetched(service: Service) -> None:
    service.issuers.status = 500
    response = service.client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "not ready"
    assert any(p.startswith("keys: no usable key set for") for p in body["problems"])


def test_a_broken_policy_file_keeps_the_last_good_set(service: Service) -> None:
    service.write_policy("policies.toml", GITHUB_POLICY + "unknown_key = 1\n")
    assert service.services().policies.reload() is False
    response = service.client.get("/readyz")
    assert response.status_code == 503
    assert "unknown_key" in response.json()["policies"]["error"]
    # The last good set still serves.
    assert service.exchange(service.github_jwt()).status_code == 200
    service.write_policy("policies.toml", GITHUB_POLICY)
    assert service.services().policies.reload() is True
    assert service.client.get("/readyz").json()["policies"]["error"] is None


def test_policy_files_are_reloaded_when_they_change(
    service_factory: ServiceFactory, tmp_path: Path
) -> None:
    service = service_factory(policy_reload_interval=0.05)
    jwt = service.github_jwt(repository="octo-org/second")
    assert service.exchange(jwt).status_code == 400
    service.write_policy(
        "second.toml", GITHUB_POLICY.replace("octo-org/octo-lib", "octo-org/second")
    )
    deadline = time.monotonic() + 10
    while len(service.services().policies.current) < 2:
        assert time.monotonic() < deadline, "policies were not reloaded"
        time.sleep(0.02)
    assert service.exchange(jwt).status_code == 200


def test_metrics_count_exchanges_by_outcome_and_reason(service: Service) -> None:
    assert service.exchange(service.github_jwt()).status_code == 200
    assert service.exchange("garbage").status_code == 400
    assert service.exchange(service.github_jwt(repository="o/x")).status_code == 400
    response = service.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'trustpub_exchanges_total{outcome="issued",reason=""} 1' in text
    assert 'trustpub_exchanges_total{outcome="refused",reason="InvalidJWT"} 1' in text
    assert 'trustpub_exchanges_total{outcome="refused",reason="PolicyMismatch"} 1' in text
    assert "trustpub_exchange_duration_seconds_count 3" in text
    assert "trustpub_policies 1" in text
    assert "# TYPE trustpub_key_fetches_total counter" in text
    github = "https://token.actions.githubusercontent.com"
    assert f'trustpub_key_fetches_total{{issuer="{github}",result="ok"}} 1' in text


def test_audit_log_records_exchanges_without_the_token(
    service: Service, caplog: pytest.LogCaptureFixture
) -> None:
    jwt = service.github_jwt()
    with caplog.at_level(logging.INFO, logger="trustpub.audit"):
        response = service.exchange(jwt)
        token = response.json()["token"]
        service.client.delete("/api/v1/trusted_publishing/tokens", headers={"Authorization": token})
    records = [r for r in caplog.records if r.name == "trustpub.audit"]
    fields = [getattr(r, "fields") for r in records]  # noqa: B009
    issued = next(f for f in fields if f.get("outcome") == "issued")
    assert issued["repository"] == "octo-org/octo-lib"
    assert issued["policies"] == ["policies.toml#release"]
    assert "expires_at" in issued
    revocation = next(f for f in fields if f.get("event") == "revocation")
    assert revocation["outcome"] == "revoked"
    assert revocation["repository"] == "octo-org/octo-lib"
    assert revocation["policies"] == ["policies.toml#release"]
    everything = repr(fields) + caplog.text
    assert token not in everything
    assert jwt not in everything
