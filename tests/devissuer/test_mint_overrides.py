"""/mint overrides are claims, whatever their names: never a 500."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import pytest

from tests.devissuer.conftest import ISSUER_URL
from trustpub.devissuer import DevIssuer, create_app

pytestmark = pytest.mark.anyio


@pytest.fixture
async def client(issuer: DevIssuer) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(issuer), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url=ISSUER_URL) as c:
        yield c


async def mint(client: httpx.AsyncClient, issuer: DevIssuer, body: Any) -> httpx.Response:
    return await client.post(
        "/mint?audience=reg.example",
        headers={"Authorization": f"bearer {issuer.request_token}"},
        content=body if isinstance(body, bytes) else None,
        json=None if isinstance(body, bytes) else body,
    )


async def test_an_override_named_audience_is_a_400_saying_to_use_aud(
    client: httpx.AsyncClient, issuer: DevIssuer
) -> None:
    response = await mint(client, issuer, {"audience": "x"})
    assert response.status_code == 400
    assert "'aud'" in response.json()["message"]


@pytest.mark.parametrize(
    "name", ["self", "provider", "issuer", "now", "lifetime", "overrides", "claims", "kwargs"]
)
async def test_overrides_named_like_a_parameter_are_plain_claims(
    client: httpx.AsyncClient, issuer: DevIssuer, name: str
) -> None:
    response = await mint(client, issuer, {name: "v"})
    assert response.status_code == 200, response.text
    claims = jwt.decode(response.json()["value"], options={"verify_signature": False})
    assert claims[name] == "v"
    assert claims["aud"] == "reg.example"


def test_the_python_api_takes_such_names_as_claims_too(issuer: DevIssuer) -> None:
    claims = issuer.claims("reg.example", audience="x", self="y")
    assert (claims["aud"], claims["audience"], claims["self"]) == ("reg.example", "x", "y")


@pytest.mark.parametrize("iss", [5, None, ["a"], "http://[", "not a url"])
async def test_odd_issuer_overrides_never_crash(
    client: httpx.AsyncClient, issuer: DevIssuer, iss: Any
) -> None:
    response = await mint(client, issuer, {"iss": iss})
    assert response.status_code in (200, 400), response.text


async def test_deeply_nested_overrides_are_a_400(
    client: httpx.AsyncClient, issuer: DevIssuer
) -> None:
    response = await mint(client, issuer, b'{"x":' + b"[" * 30000 + b"]" * 30000 + b"}")
    assert response.status_code in (400, 413)
