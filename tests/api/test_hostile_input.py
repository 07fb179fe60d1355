"""Input that must never be a 500: the shared mechanisms (body reader, JSON parser,
renderer, error boundary) at work behind the real endpoints."""

from __future__ import annotations

import pytest

from tests.api.conftest import CREDENTIAL, GITHUB_POLICY, Service, ServiceFactory
from trustpub.web import MAX_JSON_DEPTH

URL = "/api/v1/trusted_publishing/tokens"


def detail(response: object) -> str:
    body = response.json()  # type: ignore[attr-defined]
    assert list(body) == ["errors"]
    text: str = body["errors"][0]["detail"]
    return text


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 1000 + b"]" * 1000,
        b'{"jwt":' + b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1) + b"}",
        b'{"jwt": "\\ud800"}',
        b'{"jwt": "x", "\\udc00": 1}',
        b"\xff\xfe{",
    ],
)
def test_hostile_json_bodies_are_bad_requests(service: Service, body: bytes) -> None:
    for path, headers in (
        (URL, {}),
        ("/api/v1/trusted_publishing/introspect", {"Authorization": f"Bearer {CREDENTIAL}"}),
    ):
        response = service.client.post(path, content=body, headers=headers)
        assert response.status_code == 400, (path, response.text)
        assert response.headers["cache-control"] == "no-store"


def test_a_lone_surrogate_in_a_signed_claim_is_refused_and_quoted_escaped(
    service_factory: ServiceFactory,
) -> None:
    service = service_factory(GITHUB_POLICY + 'environment = "release"\n')
    # JSON escapes let a signed claim carry a lone surrogate: it is not text, so the
    # token is refused, and the message quotes it escaped so it can still be written.
    response = service.exchange(service.github_jwt(environment="rel\ud800"))
    assert response.status_code == 400
    assert detail(response) == (
        "Failed to decode JWT: a claim holds invalid Unicode text: `rel\\ud800`"
    )


def test_an_unexpected_error_is_a_json_500_and_counted(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(jwt: str) -> object:
        raise RuntimeError("internal detail")

    monkeypatch.setattr(service.services().exchanger, "exchange", broken)
    response = service.exchange(service.github_jwt())
    assert response.status_code == 500
    assert detail(response) == "Internal server error"
    assert "internal detail" not in response.text
    assert service.services().metrics.unexpected_errors.value() == 1
    metrics = service.client.get("/metrics").text
    assert "trustpub_unexpected_errors_total 1" in metrics


def test_store_outages_are_counted_not_taken_for_bugs(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    from trustpub.errors import StoreUnavailable

    async def down(token: str, gate: object = None) -> object:
        raise StoreUnavailable("Token store unavailable")

    monkeypatch.setattr(service.services().tokens, "introspect", down)
    response = service.introspect("trustpub_" + "a" * 38)
    assert response.status_code == 503
    assert service.services().metrics.store_errors.value() == 1
    assert service.services().metrics.unexpected_errors.value() == 0
