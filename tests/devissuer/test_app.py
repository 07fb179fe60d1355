from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.devissuer.conftest import ISSUER_URL
from trustpub.devissuer import DevIssuer, create_app


@pytest.fixture
async def client(issuer: DevIssuer) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(issuer))
    async with httpx.AsyncClient(transport=transport, base_url=ISSUER_URL) as c:
        yield c


def auth(issuer: DevIssuer) -> dict[str, str]:
    return {"Authorization": f"bearer {issuer.request_token}"}


def unverified(token: str) -> dict[str, object]:
    claims: dict[str, object] = jwt.decode(token, options={"verify_signature": False})
    return claims


@pytest.mark.anyio
async def test_discovery_and_jwks_are_served(client: httpx.AsyncClient, issuer: DevIssuer) -> None:
    doc = (await client.get("/.well-known/openid-configuration")).json()
    assert doc["issuer"] == ISSUER_URL
    jwks = (await client.get(doc["jwks_uri"].removeprefix(ISSUER_URL))).json()
    assert jwks == issuer.jwks()


@pytest.mark.anyio
async def test_token_request_protocol_returns_a_jwt_for_the_audience(
    client: httpx.AsyncClient, issuer: DevIssuer
) -> None:
    response = await client.get(
        "/token?api-version=2.0&audience=localhost%3A8080", headers=auth(issuer)
    )
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    assert unverified(response.json()["value"])["aud"] == "localhost:8080"


@pytest.mark.anyio
async def test_token_without_audience_gets_githubs_default(
    client: httpx.AsyncClient, issuer: DevIssuer
) -> None:
    response = await client.get("/token?api-version=2.0", headers=auth(issuer))
    assert unverified(response.json()["value"])["aud"] == "https://github.com/octo-org"


@pytest.mark.anyio
async def test_gitlab_token_requires_an_audience(rsa_key: rsa.RSAPrivateKey) -> None:
    issuer = DevIssuer(ISSUER_URL, key=rsa_key, provider="gitlab")
    transport = httpx.ASGITransport(app=create_app(issuer))
    async with httpx.AsyncClient(transport=transport, base_url=ISSUER_URL) as client:
        response = await client.get("/token?api-version=2.0", headers=auth(issuer))
    assert response.status_code == 400


@pytest.mark.anyio
@pytest.mark.parametrize(
    "header",
    [None, "bearer wrong", "Basic abc", "bearer", "token-without-scheme"],
)
async def test_token_requires_the_request_token(
    client: httpx.AsyncClient, header: str | None
) -> None:
    headers = {} if header is None else {"Authorization": header}
    response = await client.get("/token?audience=a", headers=headers)
    assert response.status_code == 401
    assert "value" not in response.json()


@pytest.mark.anyio
async def test_bearer_scheme_is_case_insensitive(
    client: httpx.AsyncClient, issuer: DevIssuer
) -> None:
    response = await client.get(
        "/token?audience=a", headers={"Authorization": f"Bearer {issuer.request_token}"}
    )
    assert response.status_code == 200


@pytest.mark.anyio
async def test_mint_applies_json_overrides(client: httpx.AsyncClient, issuer: DevIssuer) -> None:
    response = await client.post(
        "/mint",
        headers=auth(issuer),
        json={"aud": "reg.example", "repository": "me/crate", "environment": "release"},
    )
    claims = unverified(response.json()["value"])
    assert claims["aud"] == "reg.example"
    assert claims["repository_owner"] == "me"
    assert claims["sub"] == "repo:me/crate:environment:release"


@pytest.mark.anyio
async def test_mint_overrides_may_be_named_like_its_parameters(
    client: httpx.AsyncClient, issuer: DevIssuer
) -> None:
    response = await client.post(
        "/mint?audience=q.example", headers=auth(issuer), json={"self": 1, "issuer": "x"}
    )
    assert response.status_code == 200
    claims = unverified(response.json()["value"])
    assert (claims["aud"], claims["self"], claims["issuer"]) == ("q.example", 1, "x")


@pytest.mark.anyio
async def test_mint_refuses_an_audience_override_and_names_aud(
    client: httpx.AsyncClient, issuer: DevIssuer
) -> None:
    response = await client.post(
        "/mint?audience=q.example", headers=auth(issuer), json={"audience": "x"}
    )
    assert response.status_code == 400
    assert response.json()["message"] == (
        "'audience' is not a claim: set the audience with 'aud' or ?audience="
    )


@pytest.mark.anyio
async def test_mint_refuses_deeply_nested_overrides(
    client: httpx.AsyncClient, issuer: DevIssuer
) -> None:
    body = b'{"x":' + b"[" * 5000 + b"]" * 5000 + b"}"
    response = await client.post("/mint?audience=a", headers=auth(issuer), content=body)
    assert response.status_code == 400
    assert "nested too deeply" in response.json()["message"]


@pytest.mark.anyio
async def test_mint_takes_the_audience_from_the_query(
    client: httpx.AsyncClient, issuer: DevIssuer
) -> None:
    response = await client.post("/mint?audience=q.example", headers=auth(issuer))
    assert unverified(response.json()["value"])["aud"] == "q.example"


@pytest.mark.anyio
@pytest.mark.parametrize("body", [b"[1]", b"not json", b'{"repository": "x"}', b'{"aud": 5}'])
async def test_mint_refuses_bad_bodies(
    client: httpx.AsyncClient, issuer: DevIssuer, body: bytes
) -> None:
    response = await client.post("/mint", headers=auth(issuer), content=body)
    assert response.status_code == 400


@pytest.mark.anyio
async def test_mint_requires_the_request_token(client: httpx.AsyncClient) -> None:
    response = await client.post("/mint", json={"aud": "a"})
    assert response.status_code == 401


@pytest.mark.anyio
async def test_mint_refuses_huge_bodies(client: httpx.AsyncClient, issuer: DevIssuer) -> None:
    response = await client.post("/mint", headers=auth(issuer), content=b" " * (65 * 1024))
    assert response.status_code == 413


@pytest.fixture
async def client_with_audience(
    rsa_key: rsa.RSAPrivateKey,
) -> AsyncIterator[tuple[httpx.AsyncClient, DevIssuer]]:
    issuer = DevIssuer(ISSUER_URL, key=rsa_key, audience="localhost:9123")
    transport = httpx.ASGITransport(app=create_app(issuer))
    async with httpx.AsyncClient(transport=transport, base_url=ISSUER_URL) as c:
        yield c, issuer


@pytest.mark.anyio
async def test_the_issuers_audience_is_the_default_of_token_and_mint(
    client_with_audience: tuple[httpx.AsyncClient, DevIssuer],
) -> None:
    client, issuer = client_with_audience
    token = await client.get("/token?api-version=2.0", headers=auth(issuer))
    assert unverified(token.json()["value"])["aud"] == "localhost:9123"
    minted = await client.post("/mint", headers=auth(issuer))
    assert unverified(minted.json()["value"])["aud"] == "localhost:9123"
    # A request that names an audience still gets it.
    named = await client.post("/mint?audience=q.example", headers=auth(issuer))
    assert unverified(named.json()["value"])["aud"] == "q.example"
    in_body = await client.post("/mint", headers=auth(issuer), json={"aud": "b.example"})
    assert unverified(in_body.json()["value"])["aud"] == "b.example"
    wrong_type = await client.post("/mint", headers=auth(issuer), json={"aud": 5})
    assert wrong_type.status_code == 400


@pytest.mark.anyio
async def test_mint_without_any_audience_says_where_one_can_come_from(
    client: httpx.AsyncClient, issuer: DevIssuer
) -> None:
    response = await client.post("/mint", headers=auth(issuer))
    assert response.status_code == 400
    assert "dev-issuer --audience" in response.json()["message"]


@pytest.mark.anyio
async def test_mint_format_raw_answers_the_jwt_alone_for_a_pipe(
    client: httpx.AsyncClient, issuer: DevIssuer
) -> None:
    response = await client.post(
        "/mint?audience=q.example&format=raw", headers=auth(issuer), json={"ref": "refs/heads/x"}
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert response.headers["cache-control"] == "no-store"
    assert response.text.endswith("\n")
    assert response.text.count("\n") == 1
    claims = unverified(response.text.strip())
    assert (claims["aud"], claims["ref"]) == ("q.example", "refs/heads/x")


@pytest.mark.anyio
@pytest.mark.parametrize("query", ["format=xml", "format=", "format=RAW"])
async def test_mint_refuses_an_unknown_format(
    client: httpx.AsyncClient, issuer: DevIssuer, query: str
) -> None:
    response = await client.post(f"/mint?audience=a&{query}", headers=auth(issuer))
    assert response.status_code == 400
    assert response.json() == {"message": "format must be json or raw"}
