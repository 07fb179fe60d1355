"""Leaked tokens: GitHub's secret scanning partner endpoint.

``POST /api/github/secret-scanning/verify``: GitHub found tokens of ours in public code
and reports them as ``[{"token", "type", "url", "source"}]``, signed with one of its
keys (``GITHUB-PUBLIC-KEY-IDENTIFIER``, ``GITHUB-PUBLIC-KEY-SIGNATURE``: base64 DER
ECDSA P-256 / SHA-256 over the raw body). We revoke every reported token that is ours
and answer, for each report, ``{"token_hash", "token_type", "label"}``.

Order of checks, each refusal revoking nothing: the signature headers (400 when missing
or malformed), the body through the shared reader (``trustpub.web.read_body``: 413 past
``BODY_LIMIT``, 400 for lying framing), the key (503 when GitHub's key set cannot be
loaded, 401 for an identifier it does not hold), the signature over the raw bytes (401),
and only then the JSON (``trustpub.web.parse_json``, nested at most ``MAX_DEPTH``: 400)
and its shape (422: a list of at most ``MAX_REPORTS`` objects, each with a string
``token``). An unsigned body is never parsed.

Labels:

- ``trustpub_…`` (the token store): ``true_positive`` when the token was live and is now
  revoked; the store keeps nothing of an expired or revoked token, so such a token is
  ``false_positive`` (it can no longer be used).
- ``tpreg_…`` (the registry's database): ``true_positive`` when the registry issued it
  (revoked now, or already revoked or expired: it was a real token), else
  ``false_positive``.
- When the registry is disabled here, ``tpreg_…`` tokens get no label at all (they are
  left out of the answer, and audited as ``not_checked``): this process cannot see the
  registry's database, and the registry may run on its own elsewhere. ``false_positive``
  would claim they are not real tokens, which we cannot know; GitHub's feedback is
  optional per token, so saying nothing is the honest answer.
- Anything else (another prefix, a malformed token of ours) is ``false_positive``.

The answer names tokens by ``token_hash`` (hex SHA-256), never ``token_raw``: no token
travels back out, and audit lines carry a 12-digit hash prefix only.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, cast

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from trustpub import web
from trustpub.api.scanning_keys import MAX_KEY_IDENTIFIER, ScanningKeys, UnknownKey
from trustpub.logs import audit
from trustpub.registry.db import ApiToken
from trustpub.tokens import REGISTRY_TOKENS, TRUSTPUB_TOKENS, TokenService

# A report of 1,000 tokens with long URLs stays well inside; GitHub sends a few at once.
BODY_LIMIT = 512 * 1024
MAX_REPORTS = 1000
# [ { "token": "..." } ]: two levels; a little room for fields GitHub may add.
MAX_DEPTH = 4
# A DER ECDSA P-256 signature is at most 72 bytes (96 base64 characters).
MAX_SIGNATURE = 200
STATE_KEY = "secret_scanning"

Label = Literal["true_positive", "false_positive"]
_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")
_IDENTIFIER = re.compile(r"[A-Za-z0-9_.:=+/-]+")


class RegistryTokens(Protocol):
    """What the companion registry offers here (``trustpub.registry.Registry``)."""

    async def revoke_leaked_token(self, token: str) -> ApiToken | None: ...


@dataclass(frozen=True, slots=True)
class LeakReports:
    """What the endpoint needs, built once in the application's lifespan."""

    keys: ScanningKeys
    tokens: TokenService
    registry: RegistryTokens | None


@dataclass(frozen=True, slots=True)
class _Report:
    token: str
    type: str
    url: str
    source: str


def _fingerprint(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _signature_headers(request: Request) -> tuple[str, bytes]:
    identifier = request.headers.get("github-public-key-identifier")
    signature = request.headers.get("github-public-key-signature")
    if not identifier or not signature:
        raise HTTPException(
            400,
            "Missing `GITHUB-PUBLIC-KEY-IDENTIFIER` or `GITHUB-PUBLIC-KEY-SIGNATURE` header",
        )
    if len(identifier) > MAX_KEY_IDENTIFIER or not _IDENTIFIER.fullmatch(identifier):
        raise HTTPException(400, "Malformed `GITHUB-PUBLIC-KEY-IDENTIFIER` header")
    if len(signature) > MAX_SIGNATURE or not _BASE64.fullmatch(signature):
        raise HTTPException(400, "Malformed `GITHUB-PUBLIC-KEY-SIGNATURE` header")
    try:
        return identifier, base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        raise HTTPException(400, "Malformed `GITHUB-PUBLIC-KEY-SIGNATURE` header") from None


async def _verified_body(request: Request, keys: ScanningKeys) -> bytes:
    identifier, signature = _signature_headers(request)
    body = await web.read_body(request, BODY_LIMIT)
    try:
        key = await keys.get(identifier)
    except UnknownKey:
        raise HTTPException(401, "Unknown `GITHUB-PUBLIC-KEY-IDENTIFIER`") from None
    try:
        # A malformed DER signature is an InvalidSignature too.
        key.verify(signature, body, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise HTTPException(401, "Invalid `GITHUB-PUBLIC-KEY-SIGNATURE`") from None
    return body


def _optional_string(entry: dict[str, object], name: str, index: int) -> str:
    value = entry.get(name, "")
    if not isinstance(value, str):
        raise HTTPException(422, f"Report {index}: `{name}` must be a string")
    return value


def _reports(data: object) -> list[_Report]:
    if not isinstance(data, list):
        raise HTTPException(422, "Expected a JSON array of reports")
    if len(data) > MAX_REPORTS:
        raise HTTPException(422, f"Too many reports (at most {MAX_REPORTS})")
    reports = []
    for index, entry in enumerate(data):
        if not isinstance(entry, dict):
            raise HTTPException(422, f"Report {index}: expected an object")
        token = entry.get("token")
        if not isinstance(token, str) or not token:
            raise HTTPException(422, f"Report {index}: `token` must be a non-empty string")
        reports.append(
            _Report(
                token,
                _optional_string(entry, "type", index),
                _optional_string(entry, "url", index),
                _optional_string(entry, "source", index),
            )
        )
    return reports


async def _revoke_trustpub(tokens: TokenService, report: _Report, where: dict[str, str]) -> Label:
    # Read first, so the audit line says whose token it was (never the token).
    record = await tokens.introspect(report.token)
    revoked = await tokens.revoke(report.token)
    if not revoked:
        audit("leaked_token", kind="trustpub", outcome="unknown", **where)
        return "false_positive"
    identity: dict[str, object] = {}
    if record is not None:
        identity = {
            "issuer": record.provenance.issuer,
            "repository": record.provenance.repository,
            "run_id": record.provenance.run_id,
            "policies": list(record.policies),
            "expires_at": record.expires_at,
        }
    audit("leaked_token", kind="trustpub", outcome="revoked", **where, **identity)
    return "true_positive"


async def _revoke_registry(
    registry: RegistryTokens | None, report: _Report, where: dict[str, str]
) -> Label | None:
    if registry is None:
        audit("leaked_token", kind="registry", outcome="not_checked", **where)
        return None
    found = await registry.revoke_leaked_token(report.token)
    if found is None:
        audit("leaked_token", kind="registry", outcome="unknown", **where)
        return "false_positive"
    audit(
        "leaked_token",
        kind="registry",
        outcome="already_revoked" if found.revoked_at is not None else "revoked",
        user=found.user_login,
        token_id=found.id,
        token_name=found.name,
        **where,
    )
    return "true_positive"


async def _label(leaks: LeakReports, report: _Report) -> Label | None:
    where = {
        "token_hash": _fingerprint(report.token)[:12],
        "type": report.type[:100],
        "url": report.url[:500],
        "source": report.source[:100],
    }
    if TRUSTPUB_TOKENS.is_well_formed(report.token):
        return await _revoke_trustpub(leaks.tokens, report, where)
    if REGISTRY_TOKENS.is_well_formed(report.token):
        return await _revoke_registry(leaks.registry, report, where)
    audit("leaked_token", kind="other", outcome="not_ours", **where)
    return "false_positive"


async def handle_reports(leaks: LeakReports, reports: Sequence[_Report]) -> list[dict[str, str]]:
    """Revoke and label each report; a token reported twice is looked at once."""
    labels: dict[str, Label | None] = {}
    answer = []
    for report in reports:
        if report.token not in labels:
            labels[report.token] = await _label(leaks, report)
        label = labels[report.token]
        if label is not None:
            answer.append(
                {
                    "token_hash": _fingerprint(report.token),
                    "token_type": report.type,
                    "label": label,
                }
            )
    return answer


async def verify(request: Request) -> Response:
    """``POST /api/github/secret-scanning/verify``: GitHub's leaked-token reports."""
    leaks = cast(LeakReports | None, request.scope["state"].get(STATE_KEY))
    if leaks is None:
        raise HTTPException(404, "Secret scanning reports are disabled on this server")
    content_type = request.headers.get("content-type")
    if content_type is not None and content_type.split(";")[0].strip().lower() != (
        "application/json"
    ):
        raise HTTPException(415, "Expected request with `Content-Type: application/json`")
    body = await _verified_body(request, leaks.keys)
    reports = _reports(web.parse_json(body, max_depth=MAX_DEPTH))
    return web.JSONResponse(await handle_reports(leaks, reports), headers=web.NO_STORE)
