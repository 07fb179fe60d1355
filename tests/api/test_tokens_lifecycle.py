"""Revocation and introspection of issued tokens, on both stores."""

from __future__ import annotations

import pytest

from tests.api.conftest import CREDENTIAL, Service, ServiceFactory
from tests.api.test_exchange import detail
from trustpub.tokens.format import generate_token

URL = "/api/v1/trusted_publishing/tokens"
INTROSPECT = "/api/v1/trusted_publishing/introspect"

BOOTSTRAP_POLICY = """
[[policy]]
name = "release"
provider = "github"
crates = ["octo-lib", "octo-lib-macros"]
repository = "octo-org/octo-lib"
repository_owner_id = "131804563"
workflow = "release.yml"
operations = ["publish-new", "publish-update"]
owners = {owners}
"""


class TestRevocation:
    @pytest.mark.parametrize("scheme", ["Bearer ", "bearer ", "BEARER ", ""])
    def test_revoked_token_is_inactive(self, service: Service, scheme: str) -> None:
        token = service.token()
        assert service.introspect(token).json()["active"] is True
        response = service.client.delete(URL, headers={"Authorization": f"{scheme}{token}"})
        assert response.status_code == 204
        assert response.content == b""
        assert service.introspect(token).json() == {"active": False}

    def test_unknown_token_is_also_204(self, service: Service) -> None:
        response = service.client.delete(
            URL, headers={"Authorization": f"Bearer {generate_token()}"}
        )
        assert response.status_code == 204

    def test_missing_header(self, service: Service) -> None:
        response = service.client.delete(URL)
        assert response.status_code == 401
        assert detail(response) == "Missing `Authorization` header"

    @pytest.mark.parametrize("value", ["Bearer nonsense", "Basic abc", "Bearer ", "trustpub_x"])
    def test_unparseable_header(self, service: Service, value: str) -> None:
        response = service.client.delete(URL, headers={"Authorization": value})
        assert response.status_code == 401
        assert detail(response) == "Invalid `Authorization` header: Failed to parse token"

    def test_a_token_with_one_changed_character_is_refused_before_lookup(
        self, service: Service
    ) -> None:
        token = service.token()
        last = token[-1]
        tampered = token[:-1] + ("A" if last != "A" else "B")
        response = service.client.delete(URL, headers={"Authorization": tampered})
        assert response.status_code == 401
        assert service.introspect(token).json()["active"] is True


class TestIntrospection:
    def test_active_token_describes_its_grant_and_provenance(self, service: Service) -> None:
        token = service.token()
        response = service.introspect(token)
        assert response.status_code == 200
        assert response.headers["cache-control"] == "no-store"
        body = response.json()
        assert body["active"] is True
        assert body["crates"] == {
            "octo-lib": ["publish-update", "yank"],
            "octo-lib-macros": ["publish-update", "yank"],
        }
        assert body["policies"] == ["policies.toml#release"]
        # Always present; this policy does not grant publish-new.
        assert body["new_crate_owners"] == {}
        provenance = body["provenance"]
        assert provenance["provider"] == "github"
        assert provenance["repository"] == "octo-org/octo-lib"
        assert provenance["owner_id"] == "131804563"
        assert provenance["run_id"] == "21561244697"
        assert provenance["sha"] == "8c13a5f0d1c8a9e6b1f2"
        assert provenance["workflow_ref"].endswith("release.yml@refs/tags/v1.2.3")
        assert body["expires_at"].endswith("Z")

    def test_active_token_names_the_owners_of_crates_it_may_create(
        self, service_factory: ServiceFactory
    ) -> None:
        service = service_factory(BOOTSTRAP_POLICY.format(owners='["octocat", "hubot"]'))
        body = service.introspect(service.token()).json()
        assert body["crates"] == {
            "octo-lib": ["publish-new", "publish-update"],
            "octo-lib-macros": ["publish-new", "publish-update"],
        }
        assert body["new_crate_owners"] == {
            "octo-lib": ["hubot", "octocat"],
            "octo-lib-macros": ["hubot", "octocat"],
        }

    def test_owners_are_those_at_mint_time_whatever_the_policy_says_later(
        self, service_factory: ServiceFactory
    ) -> None:
        service = service_factory(BOOTSTRAP_POLICY.format(owners='["octocat"]'))
        before = service.token()
        service.write_policy("policies.toml", BOOTSTRAP_POLICY.format(owners='["mallory"]'))
        assert service.services().policies.reload()
        after = service.token()
        owners = service.introspect(before).json()["new_crate_owners"]
        assert owners["octo-lib"] == ["octocat"]
        assert service.introspect(after).json()["new_crate_owners"]["octo-lib"] == ["mallory"]

    @pytest.mark.parametrize("token", ["", "garbage", "trustpub_" + "a" * 38])
    def test_malformed_or_unknown_tokens_are_inactive(self, service: Service, token: str) -> None:
        response = service.introspect(token)
        assert response.status_code == 200
        assert response.json() == {"active": False}

    def test_unknown_well_formed_token_is_inactive(self, service: Service) -> None:
        assert service.introspect(generate_token()).json() == {"active": False}

    def test_missing_credential(self, service: Service) -> None:
        response = service.client.post(INTROSPECT, json={"token": "x"})
        assert response.status_code == 401
        assert detail(response) == "Missing `Authorization` header"

    def test_wrong_credential(self, service: Service) -> None:
        token = service.token()
        response = service.client.post(
            INTROSPECT,
            json={"token": token},
            headers={"Authorization": f"Bearer {CREDENTIAL}x"},
        )
        assert response.status_code == 401
        assert detail(response) == "Invalid registry credential"
        assert token not in response.text

    def test_disabled_without_configured_credentials(self, service_factory: ServiceFactory) -> None:
        service = service_factory(introspection_credentials=())
        response = service.introspect("x")
        assert response.status_code == 403
        assert "no registry credentials are configured" in detail(response)

    def test_token_field_required(self, service: Service) -> None:
        response = service.client.post(INTROSPECT, json={}, headers={"Authorization": CREDENTIAL})
        assert response.status_code == 422
        assert detail(response) == "Missing field `token`"


def test_a_credential_configured_as_its_sha256_is_accepted(
    service_factory: ServiceFactory,
) -> None:
    import hashlib

    digest = hashlib.sha256(CREDENTIAL.encode()).hexdigest()
    service = service_factory(introspection_credentials=(f"sha256:{digest}",))
    token = service.token()
    assert service.introspect(token).json()["active"] is True
    wrong = service.client.post(
        INTROSPECT, json={"token": token}, headers={"Authorization": f"sha256:{digest}"}
    )
    assert wrong.status_code == 401
