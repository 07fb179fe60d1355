"""Liveness, readiness, metrics, and live policy reloading."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import CREDENTIAL, GITHUB_POLICY, Service, ServiceFactory
from trustpub.errors import StoreUnavailable


def test_healthz(service: Service) -> None:
    response = service.client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def wait_ready(service: Service) -> httpx.Response:
    """/readyz once the key sets fetched in the background at start-up are in."""
    deadline = time.monotonic() + 10
    while True:
        response: httpx.Response = service.client.get("/readyz")
        if response.status_code == 200 or time.monotonic() > deadline:
            return response
        time.sleep(0.01)


def test_ready_when_store_policies_and_keys_are_usable(service: Service) -> None:
    response = wait_ready(service)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "status": "ready",
        "checks": {"keys": "ok", "policies": "ok", "store": "ok"},
    }
    assert response.headers["cache-control"] == "no-store"


def test_not_ready_when_key_sets_cannot_be_fetched(service_factory: ServiceFactory) -> None:
    service = service_factory(issuer_status=500)
    response = service.client.get("/readyz")
    assert response.status_code == 503
    # Names the failed check only: no issuer, no reason.
    assert response.json() == {
        "status": "not ready",
        "checks": {"keys": "failed", "policies": "ok", "store": "ok"},
    }


def test_a_broken_policy_file_keeps_readiness_and_the_last_good_set(service: Service) -> None:
    assert wait_ready(service).status_code == 200
    service.write_policy("policies.toml", GITHUB_POLICY + "unknown_key = 1\n")
    assert service.services().policies.reload() is False
    response = service.client.get("/readyz")
    assert response.status_code == 200
    # Nothing about files or problems for anyone who can reach /readyz.
    assert "policies.toml" not in response.text
    assert "unknown_key" not in response.text
    # The last good set still serves; the problem shows on /metrics and /status.
    assert service.exchange(service.github_jwt()).status_code == 200
    assert "trustpub_policy_files_broken 1.0" in service.client.get("/metrics").text
    status = service.client.get("/status", headers={"Authorization": CREDENTIAL}).json()
    assert status["policies"]["last_reload_failed"] is True
    assert status["policies"]["files"] == ["policies.toml"]
    assert any("unknown_key" in p for p in status["policies"]["problems"])
    service.write_policy("policies.toml", GITHUB_POLICY)
    assert service.services().policies.reload() is True
    assert "trustpub_policy_files_broken 0.0" in service.client.get("/metrics").text


def test_not_ready_while_the_store_is_unavailable(service: Service) -> None:
    async def down() -> None:
        raise StoreUnavailable("Token store unavailable: test")

    service.services().store.ping = down  # type: ignore[method-assign]
    response = service.client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["store"] == "failed"
    assert "test" not in response.text


def test_status_is_for_operators_only(service: Service) -> None:
    assert service.client.get("/status").status_code == 401
    wrong = service.client.get("/status", headers={"Authorization": "x" * 32})
    assert wrong.status_code == 401
    wait_ready(service)
    response = service.client.get("/status", headers={"Authorization": f"Bearer {CREDENTIAL}"})
    assert response.status_code == 200
    body = response.json()
    github = next(i for i in body["issuers"] if i["issuer"].startswith("https://token.actions"))
    assert github["loaded"] is True
    assert github["keys"] == 1
    assert github["age_seconds"] >= 0
    assert github["failed_fetches"] == 0
    assert body["policies"]["loaded"] == 1
    assert body["policies"]["problems"] == []
    assert body["stores"]["tokens"]["ok"] is True
    assert body["build"]["python"]
    assert body["build"]["version"]


def test_status_is_disabled_without_credentials(service_factory: ServiceFactory) -> None:
    service = service_factory(introspection_credentials=())
    assert service.client.get("/status", headers={"Authorization": "x" * 32}).status_code == 403


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
    assert 'trustpub_exchanges_total{outcome="issued",reason=""} 1.0' in text
    assert 'trustpub_exchanges_total{outcome="refused",reason="InvalidJWT"} 1.0' in text
    assert 'trustpub_exchanges_total{outcome="refused",reason="PolicyMismatch"} 1.0' in text
    assert "trustpub_exchange_duration_seconds_count 3.0" in text
    assert "trustpub_policies 1.0" in text
    assert "# TYPE trustpub_key_fetches_total counter" in text
    github = "https://token.actions.githubusercontent.com"
    assert f'trustpub_key_fetches_total{{issuer="{github}",result="ok"}} 1.0' in text
    # Process and build metrics.
    assert "process_resident_memory_bytes" in text
    assert 'trustpub_build_info{python="' in text


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
