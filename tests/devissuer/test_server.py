from __future__ import annotations

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from trustpub.devissuer import serve_in_thread
from trustpub.oidc import KeySets, Verifier


def test_served_issuer_answers_the_actions_token_request(rsa_key: rsa.RSAPrivateKey) -> None:
    with serve_in_thread(key=rsa_key) as issuer:
        assert issuer.url.startswith("http://127.0.0.1:")
        env = issuer.actions_env()
        response = httpx.get(
            env["ACTIONS_ID_TOKEN_REQUEST_URL"] + "&audience=localhost%3A8080",
            headers={"Authorization": f"bearer {env['ACTIONS_ID_TOKEN_REQUEST_TOKEN']}"},
        )
        assert response.status_code == 200
        assert response.json()["value"].count(".") == 2


def test_server_stops_when_the_block_exits(rsa_key: rsa.RSAPrivateKey) -> None:
    with serve_in_thread(key=rsa_key) as issuer:
        url = issuer.url
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/.well-known/jwks")


def test_serve_in_thread_refuses_a_non_loopback_host() -> None:
    with pytest.raises(ValueError, match="not a loopback"), serve_in_thread(host="0.0.0.0"):
        pass


@pytest.mark.anyio
async def test_trustpub_verifies_a_token_of_the_served_issuer(rsa_key: rsa.RSAPrivateKey) -> None:
    # The real verifier, the real key fetch over HTTP: what `trustpub serve` will do.
    with serve_in_thread(key=rsa_key, provider="gitlab") as issuer:
        async with httpx.AsyncClient() as http:
            verifier = Verifier([issuer.trustpub_issuer()], "localhost:8080", KeySets(http))
            verified = await verifier.verify(issuer.mint("localhost:8080", project_path="me/crate"))
    assert verified.issuer.url == issuer.url
    assert verified.claims["namespace_path"] == "me"
