"""The caller's own account, over HTTP, as crates.io serves it: API tokens
(``/api/v1/me/tokens``, ``/api/v1/tokens/current``) and owner invitations
(``/api/v1/me/crate_owner_invitations``).

A "logged-in user" is the holder of one of the user's registry API tokens. Who may do
what here (``trustpub.registry.actors``):

- tokens: list, create and revoke need the ``manage-tokens`` scope and no crate scopes
  (crates.io allows these only from a browser session, never with an API token); a new
  token never has a scope its creator lacks, nor outlives it. Any API token may revoke
  itself (``DELETE /api/v1/tokens/current``), as on crates.io.
- invitations: any of the user's tokens lists them; answering one needs the
  ``change-owners`` scope on that crate (``changes.respond_to_invitation``).

Trusted Publishing tokens act for a CI workflow, not a user: they are refused here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from trustpub.registry import changes
from trustpub.registry.actors import (
    SCOPES,
    TrustpubActor,
    account_holder,
    check_crate_pattern,
    require_token_manager,
)
from trustpub.registry.auth import generate_user_token, user_token_hash
from trustpub.registry.context import RegistryContext
from trustpub.registry.db import ApiToken
from trustpub.registry.errors import bad_request, forbidden
from trustpub.registry.invitations import invitation_json
from trustpub.web import JSONResponse, read_json_object, rfc3339

ME = "/api/v1/me"
MAX_TOKENS_PER_USER = 500  # active tokens, as crates.io's limit
MAX_NAME = 100
MAX_CRATE_SCOPES = 50


def token_json(token: ApiToken) -> dict[str, Any]:
    """crates.io's ``api_token`` (never the token itself: only its hash is stored)."""

    def optional(value: int | None) -> str | None:
        return rfc3339(value) if value is not None else None

    return {
        "id": token.id,
        "name": token.name,
        "created_at": rfc3339(token.created_at),
        "last_used_at": optional(token.last_used_at),
        "crate_scopes": list(token.crates) or None,
        "endpoint_scopes": list(token.scopes),
        "expired_at": optional(token.expires_at),
    }


class Account:
    """The ``/me`` endpoints of ``registry``."""

    def __init__(self, registry: RegistryContext) -> None:
        self._registry = registry

    # -- API tokens ------------------------------------------------------------------------

    async def list_tokens(self, request: Request) -> Response:
        user = require_token_manager(await self._registry.actor(request))
        now = self._registry.db.now()
        tokens = await self._registry.run_db(lambda: self._registry.db.tokens(user.login))
        active = [
            t
            for t in tokens
            if t.revoked_at is None and (t.expires_at is None or t.expires_at > now)
        ]
        active.sort(key=lambda t: (t.created_at, t.id), reverse=True)
        return JSONResponse({"api_tokens": [token_json(t) for t in active]})

    async def create_token(self, request: Request) -> Response:
        user = require_token_manager(await self._registry.actor(request))
        data = await read_json_object(request)
        fields = data.get("api_token")
        if not isinstance(fields, dict):
            raise bad_request(
                'invalid new token request: expected {"api_token": {"name": ..., '
                '"endpoint_scopes": [...], "crate_scopes": [...], "expired_at": ...}}'
            )
        name = _token_name(fields.get("name"))
        crates = _crate_scopes(fields.get("crate_scopes"))
        scopes = _endpoint_scopes(fields.get("endpoint_scopes"), user.scopes)
        wider = sorted(set(scopes) - user.scopes)
        if wider:
            # A token never mints one that can do more than itself.
            raise forbidden(
                "a new token cannot have scopes the token creating it lacks: " + ", ".join(wider)
            )
        expires_at = _expiry(fields.get("expired_at"), user.expires_at, self._registry.db.now())
        token = generate_user_token()
        record = await self._registry.run_db(
            lambda: changes.add_token(
                self._registry.db,
                user.login,
                name,
                user_token_hash(token),
                scopes,
                crates,
                expires_at,
                user.login,
                max_active=MAX_TOKENS_PER_USER,
            )
        )
        # The only time the token is shown.
        return JSONResponse({"api_token": {**token_json(record), "token": token}})

    async def revoke_token(self, request: Request) -> Response:
        user = require_token_manager(await self._registry.actor(request))
        token_id: int = request.path_params["id"]
        # As crates.io: an unknown id, or another user's, is answered the same (and
        # changes nothing), so ids cannot be probed.
        await self._registry.run_db(
            lambda: self._registry.db.revoke_user_token(user.user_id, token_id, user.login)
        )
        return JSONResponse({})

    async def revoke_current(self, request: Request) -> Response:
        actor = await self._registry.actor(request)
        if isinstance(actor, TrustpubActor):
            raise bad_request(
                "this endpoint revokes the registry API token it is called with; a Trusted "
                "Publishing token is revoked at the trustpub service "
                "(DELETE /api/v1/trusted_publishing/tokens)"
            )
        await self._registry.run_db(
            lambda: self._registry.db.revoke_token(actor.token_id, actor.login)
        )
        return Response(status_code=204)

    # -- owner invitations -----------------------------------------------------------------

    async def list_invitations(self, request: Request) -> Response:
        user = account_holder(await self._registry.actor(request), "list owner invitations")
        found = await self._registry.run_db(lambda: self._registry.db.invitations_for(user.user_id))
        users: dict[int, dict[str, Any]] = {}
        for i in found:
            users[i.invitee_id] = {"id": i.invitee_id, "login": i.invitee}
            if i.inviter_id is not None and i.inviter is not None:
                users[i.inviter_id] = {"id": i.inviter_id, "login": i.inviter}
        return JSONResponse(
            {
                "crate_owner_invitations": [invitation_json(i) for i in found],
                "users": [{**u, "name": None, "kind": "user"} for _, u in sorted(users.items())],
            }
        )

    async def answer_invitation(self, request: Request) -> Response:
        actor = await self._registry.actor(request)
        crate_id: int = request.path_params["crate_id"]
        data = await read_json_object(request)
        answer = data.get("crate_owner_invite")
        if (
            not isinstance(answer, dict)
            or type(answer.get("crate_id")) is not int
            or not isinstance(answer.get("accepted"), bool)
        ):
            raise bad_request(
                'invalid json request: expected {"crate_owner_invite": '
                '{"crate_id": <integer>, "accepted": true|false}}'
            )
        if answer["crate_id"] != crate_id:
            raise bad_request(
                f"the body's crate_id ({answer['crate_id']}) does not match the URL's ({crate_id})"
            )
        accepted = bool(answer["accepted"])
        await self._registry.run_db(
            lambda: changes.respond_to_invitation(self._registry.db, actor, crate_id, accepted)
        )
        if accepted:
            self._registry.metrics.owner_changes.inc("add")
        return JSONResponse(
            {"crate_owner_invitation": {"crate_id": crate_id, "accepted": accepted}}
        )


def _token_name(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise bad_request("name must have a value")
    if len(value) > MAX_NAME or not (value.isascii() and value.isprintable()):
        raise bad_request(f"name must be printable ASCII, at most {MAX_NAME} characters")
    return value


def _crate_scopes(value: object) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > MAX_CRATE_SCOPES:
        raise bad_request(
            f"invalid crate scope: expected a list of at most {MAX_CRATE_SCOPES} crate "
            "names or `prefix*` patterns"
        )
    for pattern in value:
        if not isinstance(pattern, str):
            raise bad_request("invalid crate scope: expected strings")
        try:
            check_crate_pattern(pattern)
        except ValueError as exc:
            raise bad_request(f"invalid crate scope: {exc}") from None
    return list(dict.fromkeys(value))


def _endpoint_scopes(value: object, creator: frozenset[str]) -> list[str]:
    if value is None:
        # crates.io's "no endpoint scopes" is a token that may do everything: here,
        # everything its creator may.
        return sorted(creator)
    if not isinstance(value, list) or not value:
        raise bad_request(
            f"invalid endpoint scope: expected a non-empty list of: {', '.join(SCOPES)}"
        )
    for scope in value:
        if not isinstance(scope, str) or scope not in SCOPES:
            shown = scope if isinstance(scope, str) and scope.isascii() else "(not a scope)"
            raise bad_request(
                f"invalid endpoint scope {shown!r}: expected one of {', '.join(SCOPES)}"
            )
    return sorted(set(value))


def _expiry(value: object, creator_expires: int | None, now: int) -> int | None:
    if value is None:
        # A token made by an expiring token expires with it: a short-lived token must
        # not mint a lasting one.
        return creator_expires
    if not isinstance(value, str) or not value.isascii():
        raise bad_request("expired_at must be an RFC 3339 date-time, or null")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise bad_request(f"expired_at must be an RFC 3339 date-time, got {value[:40]!r}") from None
    if parsed.tzinfo is None:
        raise bad_request("expired_at must carry a time zone (e.g. 2030-01-01T00:00:00Z)")
    expires = int(parsed.timestamp())
    if expires <= now:
        raise bad_request("expired_at must be in the future")
    if creator_expires is not None and expires > creator_expires:
        raise bad_request(
            f"expired_at must not be later than the creating token's expiry "
            f"({rfc3339(creator_expires)})"
        )
    return expires
