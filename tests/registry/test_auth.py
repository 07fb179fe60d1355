"""Token kinds and the two token authorities (in-process and remote introspection)."""

from __future__ import annotations

import json
from pathlib import Path
from types import MappingProxyType
from typing import Any

import httpx
import pytest

from tests.registry.conftest import PROVENANCE
from trustpub.errors import StoreUnavailable
from trustpub.grants import Operation
from trustpub.policies import Policy, PolicySet
from trustpub.registry.auth import (
    LocalAuthority,
    RemoteAuthority,
    generate_user_token,
    is_trustpub_token,
    is_user_token,
    owners_from_policies,
)
from trustpub.store.sqlite import SQLiteStore
from trustpub.tokens.format import generate_token, token_hash
from trustpub.tokens.record import TokenRecord
from trustpub.tokens.service import TokenService

NOW = 1_800_000_000


def test_user_and_trustpub_tokens_are_told_apart() -> None:
    user, trusted = generate_user_token(), generate_token()
    assert is_user_token(user)
    assert not is_trustpub_token(user)
    assert is_trustpub_token(trusted)
    assert not is_user_token(trusted)
    assert not is_user_token(user[:-1])
    assert not is_user_token(user[:-1] + "!")
    assert generate_user_token() != user


def record(crates: dict[str, set[Operation]], policies: tuple[str, ...]) -> TokenRecord:
    return TokenRecord(
        crates=MappingProxyType({k: frozenset(v) for k, v in crates.items()}),
        issued_at=NOW,
        expires_at=NOW + 600,
        provenance=PROVENANCE,
        policies=policies,
    )


def policy(
    name: str, crates: tuple[str, ...], ops: set[Operation], owners: tuple[str, ...]
) -> Policy:
    return Policy(
        file="ci.toml",
        name=name,
        provider="github",
        issuer="https://token.actions.githubusercontent.com",
        crates=crates,
        repository="octo-org/octo-lib",
        workflow="release.yml",
        operations=frozenset(ops),
        owners=owners,
        repository_owner_id="131804563",
    )


def test_new_crate_owners_come_from_the_policies_that_grant_publish_new() -> None:
    policies = PolicySet(
        [
            policy("a", ("fresh", "old"), {Operation.PUBLISH_NEW}, ("alice",)),
            policy("b", ("fresh",), {Operation.PUBLISH_NEW}, ("bob", "alice")),
            policy("c", ("fresh",), {Operation.PUBLISH_UPDATE}, ()),
            policy("d", ("fresh",), {Operation.PUBLISH_NEW}, ("eve",)),  # not in the token
        ]
    )
    rec = record(
        {"fresh": {Operation.PUBLISH_NEW}, "old": {Operation.PUBLISH_UPDATE}},
        ("ci.toml#a", "ci.toml#b", "ci.toml#c", "gone.toml#x"),
    )
    assert owners_from_policies(rec, lambda: policies) == {"fresh": ("alice", "bob")}
    assert owners_from_policies(rec, None) == {}


@pytest.mark.anyio
async def test_local_authority_reads_the_shared_store(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "store.db")
    try:
        token = generate_token()
        rec = record({"fresh": {Operation.PUBLISH_NEW}}, ("ci.toml#a",))
        await store.issue(b"j" * 32, NOW + 900, token_hash(token), rec.to_json(), NOW + 600)
        policies = PolicySet([policy("a", ("fresh",), {Operation.PUBLISH_NEW}, ("alice",))])
        authority = LocalAuthority(TokenService(store, clock=lambda: NOW), lambda: policies)
        trusted = await authority.introspect(token)
        assert trusted is not None
        assert trusted.record == rec
        assert trusted.new_crate_owners == {"fresh": ("alice",)}
        assert await authority.introspect(generate_token()) is None
    finally:
        await store.aclose()


class Introspection:
    """A fake trustpub introspection endpoint."""

    def __init__(self, status: int = 200, body: Any = None) -> None:
        self.status = status
        self.body = body
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(self.status, json=self.body)


def active_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "active": True,
        "crates": {"demo": ["publish-update", "yank"]},
        "expires_at": "2027-01-15T08:30:00Z",  # NOW + 1800
        "issued_at": "2027-01-15T08:00:00Z",
        "provenance": PROVENANCE.to_json(),
        "policies": ["ci.toml#a"],
    }
    body.update(changes)
    return body


def remote(handler: Introspection, now: float = NOW) -> RemoteAuthority:
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return RemoteAuthority(
        client, "https://trustpub.example/", "registry-secret-123456", clock=lambda: now
    )


@pytest.mark.anyio
async def test_remote_authority_posts_the_token_with_the_credential() -> None:
    handler = Introspection(body=active_body(new_crate_owners={"demo": ["alice"]}))
    token = generate_token()
    trusted = await remote(handler).introspect(token)
    assert trusted is not None
    assert trusted.record.crates == {"demo": frozenset({Operation.PUBLISH_UPDATE, Operation.YANK})}
    assert trusted.record.provenance == PROVENANCE
    assert trusted.record.policies == ("ci.toml#a",)
    assert trusted.new_crate_owners == {"demo": ("alice",)}
    (request,) = handler.requests
    assert str(request.url) == "https://trustpub.example/api/v1/trusted_publishing/introspect"
    assert request.headers["authorization"] == "Bearer registry-secret-123456"
    assert json.loads(request.content) == {"token": token}


@pytest.mark.anyio
async def test_remote_authority_inactive_and_expired_tokens_are_none() -> None:
    assert await remote(Introspection(body={"active": False})).introspect(generate_token()) is None
    late = NOW + 1800
    assert (
        await remote(Introspection(body=active_body()), now=late).introspect(generate_token())
        is None
    )


@pytest.mark.anyio
async def test_remote_authority_does_not_ask_about_malformed_tokens() -> None:
    handler = Introspection(body=active_body())
    assert await remote(handler).introspect("trustpub_short") is None
    assert handler.requests == []


@pytest.mark.anyio
@pytest.mark.parametrize(
    "handler",
    [
        Introspection(status=500, body={"errors": []}),
        Introspection(status=401, body={"errors": [{"detail": "Invalid registry credential"}]}),
        Introspection(body=["active"]),
        Introspection(body={"active": "true"}),
        Introspection(body=active_body(crates={})),
        Introspection(body=active_body(crates={"demo": ["everything"]})),
        Introspection(body=active_body(expires_at=12345)),
        Introspection(body=active_body(expires_at="2027-01-15T08:00:00")),
        Introspection(body=active_body(provenance="github")),
        Introspection(body=active_body(new_crate_owners={"demo": "alice"})),
    ],
)
async def test_remote_authority_failures_deny_with_503(handler: Introspection) -> None:
    with pytest.raises(StoreUnavailable):
        await remote(handler).introspect(generate_token())


@pytest.mark.anyio
async def test_remote_authority_network_errors_deny() -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    client = httpx.AsyncClient(transport=httpx.MockTransport(fail))
    authority = RemoteAuthority(client, "https://trustpub.example", "registry-secret-123456")
    with pytest.raises(StoreUnavailable, match="introspection unavailable"):
        await authority.introspect(generate_token())
