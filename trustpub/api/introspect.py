"""Token introspection for registry backends, authenticated with a registry credential."""

from __future__ import annotations

import functools
import hashlib
import hmac

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from trustpub import web
from trustpub.api.state import services
from trustpub.errors import TrustpubError
from trustpub.ratelimit import client_address
from trustpub.tokens import TokenRecord

HASHED_PREFIX = "sha256:"


@functools.cache
def credential_digests(credentials: tuple[str, ...]) -> tuple[bytes, ...]:
    """SHA-256 digests of the configured credentials. A credential may be configured as
    ``sha256:<hex>`` so that the configuration file never holds the secret itself."""
    return tuple(
        bytes.fromhex(c.removeprefix(HASHED_PREFIX))
        if c.startswith(HASHED_PREFIX)
        else hashlib.sha256(c.encode()).digest()
        for c in credentials
    )


def require_credential(
    request: Request,
    credentials: tuple[str, ...],
    *,
    disabled: str = "Introspection is disabled: no registry credentials are configured",
    invalid: str = "Invalid registry credential",
) -> None:
    """Refuse unless the request presents one of ``credentials`` (introspection, and the
    operators' ``/status``): 403 ``disabled`` when none is configured, 401 otherwise."""
    if not credentials:
        raise HTTPException(403, disabled)
    presented = web.bearer_credential(request)
    if presented is None:
        raise HTTPException(401, "Missing `Authorization` header")
    digest = hashlib.sha256(presented.encode()).digest()
    # Compare digests against every credential in constant time, without stopping
    # early, so timing reveals neither a credential nor which one matched.
    matched = False
    for expected in credential_digests(credentials):
        matched |= hmac.compare_digest(digest, expected)
    if not matched:
        raise HTTPException(401, invalid)


async def introspect(request: Request) -> Response:
    """``POST /api/v1/trusted_publishing/introspect`` ``{"token": "..."}``."""
    svc = services(request)
    client = client_address(request.scope.get("client"))
    # An address that failed too often is refused (429) before its credential is
    # judged (401, 403) and its body (400). The checks that need no store come first,
    # their refusals held back until the gate is passed; for a good request the gate and
    # the token lookup then share one round trip to the store.
    gate = svc.limiter.auth_gate(client)
    try:
        require_credential(request, svc.settings.introspection_credentials)
    except HTTPException as exc:
        await gate.check()
        if exc.status_code == 401:
            await svc.limiter.auth_failed(client)
        raise
    try:
        token = web.string_field(await web.read_json_object(request), "token")
    except (HTTPException, TrustpubError):
        await gate.check()
        raise
    record = await svc.tokens.introspect(token, gate)
    if record is None:
        svc.metrics.introspections.inc("inactive")
        return web.JSONResponse({"active": False}, headers=web.NO_STORE)
    svc.metrics.introspections.inc("active")
    return web.RenderedJSONResponse(_ANSWERS.body(record), headers=web.NO_STORE)


def active_answer(record: TokenRecord) -> dict[str, object]:
    """The answer for an active token: what it grants, when, and where it came from."""
    return {
        "active": True,
        "crates": {name: sorted(ops) for name, ops in sorted(record.crates.items())},
        "expires_at": web.rfc3339(record.expires_at),
        "issued_at": web.rfc3339(record.issued_at),
        # Always present ({} when the token creates no crate): the owners recorded when
        # the token was minted, so every registry sees the same answer.
        "new_crate_owners": {
            name: list(logins) for name, logins in sorted(record.new_crate_owners.items())
        },
        "policies": list(record.policies),
        "provenance": record.provenance.to_json(),
    }


class _Answers:
    """``active_answer`` as JSON, kept per record object for the last ``kept`` records.

    A record never changes (``TokenService`` hands out the same object for the same
    stored bytes), so neither does its answer; whether the token is still active is
    decided before, on every request.
    """

    def __init__(self, kept: int = 1024) -> None:
        self._kept = kept
        self._by_record: dict[int, tuple[TokenRecord, bytes]] = {}

    def body(self, record: TokenRecord) -> bytes:
        entry = self._by_record.get(id(record))
        if entry is not None and entry[0] is record:
            return entry[1]
        body = web.render_json(active_answer(record))
        if len(self._by_record) >= self._kept:
            del self._by_record[next(iter(self._by_record))]  # the oldest kept
        # The record is held with its answer, so its id names no other object meanwhile.
        self._by_record[id(record)] = (record, body)
        return body


_ANSWERS = _Answers()
