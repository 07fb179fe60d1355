"""Telling the registry's own API tokens from trustpub tokens, and asking an authority
what a trustpub token allows.

Registry API tokens (``tpreg_``) and trustpub tokens (``trustpub_``) are two formats of
one token type (``trustpub.tokens.TokenFormat``): the prefixes keep them apart (and
visible to secret scanners); both are stored as SHA-256 hashes only.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from types import MappingProxyType
from typing import Any, Protocol

import httpx

from trustpub.client import AsyncClient, ClientError, MalformedAnswer
from trustpub.errors import StoreUnavailable
from trustpub.grants import Operation, Provenance
from trustpub.registry.actors import TrustedToken
from trustpub.tokens import (
    REGISTRY_TOKENS,
    TRUSTPUB_TOKENS,
    TokenRecord,
    TokenService,
    parse_new_crate_owners,
)

log = logging.getLogger("trustpub.registry")

MALFORMED = "Token introspection answered malformed data"

USER_TOKEN_PREFIX = REGISTRY_TOKENS.prefix
# The registry API token's functions by the names the CLI knows them by.
generate_user_token = REGISTRY_TOKENS.generate
is_user_token = REGISTRY_TOKENS.is_well_formed
user_token_hash = REGISTRY_TOKENS.hash


class TokenAuthority(Protocol):
    """Answers what a trustpub token allows: None when it is unknown, revoked or expired.

    Raises ``StoreUnavailable`` when it cannot tell: the registry then refuses (503)
    rather than guessing.
    """

    async def introspect(self, token: str) -> TrustedToken | None: ...


class LocalAuthority:
    """The in-process authority: the service's own ``TokenService`` (or one on a shared
    store).

    The owners of crates a token may create come from the token record, fixed when it
    was minted: never from the live policies, which may have changed since.
    """

    def __init__(self, tokens: TokenService) -> None:
        self._tokens = tokens

    async def introspect(self, token: str) -> TrustedToken | None:
        record = await self._tokens.introspect(token)
        if record is None:
            return None
        return TrustedToken(record, record.new_crate_owners)


class RemoteAuthority:
    """Asks a separate trustpub service: ``POST {url}/api/v1/trusted_publishing/introspect``
    with ``Authorization: Bearer <credential>``, through ``trustpub.client``.

    The response must be well-formed in every detail; anything else is treated as
    "cannot tell" (503), never as an active token. ``new_crate_owners`` (crate ->
    logins) supplies the owners of crates the token may create; an answer without it
    (a trustpub from before owners were recorded) creates no crate.
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        trustpub_url: str,
        credential: str,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._client = AsyncClient(trustpub_url, client, sleep=sleep)
        self._credential = credential
        self._clock = clock

    async def introspect(self, token: str) -> TrustedToken | None:
        if not TRUSTPUB_TOKENS.is_well_formed(token):
            return None
        try:
            data = await self._client.introspect(token, self._credential)
        except MalformedAnswer as exc:
            log.warning("token introspection answered malformed data: %s", exc)
            raise StoreUnavailable(MALFORMED) from None
        except ClientError as exc:
            # The message names the URL and the failure, never the token.
            log.warning("token introspection failed: %s", exc)
            detail = "Token introspection unavailable"
            if exc.status is not None:
                detail += f" (HTTP {exc.status})"
            raise StoreUnavailable(detail) from None
        try:
            trusted = _parse_introspection(data)
        except (ValueError, TypeError, KeyError) as exc:
            log.warning("token introspection answered malformed data: %s", exc)
            raise StoreUnavailable(MALFORMED) from None
        if trusted is None or not trusted.record.is_active(self._clock()):
            return None
        return trusted


def _parse_introspection(data: Any) -> TrustedToken | None:
    if not isinstance(data, dict) or not isinstance(data.get("active"), bool):
        raise ValueError("expected an object with boolean `active`")
    if data["active"] is False:
        return None
    crates_raw = data["crates"]
    if not isinstance(crates_raw, dict) or not crates_raw:
        raise ValueError("`crates` must be a non-empty object")
    crates: dict[str, frozenset[Operation]] = {}
    for name, ops in crates_raw.items():
        if not isinstance(ops, list) or not ops:
            raise ValueError("operations must be non-empty lists")
        crates[name] = frozenset(Operation(o) for o in ops)
    expires_at = _timestamp(data["expires_at"])
    issued_at = _timestamp(data["issued_at"]) if "issued_at" in data else 0
    provenance_raw = data["provenance"]
    if not isinstance(provenance_raw, dict):
        raise ValueError("`provenance` must be an object")
    policies = data.get("policies", [])
    if not isinstance(policies, list) or not all(isinstance(p, str) for p in policies):
        raise ValueError("`policies` must be a list of strings")
    # The same checks as a stored record (MalformedRecord is a ValueError): owners of a
    # crate the token may not create mean a broken answer, and a broken answer denies.
    owners = parse_new_crate_owners(data.get("new_crate_owners", {}), crates)
    record = TokenRecord(
        crates=MappingProxyType(crates),
        issued_at=issued_at,
        expires_at=expires_at,
        provenance=Provenance.from_json(provenance_raw),
        policies=tuple(policies),
        new_crate_owners=owners,
    )
    return TrustedToken(record, record.new_crate_owners)


def _timestamp(value: object) -> int:
    if not isinstance(value, str):
        raise ValueError("timestamps must be RFC 3339 strings")
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError("timestamps must carry a time zone")
    return int(parsed.timestamp())
