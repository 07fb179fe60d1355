"""Minting, introspection and revocation of trustpub tokens."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol

from trustpub.errors import InvalidJWT, JWTReplayed
from trustpub.grants import Grant, Operation
from trustpub.oidc import VerifiedClaims
from trustpub.store import Store
from trustpub.tokens.format import generate_token, is_well_formed, token_hash
from trustpub.tokens.record import MalformedRecord, TokenRecord

logger = logging.getLogger(__name__)

DEFAULT_LEEWAY = 60
# Parsed records kept per service (``TokenService._record``): the tokens introspected
# over and over (a registry asks for each request of a publish) skip the parse.
PARSED_KEPT = 1024
# Kept on top of exp + leeway, so clock skew between our processes (or between us and
# Redis) cannot open a window in which the JWT verifies but its jti is forgotten.
JTI_MARGIN_SECONDS = 5


def jti_key(issuer: str, jti: str) -> bytes:
    """The replay key of a JWT: SHA-256 of issuer URL, newline, jti.

    The issuer is part of the key because a jti is only unique per issuer; the hash
    bounds the key's size whatever a (self-hosted) issuer puts in its jti.
    """
    return hashlib.sha256(f"{issuer}\n{jti}".encode()).digest()


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A freshly minted token and what it grants. The token is kept out of ``repr``."""

    token: str = field(repr=False)
    record: TokenRecord


class Gate(Protocol):
    """A check to pass before a token is looked up (``trustpub.ratelimit.AuthGate``)."""

    @property
    def call(self) -> tuple[object, list[str], list[Any]] | None: ...

    async def check(self) -> None: ...

    def settle(self, reply: object) -> None: ...


class TokenService:
    """Turns a ``Grant`` into a stored token and answers what a token grants."""

    def __init__(self, store: Store, *, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock
        self._parsed: dict[bytes, TokenRecord] = {}

    async def mint(
        self, grant: Grant, claims: VerifiedClaims, *, leeway: int = DEFAULT_LEEWAY
    ) -> IssuedToken:
        """Claim the JWT's jti and store a new token for ``grant``, in one atomic step.

        Call only after a policy matched, so a refused exchange does not burn the jti.
        Raises ``JWTReplayed`` when the jti was already exchanged (nothing is stored)
        and ``StoreUnavailable`` when the store cannot be reached.
        """
        # An empty grant or a non-positive lifetime is a bug upstream: refuse rather
        # than mint a token that grants nothing or never expires.
        if not grant.crates or not all(grant.crates.values()):
            raise ValueError("a grant must name at least one crate, each with operations")
        if grant.ttl_seconds <= 0:
            raise ValueError("a grant's ttl_seconds must be positive")
        if any(
            Operation.PUBLISH_NEW not in grant.crates.get(name, frozenset())
            for name in grant.new_crate_owners
        ):
            # Such a record would be refused as malformed when read back: fail here.
            raise ValueError("a grant names owners only for crates it may create")
        if leeway < 0:
            raise ValueError("leeway must not be negative")
        if not claims.jti:
            raise InvalidJWT("Invalid JWT: missing required claim `jti`")

        now = int(self._clock())
        record = TokenRecord(
            crates=MappingProxyType(dict(grant.crates)),
            issued_at=now,
            expires_at=now + grant.ttl_seconds,
            provenance=grant.provenance,
            policies=tuple(grant.policies),
            # Copied now, not looked up at publish time: the token carries exactly what
            # the policies granted when it was minted, whatever they say later.
            new_crate_owners=MappingProxyType(
                {name: tuple(logins) for name, logins in grant.new_crate_owners.items()}
            ),
        )
        token = generate_token()
        # The jti must stay claimed as long as any of our processes could still accept
        # the JWT: until exp + leeway (a shorter TTL lets a JWT replay in the leeway).
        jti_expires_at = max(claims.expires_at + leeway, now) + JTI_MARGIN_SECONDS
        issued = await self._store.issue(
            jti_key(claims.issuer.url, claims.jti),
            jti_expires_at,
            token_hash(token),
            record.to_json(),
            record.expires_at,
        )
        if not issued:
            logger.warning(
                "JWT replay refused",
                extra={"fields": {"issuer": claims.issuer.url, "jti": claims.jti}},
            )
            raise JWTReplayed()
        return IssuedToken(token=token, record=record)

    async def introspect(self, token: str, gate: Gate | None = None) -> TokenRecord | None:
        """What ``token`` grants, or None if it is malformed, unknown, revoked or expired.

        A malformed token is refused without touching the store. ``StoreUnavailable``
        propagates: an unreachable store must deny, not answer "no such token".
        ``gate`` (the caller's failed-authentication limit) is checked first, and
        raises before anything about the token is known; on Redis its check and the
        lookup share one round trip.
        """
        lookup_after = getattr(self._store, "lookup_after", None)
        if gate is not None and gate.call is not None and lookup_after is not None:
            if not is_well_formed(token):
                await gate.check()
                return None
            digest = token_hash(token)
            checked, raw = await lookup_after(digest, *gate.call)
            gate.settle(checked)
        else:
            if gate is not None:
                await gate.check()
            if not is_well_formed(token):
                return None
            digest = token_hash(token)
            raw = await self._store.lookup(digest)
        if raw is None:
            return None
        try:
            record = self._record(raw)
        except MalformedRecord as exc:
            # Corrupt stored data denies. Only a hash prefix is logged, never the token.
            logger.error(
                "stored token record is malformed; treating the token as inactive: %s",
                exc,
                extra={"fields": {"token_hash": digest.hex()[:16]}},
            )
            return None
        # The store expires entries itself; checking again here keeps an expired token
        # dead even if a backend's expiry lags (or its clock differs from ours).
        if not record.is_active(self._clock()):
            return None
        return record

    def _record(self, raw: bytes) -> TokenRecord:
        """``TokenRecord.from_json(raw)``, kept for the last ``PARSED_KEPT`` records read.

        Stored bytes parse to the same record every time, so the parse is kept, not the
        answer: the store is still read on every introspection (a revoked token is gone
        from it at once) and activity is checked against the clock every time. Raises
        ``MalformedRecord``; a malformed record is never kept.
        """
        record = self._parsed.get(raw)
        if record is None:
            record = TokenRecord.from_json(raw)
            if len(self._parsed) >= PARSED_KEPT:
                del self._parsed[next(iter(self._parsed))]  # the oldest kept
            self._parsed[raw] = record
        return record

    async def revoke(self, token: str) -> bool:
        """Revoke ``token``; True if it was active. A malformed token is not looked up."""
        if not is_well_formed(token):
            return False
        return await self._store.revoke(token_hash(token))
