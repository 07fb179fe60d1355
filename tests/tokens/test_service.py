"""TokenService: mint, introspect, revoke and replay, on the real SQLite store."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import github_claims, gitlab_claims
from trustpub.errors import InvalidJWT, JWTReplayed, StoreUnavailable
from trustpub.grants import Grant, Operation, Provenance
from trustpub.oidc.claims import VerifiedClaims
from trustpub.oidc.issuers import GITHUB_ISSUER, Issuer
from trustpub.store import RedisStore, SQLiteStore, Store
from trustpub.tokens import (
    IssuedToken,
    TokenRecord,
    TokenService,
    generate_token,
    is_well_formed,
    jti_key,
    token_hash,
)
from trustpub.tokens.service import JTI_MARGIN_SECONDS

pytestmark = pytest.mark.anyio

GITHUB = Issuer(GITHUB_ISSUER, "github")
PROVENANCE = Provenance(issuer=GITHUB_ISSUER, provider="github", repository="octo-org/octo-lib")


class Clock:
    def __init__(self) -> None:
        self.now = float(int(time.time()))

    def __call__(self) -> float:
        return self.now


class RecordingStore:
    """A real store that records every call, to check what the service sends it."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    async def issue(
        self,
        jti_key: bytes,
        jti_expires_at: int,
        token_hash: bytes,
        record: bytes,
        token_expires_at: int,
    ) -> bool:
        args = (jti_key, jti_expires_at, token_hash, record, token_expires_at)
        self.calls.append(("issue", args))
        return await self.inner.issue(*args)

    async def lookup(self, token_hash: bytes) -> bytes | None:
        self.calls.append(("lookup", (token_hash,)))
        return await self.inner.lookup(token_hash)

    async def revoke(self, token_hash: bytes) -> bool:
        self.calls.append(("revoke", (token_hash,)))
        return await self.inner.revoke(token_hash)

    async def get_namespace_pin(self, key: str) -> str | None:
        self.calls.append(("get_namespace_pin", (key,)))
        return await self.inner.get_namespace_pin(key)

    async def pin_namespace(self, key: str, namespace_id: str) -> str:
        self.calls.append(("pin_namespace", (key, namespace_id)))
        return await self.inner.pin_namespace(key, namespace_id)

    async def ping(self) -> None:
        await self.inner.ping()

    async def aclose(self) -> None:
        await self.inner.aclose()

    def saw(self, text: str) -> bool:
        needle = text.encode()
        for _, args in self.calls:
            for arg in args:
                if isinstance(arg, str) and text in arg:
                    return True
                if isinstance(arg, bytes) and needle in arg:
                    return True
        return False


def grant(**overrides: Any) -> Grant:
    fields: dict[str, Any] = {
        "crates": {
            "octo-lib": frozenset({Operation.PUBLISH_UPDATE}),
            "octo-derive": frozenset({Operation.PUBLISH_NEW, Operation.PUBLISH_UPDATE}),
        },
        "ttl_seconds": 1800,
        "policies": ("octo-release",),
        "provenance": PROVENANCE,
        "new_crate_owners": {"octo-derive": ("alice", "bob")},
    }
    fields.update(overrides)
    return Grant(**fields)


def verified(issuer: Issuer = GITHUB, **overrides: Any) -> VerifiedClaims:
    claims = (github_claims if issuer.provider == "github" else gitlab_claims)(**overrides)
    return VerifiedClaims(
        issuer=issuer,
        jti=claims["jti"],
        issued_at=claims["iat"],
        expires_at=claims["exp"],
        claims=claims,
    )


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "trustpub.db"


@pytest.fixture
async def store(db: Path) -> AsyncIterator[RecordingStore]:
    inner = SQLiteStore(db)
    yield RecordingStore(inner)
    await inner.aclose()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def service(store: RecordingStore, clock: Clock) -> TokenService:
    return TokenService(store, clock=clock)


def stored_tokens(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        return int(conn.execute("SELECT count(*) FROM tokens").fetchone()[0])
    finally:
        conn.close()


async def test_minted_token_introspects_to_what_the_grant_allows(
    service: TokenService, clock: Clock
) -> None:
    issued = await service.mint(grant(), verified())
    assert is_well_formed(issued.token)
    record = await service.introspect(issued.token)
    assert record == issued.record
    assert record is not None
    assert dict(record.crates) == {
        "octo-lib": {Operation.PUBLISH_UPDATE},
        "octo-derive": {Operation.PUBLISH_NEW, Operation.PUBLISH_UPDATE},
    }
    assert record.issued_at == int(clock.now)
    assert record.expires_at == int(clock.now) + 1800
    assert record.provenance == PROVENANCE
    assert record.policies == ("octo-release",)
    assert record.new_crate_owners == {"octo-derive": ("alice", "bob")}


async def test_the_minted_record_keeps_its_owners_if_the_grant_mapping_changes(
    service: TokenService,
) -> None:
    owners = {"octo-derive": ("alice",)}
    issued = await service.mint(grant(new_crate_owners=owners), verified())
    owners["octo-derive"] = ("mallory",)
    assert issued.record.new_crate_owners == {"octo-derive": ("alice",)}
    record = await service.introspect(issued.token)
    assert record is not None
    assert record.new_crate_owners == {"octo-derive": ("alice",)}


async def test_store_never_receives_the_plain_token(
    service: TokenService, store: RecordingStore
) -> None:
    issued = await service.mint(grant(), verified())
    await service.introspect(issued.token)
    await service.revoke(issued.token)
    assert [name for name, _ in store.calls] == ["issue", "lookup", "revoke"]
    assert not store.saw(issued.token)
    assert not store.saw(issued.token[len("trustpub_") :])
    assert all(args[-1] == token_hash(issued.token) for name, args in store.calls[1:])
    assert store.calls[0][1][2] == token_hash(issued.token)


async def test_jti_is_claimed_until_exp_plus_leeway_plus_margin(
    service: TokenService, store: RecordingStore
) -> None:
    claims = verified()
    await service.mint(grant(), claims)
    other = verified()
    await service.mint(grant(), other, leeway=120)
    first, second = (args for name, args in store.calls if name == "issue")
    assert first[0] == hashlib.sha256(f"{GITHUB_ISSUER}\n{claims.jti}".encode()).digest()
    assert first[0] == jti_key(GITHUB_ISSUER, claims.jti)
    assert first[1] == claims.expires_at + 60 + JTI_MARGIN_SECONDS
    assert second[1] == other.expires_at + 120 + JTI_MARGIN_SECONDS


async def test_jti_claim_outlives_an_already_expired_jwt(
    service: TokenService, store: RecordingStore, clock: Clock
) -> None:
    # Verification should have refused it; the claim must still not be in the past.
    claims = verified(exp=int(clock.now) - 3600)
    await service.mint(grant(), claims)
    (args,) = (args for name, args in store.calls if name == "issue")
    assert args[1] > clock.now


async def test_replayed_jwt_is_refused_and_stores_nothing(service: TokenService, db: Path) -> None:
    claims = verified()
    await service.mint(grant(), claims)
    with pytest.raises(JWTReplayed) as info:
        await service.mint(grant(), claims)
    assert info.value.detail == "JWT has already been used"
    assert stored_tokens(db) == 1


async def test_concurrent_exchanges_of_one_jwt_yield_exactly_one_token(
    service: TokenService, db: Path
) -> None:
    claims = verified()
    results = await asyncio.gather(
        *(service.mint(grant(), claims) for _ in range(30)), return_exceptions=True
    )
    assert sum(isinstance(r, IssuedToken) for r in results) == 1
    assert sum(isinstance(r, JWTReplayed) for r in results) == 29
    assert stored_tokens(db) == 1


async def test_services_in_separate_processes_share_the_replay_guard(db: Path) -> None:
    one, two = SQLiteStore(db), SQLiteStore(db)
    claims = verified()
    try:
        await TokenService(one).mint(grant(), claims)
        with pytest.raises(JWTReplayed):
            await TokenService(two).mint(grant(), claims)
    finally:
        await one.aclose()
        await two.aclose()


async def test_same_jti_from_another_issuer_is_not_a_replay(service: TokenService) -> None:
    gitlab = Issuer("https://gitlab.com", "gitlab")
    github_claims_set = verified(jti="shared-jti")
    gitlab_claims_set = verified(gitlab, jti="shared-jti")
    first = await service.mint(grant(), github_claims_set)
    second = await service.mint(grant(), gitlab_claims_set)
    assert first.token != second.token


async def test_missing_jti_is_refused_before_the_store(
    service: TokenService, store: RecordingStore
) -> None:
    with pytest.raises(InvalidJWT, match="jti"):
        await service.mint(grant(), verified(jti=""))
    assert store.calls == []


NOTHING_GRANTED = "a grant must name at least one crate, each with operations"
OWNERS_ELSEWHERE = "a grant names owners only for crates it may create"


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"crates": {}, "new_crate_owners": {}}, NOTHING_GRANTED),
        ({"crates": {"octo-lib": frozenset()}, "new_crate_owners": {}}, NOTHING_GRANTED),
        (
            {
                "crates": {"a": frozenset({Operation.YANK}), "b": frozenset()},
                "new_crate_owners": {},
            },
            NOTHING_GRANTED,
        ),
        ({"ttl_seconds": 0}, "a grant's ttl_seconds must be positive"),
        ({"ttl_seconds": -1}, "a grant's ttl_seconds must be positive"),
        # Owners for a crate the grant may only update, or does not name at all.
        ({"new_crate_owners": {"octo-lib": ("alice",)}}, OWNERS_ELSEWHERE),
        ({"new_crate_owners": {"elsewhere": ("alice",)}}, OWNERS_ELSEWHERE),
        (
            {"new_crate_owners": {"octo-derive": ("alice",), "octo-lib": ("alice",)}},
            OWNERS_ELSEWHERE,
        ),
    ],
)
async def test_a_grant_that_grants_nothing_or_never_expires_mints_nothing(
    service: TokenService, store: RecordingStore, bad: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match="grant") as info:
        await service.mint(grant(**bad), verified())
    assert str(info.value) == message
    assert store.calls == []


async def test_shortest_lifetime_and_no_leeway_are_allowed(
    service: TokenService, store: RecordingStore, clock: Clock
) -> None:
    claims = verified()
    issued = await service.mint(grant(ttl_seconds=1), claims, leeway=0)
    assert issued.record.expires_at == int(clock.now) + 1
    ((_name, args),) = store.calls
    assert args[1] == max(claims.expires_at, int(clock.now)) + JTI_MARGIN_SECONDS


async def test_negative_leeway_is_refused(service: TokenService, store: RecordingStore) -> None:
    with pytest.raises(ValueError, match="leeway"):
        await service.mint(grant(), verified(), leeway=-1)
    assert store.calls == []


@pytest.mark.parametrize(
    "token", ["", "garbage", "trustpub_" + "A" * 38, "Bearer x", "eyJhbGciOiJSUzI1NiJ9.e30.sig"]
)
async def test_malformed_token_introspects_to_none_without_the_store(
    service: TokenService, store: RecordingStore, token: str
) -> None:
    assert await service.introspect(token) is None
    assert not await service.revoke(token)
    assert store.calls == []


async def test_unknown_token_introspects_to_none(
    service: TokenService, store: RecordingStore
) -> None:
    assert await service.introspect(generate_token()) is None
    assert [name for name, _ in store.calls] == ["lookup"]


async def test_expired_token_introspects_to_none(service: TokenService, clock: Clock) -> None:
    issued = await service.mint(grant(ttl_seconds=60), verified())
    clock.now += 59
    assert await service.introspect(issued.token) is not None
    # The store (on the real clock) still holds it: the service's own check refuses it.
    clock.now += 1
    assert await service.introspect(issued.token) is None


async def test_token_past_expiry_in_the_store_introspects_to_none(
    service: TokenService, clock: Clock
) -> None:
    clock.now -= 3600  # minted an hour ago with a 30 minute lifetime
    issued = await service.mint(grant(), verified())
    clock.now += 3600
    assert await service.introspect(issued.token) is None


async def test_revoked_token_introspects_to_none(service: TokenService) -> None:
    issued = await service.mint(grant(), verified())
    assert await service.revoke(issued.token)
    assert await service.introspect(issued.token) is None
    assert not await service.revoke(issued.token)


async def test_revoking_an_unknown_token_is_false(service: TokenService) -> None:
    assert not await service.revoke(generate_token())


async def test_corrupt_stored_record_is_inactive_and_logged_without_the_token(
    service: TokenService, store: RecordingStore, caplog: pytest.LogCaptureFixture
) -> None:
    token = generate_token()
    expires = int(time.time()) + 600
    await store.issue(b"j" * 32, expires, token_hash(token), b'{"v":1,"crates":"all"}', expires)
    with caplog.at_level(logging.DEBUG, logger="trustpub"):
        assert await service.introspect(token) is None
    (error,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    # A prefix of the hash identifies the entry for an operator; the whole hash would
    # be the store's key for the token.
    assert getattr(error, "fields", None) == {"token_hash": token_hash(token).hex()[:16]}
    assert token not in caplog.text
    assert token[len("trustpub_") :] not in caplog.text


async def test_nothing_logged_carries_the_token(
    service: TokenService, caplog: pytest.LogCaptureFixture
) -> None:
    claims = verified()
    with caplog.at_level(logging.DEBUG, logger="trustpub"):
        issued = await service.mint(grant(), claims)
        with pytest.raises(JWTReplayed):
            await service.mint(grant(), claims)
        await service.introspect(issued.token)
        await service.revoke(issued.token)
    assert caplog.records  # the replay is logged...
    assert issued.token not in caplog.text  # ...without the token


def test_issued_token_repr_hides_the_token() -> None:
    token = generate_token()
    record = TokenRecord(
        crates={"octo-lib": frozenset({Operation.PUBLISH_UPDATE})},
        issued_at=1,
        expires_at=2,
        provenance=PROVENANCE,
        policies=(),
    )
    issued = IssuedToken(token=token, record=record)
    assert token not in repr(issued)
    assert token not in str(issued)


async def test_unreachable_store_denies_instead_of_answering_unknown() -> None:
    store = RedisStore.from_url("redis://127.0.0.1:1/0")
    service = TokenService(store)
    try:
        with pytest.raises(StoreUnavailable):
            await service.introspect(generate_token())
        with pytest.raises(StoreUnavailable):
            await service.mint(grant(), verified())
        with pytest.raises(StoreUnavailable):
            await service.revoke(generate_token())
    finally:
        await store.aclose()


async def test_the_parse_of_a_record_is_kept_and_the_store_still_read_every_time(
    service: TokenService, store: RecordingStore, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    issued = await service.mint(grant(ttl_seconds=60), verified())
    parses: list[bytes] = []
    original = TokenRecord.from_json

    def counted(raw: bytes) -> TokenRecord:
        parses.append(raw)
        return original(raw)

    monkeypatch.setattr(TokenRecord, "from_json", staticmethod(counted))
    store.calls.clear()
    first = await service.introspect(issued.token)
    again = await service.introspect(issued.token)
    assert first is not None
    assert again is first
    assert len(parses) == 1
    assert [name for name, _ in store.calls] == ["lookup", "lookup"]
    # Kept parse or not, activity is the clock's and the store's to say.
    clock.now += 60
    assert await service.introspect(issued.token) is None
    clock.now -= 60
    assert await service.revoke(issued.token)
    assert await service.introspect(issued.token) is None


async def test_a_malformed_record_is_not_kept_and_the_kept_parses_are_bounded(
    service: TokenService, store: RecordingStore, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from trustpub.tokens import service as service_module

    monkeypatch.setattr(service_module, "PARSED_KEPT", 3)
    issued = [
        await service.mint(grant(ttl_seconds=60 + i), verified(jti=f"jti-{i}")) for i in range(5)
    ]
    for token in issued:
        assert await service.introspect(token.token) is not None
    assert len(service._parsed) == 3
    conn = sqlite3.connect(db)
    conn.execute("UPDATE tokens SET record = ?", (b'{"v": 1}',))
    conn.commit()
    conn.close()
    assert await service.introspect(issued[0].token) is None
    assert b'{"v": 1}' not in service._parsed
