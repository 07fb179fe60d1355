"""Token kinds and the two token authorities (in-process and remote introspection)."""

from __future__ import annotations

import json
from pathlib import Path
from types import MappingProxyType
from typing import Any

import httpx
import pytest

from tests.conftest import github_claims
from tests.policies.factories import GITHUB, github_policy, verified
from tests.registry.conftest import PROVENANCE
from trustpub.errors import StoreUnavailable
from trustpub.grants import Operation
from trustpub.policies import PolicySet
from trustpub.providers import InMemoryNamespacePins, match
from trustpub.registry.auth import LocalAuthority, RemoteAuthority
from trustpub.store.sqlite import SQLiteStore
from trustpub.tokens import REGISTRY_TOKENS, TRUSTPUB_TOKENS, generate_token, token_hash
from trustpub.tokens.record import TokenRecord
from trustpub.tokens.service import TokenService

NOW = 1_800_000_000


def test_user_and_trustpub_tokens_are_told_apart() -> None:
    user, trusted = REGISTRY_TOKENS.generate(), generate_token()
    assert REGISTRY_TOKENS.is_well_formed(user)
    assert not TRUSTPUB_TOKENS.is_well_formed(user)
    assert TRUSTPUB_TOKENS.is_well_formed(trusted)
    assert not REGISTRY_TOKENS.is_well_formed(trusted)
    assert not REGISTRY_TOKENS.is_well_formed(user[:-1])
    assert not REGISTRY_TOKENS.is_well_formed(user[:-1] + "!")
    # The prefix is part of the format: right length and alphabet are not enough.
    assert not REGISTRY_TOKENS.is_well_formed("x" * len(user))
    assert not REGISTRY_TOKENS.is_well_formed("tpreG_" + user[6:])
    assert not REGISTRY_TOKENS.is_well_formed(user + "a")
    assert REGISTRY_TOKENS.generate() != user


def record(
    crates: dict[str, set[Operation]],
    policies: tuple[str, ...],
    owners: dict[str, tuple[str, ...]] | None = None,
) -> TokenRecord:
    return TokenRecord(
        crates=MappingProxyType({k: frozenset(v) for k, v in crates.items()}),
        issued_at=NOW,
        expires_at=NOW + 600,
        provenance=PROVENANCE,
        policies=policies,
        new_crate_owners=MappingProxyType(owners or {}),
    )


@pytest.mark.anyio
async def test_local_authority_reads_the_shared_store(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "store.db")
    try:
        token = generate_token()
        rec = record({"fresh": {Operation.PUBLISH_NEW}}, ("ci.toml#a",), {"fresh": ("alice",)})
        await store.issue(b"j" * 32, NOW + 900, token_hash(token), rec.to_json(), NOW + 600)
        authority = LocalAuthority(TokenService(store, clock=lambda: NOW))
        trusted = await authority.introspect(token)
        assert trusted is not None
        assert trusted.record == rec
        # The owners the record carries, not a lookup of its (here nonexistent) policies.
        assert trusted.new_crate_owners == {"fresh": ("alice",)}
        assert await authority.introspect(generate_token()) is None
    finally:
        await store.aclose()


@pytest.mark.anyio
async def test_local_authority_keeps_the_owners_of_minting_time(tmp_path: Path) -> None:
    def policies(owners: tuple[str, ...]) -> PolicySet:
        policy = github_policy(
            crates=("fresh",), operations=frozenset({Operation.PUBLISH_NEW}), owners=owners
        )
        return PolicySet([policy])

    store = SQLiteStore(tmp_path / "store.db")
    try:
        tokens = TokenService(store)
        pins = InMemoryNamespacePins()
        grant = await match(
            policies(("alice",)), verified(GITHUB, github_claims()), pins, max_ttl=600
        )
        issued = await tokens.mint(grant, verified(GITHUB, github_claims()))
        # The policy now names someone else; the token minted before must not follow.
        edited = await match(
            policies(("mallory",)), verified(GITHUB, github_claims()), pins, max_ttl=600
        )
        assert edited.new_crate_owners == {"fresh": ("mallory",)}
        trusted = await LocalAuthority(tokens).introspect(issued.token)
        assert trusted is not None
        assert trusted.new_crate_owners == {"fresh": ("alice",)}
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
    handler = Introspection(body=active_body())
    token = generate_token()
    trusted = await remote(handler).introspect(token)
    assert trusted is not None
    assert trusted.record.crates == {"demo": frozenset({Operation.PUBLISH_UPDATE, Operation.YANK})}
    assert trusted.record.provenance == PROVENANCE
    assert trusted.record.policies == ("ci.toml#a",)
    assert trusted.new_crate_owners == {}
    (request,) = handler.requests
    assert str(request.url) == "https://trustpub.example/api/v1/trusted_publishing/introspect"
    assert request.headers["authorization"] == "Bearer registry-secret-123456"
    assert json.loads(request.content) == {"token": token}


@pytest.mark.anyio
async def test_remote_authority_takes_owners_from_the_answer() -> None:
    body = active_body(
        crates={"demo": ["publish-update"], "fresh": ["publish-new"]},
        new_crate_owners={"fresh": ["alice", "bob"]},
    )
    trusted = await remote(Introspection(body=body)).introspect(generate_token())
    assert trusted is not None
    assert trusted.new_crate_owners == {"fresh": ("alice", "bob")}
    assert trusted.record.new_crate_owners == {"fresh": ("alice", "bob")}


@pytest.mark.anyio
async def test_remote_authority_answer_without_owners_creates_no_crate() -> None:
    # An older trustpub does not send the field: tolerated, and nobody is named.
    body = active_body(crates={"fresh": ["publish-new"]})
    trusted = await remote(Introspection(body=body)).introspect(generate_token())
    assert trusted is not None
    assert trusted.new_crate_owners == {}


@pytest.mark.anyio
async def test_remote_authority_reads_the_token_lifetime_from_the_answer() -> None:
    trusted = await remote(Introspection(body=active_body())).introspect(generate_token())
    assert trusted is not None
    assert trusted.record.issued_at == NOW
    assert trusted.record.expires_at == NOW + 1800
    # An older trustpub does not send `issued_at` (nor `policies`): tolerated.
    body = active_body()
    del body["issued_at"], body["policies"]
    trusted = await remote(Introspection(body=body)).introspect(generate_token())
    assert trusted is not None
    assert trusted.record.issued_at == 0
    assert trusted.record.policies == ()


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
        Introspection(body=active_body(new_crate_owners=["demo"])),
        # Owners for a crate the token may only update: not a real grant, so refused.
        Introspection(body=active_body(new_crate_owners={"demo": ["alice"]})),
        # Only 200 is an answer, even with a well-formed body.
        Introspection(status=201, body=active_body()),
        Introspection(status=203, body=active_body()),
        # `active` must be a boolean: a truthy string or number is not `true`.
        Introspection(body=active_body(active="true")),
        Introspection(body=active_body(active=1)),
        Introspection(body=active_body(active=None)),
        Introspection(body={"crates": {"demo": ["yank"]}}),
        # Crates: an object of non-empty operation lists.
        Introspection(body=active_body(crates=["demo"])),
        Introspection(body=active_body(crates={"demo": []})),
        Introspection(body=active_body(crates={"demo": {"yank": True}})),
        Introspection(body=active_body(crates={"demo": "yank"})),
        # Policies: a list of strings.
        Introspection(body=active_body(policies="ci.toml#a")),
        Introspection(body=active_body(policies=["ci.toml#a", 7])),
        Introspection(body=active_body(policies={"ci.toml#a": True})),
    ],
)
async def test_remote_authority_failures_deny_with_503(handler: Introspection) -> None:
    with pytest.raises(StoreUnavailable) as info:
        await remote(handler).introspect(generate_token())
    if handler.status == 200:
        assert info.value.detail == "Token introspection answered malformed data"
    else:
        assert info.value.detail == f"Token introspection unavailable (HTTP {handler.status})"


@pytest.mark.anyio
async def test_remote_authority_network_errors_deny() -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    client = httpx.AsyncClient(transport=httpx.MockTransport(fail))
    authority = RemoteAuthority(client, "https://trustpub.example", "registry-secret-123456")
    with pytest.raises(StoreUnavailable) as info:
        await authority.introspect(generate_token())
    # No HTTP status to report: the detail does not invent one.
    assert info.value.detail == "Token introspection unavailable"


@pytest.mark.anyio
async def test_remote_authority_retries_a_refused_connection_once() -> None:
    answer = Introspection(body=active_body())
    calls: list[httpx.Request] = []

    def flaky(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1:
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
        return answer(request)

    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    client = httpx.AsyncClient(transport=httpx.MockTransport(flaky))
    authority = RemoteAuthority(
        client, "https://trustpub.example", "registry-secret-123456", clock=lambda: NOW, sleep=sleep
    )
    assert await authority.introspect(generate_token()) is not None
    assert len(calls) == 2
    assert sleeps == [0.25]


@pytest.mark.anyio
async def test_remote_authority_gives_up_after_two_attempts_and_logs_no_secret(
    caplog: pytest.LogCaptureFixture,
) -> None:
    handler = Introspection(status=502, body={})

    async def sleep(seconds: float) -> None:
        return None

    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    authority = RemoteAuthority(
        client, "https://trustpub.example", "registry-secret-123456", sleep=sleep
    )
    token = generate_token()
    with (
        caplog.at_level("WARNING", logger="trustpub.registry"),
        pytest.raises(StoreUnavailable),
    ):
        await authority.introspect(token)
    assert len(handler.requests) == 2
    assert "answered HTTP 502" in caplog.text
    assert token not in caplog.text
    assert "registry-secret-123456" not in caplog.text
