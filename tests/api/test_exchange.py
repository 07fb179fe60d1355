"""POST /api/v1/trusted_publishing/tokens, on both stores: crates.io's behaviour and texts."""

from __future__ import annotations

import time
from datetime import datetime

import jwt as pyjwt
import pytest

from tests.api.conftest import GITLAB_POLICY, Service, ServiceFactory
from tests.conftest import github_claims
from trustpub.tokens.format import is_well_formed

URL = "/api/v1/trusted_publishing/tokens"


def detail(response: object) -> str:
    body = response.json()  # type: ignore[attr-defined]
    assert list(body) == ["errors"]
    assert len(body["errors"]) == 1
    text: str = body["errors"][0]["detail"]
    return text


def test_exchange_returns_a_token_scoped_to_the_policy_crates(service: Service) -> None:
    before = time.time()
    response = service.exchange(service.github_jwt())
    after = time.time()
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert is_well_formed(body["token"])
    assert body["crates"] == {
        "octo-lib": ["publish-update", "yank"],
        "octo-lib-macros": ["publish-update", "yank"],
    }
    expires = datetime.fromisoformat(body["expires_at"]).timestamp()
    # Minted between `before` and `after` (whole seconds), valid for 30 minutes.
    assert int(before) + 1800 <= expires <= after + 1800


def test_owner_and_repository_match_case_insensitively(service: Service) -> None:
    response = service.exchange(service.github_jwt(repository="Octo-Org/Octo-LIB"))
    assert response.status_code == 200, response.text


def test_gitlab_exchange(service_factory: ServiceFactory) -> None:
    service = service_factory(GITLAB_POLICY)
    response = service.exchange(service.gitlab_jwt())
    assert response.status_code == 200, response.text
    assert response.json()["crates"] == {"octo-lib": ["publish-update"]}


def test_the_same_jwt_yields_one_token(service: Service) -> None:
    jwt = service.github_jwt()
    assert service.exchange(jwt).status_code == 200
    again = service.exchange(jwt)
    assert again.status_code == 400
    assert detail(again) == "JWT has already been used"


def test_a_jwt_refused_for_a_policy_mismatch_can_be_retried(service: Service) -> None:
    jwt = service.github_jwt(
        workflow_ref="octo-org/octo-lib/.github/workflows/ci.yml@refs/heads/main"
    )
    assert service.exchange(jwt).status_code == 400
    policy = service.settings.policy_dir / "policies.toml"
    service.write_policy("policies.toml", policy.read_text().replace("release.yml", "ci.yml"))
    assert service.services().policies.reload()
    assert service.exchange(jwt).status_code == 200


@pytest.mark.parametrize(
    ("jwt", "message"),
    [
        ("not-a-jwt", "Failed to decode JWT"),
        ("a.b.c", "Failed to decode JWT"),
    ],
)
def test_undecodable_jwt(service: Service, jwt: str, message: str) -> None:
    response = service.exchange(jwt)
    assert response.status_code == 400
    assert detail(response).startswith(message)


def test_unsupported_issuer(service: Service) -> None:
    response = service.exchange(service.github_jwt(iss="https://evil.example"))
    assert response.status_code == 400
    assert detail(response) == "Unsupported JWT issuer: https://evil.example"


def test_missing_key_id(service: Service) -> None:
    token = pyjwt.encode(github_claims(), service.key.private, algorithm="RS256")
    response = service.exchange(token)
    assert response.status_code == 400
    assert detail(response) == "Missing JWT key ID"


def test_unknown_key_id(service: Service) -> None:
    token = service.key.sign(github_claims(), headers={"kid": "rotated-away"})
    response = service.exchange(token)
    assert response.status_code == 400
    assert detail(response) == "Invalid JWT key ID"


def test_key_set_unavailable_is_retryable(service_factory: ServiceFactory) -> None:
    service = service_factory(issuer_status=503)
    response = service.exchange(service.github_jwt())
    # crates.io's text; 503 (not its 500): the issuer is down for now, retry later.
    assert response.status_code == 503
    assert detail(response) == "Failed to load OIDC key set"


@pytest.mark.parametrize("event", ["pull_request_target", "workflow_run"])
def test_refused_events(service: Service, event: str) -> None:
    response = service.exchange(service.github_jwt(event_name=event))
    assert response.status_code == 400
    assert detail(response) == (
        f"Trusted Publishing does not support the `{event}` event trigger due to security "
        "concerns. Please use a different trigger such as `push`, `release`, or "
        "`workflow_dispatch`."
    )


def test_no_policy_for_the_repository(service: Service) -> None:
    response = service.exchange(service.github_jwt(repository="octo-org/other"))
    assert response.status_code == 400
    assert detail(response) == "No Trusted Publishing config found for repository `octo-org/other`."


def test_workflow_mismatch(service: Service) -> None:
    response = service.exchange(
        service.github_jwt(
            workflow_ref="octo-org/octo-lib/.github/workflows/ci.yml@refs/heads/main"
        )
    )
    assert response.status_code == 400
    assert detail(response).startswith(
        "The Trusted Publishing config for repository `octo-org/octo-lib` does not match the "
        "workflow filename `ci.yml` in the JWT. Expected workflow filenames: `release.yml`"
    )


def test_owner_id_mismatch(service: Service) -> None:
    response = service.exchange(service.github_jwt(repository_owner_id="999"))
    assert response.status_code == 400
    assert "does not match the repository owner ID (999) in the JWT" in detail(response)
    assert "131804563" in detail(response)


def test_environment_required(service_factory: ServiceFactory) -> None:
    from tests.api.conftest import GITHUB_POLICY

    service = service_factory(GITHUB_POLICY + 'environment = "release"\n')
    missing = service.exchange(service.github_jwt())
    assert missing.status_code == 400
    assert "requires an environment, but the JWT does not specify one" in detail(missing)
    wrong = service.exchange(service.github_jwt(environment="staging"))
    assert "does not match the environment `staging` in the JWT" in detail(wrong)
    assert "`release`" in detail(wrong)
    ok = service.exchange(service.github_jwt(environment="RELEASE"))
    assert ok.status_code == 200, ok.text


def test_expired_jwt(service: Service) -> None:
    now = int(time.time())
    response = service.exchange(service.github_jwt(iat=now - 900, exp=now - 600, nbf=now - 900))
    assert response.status_code == 400
    assert detail(response).startswith("Failed to decode JWT")


def test_wrong_audience(service: Service) -> None:
    response = service.exchange(service.github_jwt(aud="crates.io"))
    assert response.status_code == 400
    assert detail(response).startswith("Failed to decode JWT")


def test_error_details_never_echo_the_jwt(service: Service) -> None:
    jwt = service.github_jwt(repository="octo-org/other")
    response = service.exchange(jwt)
    assert jwt not in response.text
    assert jwt.split(".")[2] not in response.text


class TestRequestShape:
    def test_invalid_json(self, service: Service) -> None:
        response = service.client.post(
            URL, content=b"{not json", headers={"content-type": "application/json"}
        )
        assert response.status_code == 400
        assert detail(response) == "Failed to parse the request body as JSON"

    def test_missing_jwt_field(self, service: Service) -> None:
        response = service.client.post(URL, json={"token": "x"})
        assert response.status_code == 422
        assert detail(response) == "Missing field `jwt`"

    def test_jwt_of_the_wrong_type(self, service: Service) -> None:
        response = service.client.post(URL, json={"jwt": 5})
        assert response.status_code == 422
        assert detail(response) == "Field `jwt` must be a string"

    def test_body_not_an_object(self, service: Service) -> None:
        response = service.client.post(URL, json=["jwt"])
        assert response.status_code == 422

    def test_wrong_content_type(self, service: Service) -> None:
        response = service.client.post(
            URL, content=b"jwt=x", headers={"content-type": "application/x-www-form-urlencoded"}
        )
        assert response.status_code == 415
        assert "application/json" in detail(response)

    def test_body_too_large(self, service: Service) -> None:
        response = service.client.post(URL, json={"jwt": "x" * 70_000})
        assert response.status_code == 413
        assert detail(response).startswith("Request body too large")

    def test_unknown_path_is_json(self, service: Service) -> None:
        response = service.client.get("/api/v1/nothing")
        assert response.status_code == 404
        assert detail(response) == "Not Found"

    def test_wrong_method_is_json(self, service: Service) -> None:
        response = service.client.get(URL)
        assert response.status_code == 405
        assert detail(response) == "Method Not Allowed"
