"""Owner-managed Trusted Publishing configs: crates.io's configs API, pending publishers,
and the configs as policies for the one matcher.

- ``ConfigsAPI``: ``POST/GET /api/v1/trusted_publishing/{github,gitlab}_configs`` and
  ``DELETE .../{id}``, wire-compatible with crates.io (shapes, status codes, texts), with
  optional extension fields (``issuer``, ``refs``, ``job_workflow``, ``operations``,
  ``token_ttl``; GitHub ``repository_owner_id``).
- ``config_policy``: a stored config as a ``Policy``, validated by the very code that
  validates policy files (``trustpub.policies.loader.read_policy_table``).
- ``OwnerConfigs``: the live union of file policies and configs for the exchange,
  rebuilt when the configs' generation (one number in the database) changes.

A config whose crate does not exist yet is a *pending publisher* (as PyPI has them):
its registrant's token needs ``publish-new`` as well as ``trusted-publishing``; the
policy it becomes grants ``publish-new`` with the registrant as the new crate's owner,
and the publish that creates the crate turns it into the crate's config
(``db.configs.claim_pending``). It expires after ``pending_ttl`` (7 days by default).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, Literal, TypeVar
from urllib.parse import quote, urlencode

import anyio
import anyio.to_thread
import httpx
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from trustpub.errors import PolicyProblem, StoreUnavailable, TrustpubError
from trustpub.grants import Operation
from trustpub.hop import Hop
from trustpub.oidc.issuers import CANONICAL_ISSUERS, Issuer, ProviderKind
from trustpub.policies.loader import read_policy_table
from trustpub.policies.model import Policy
from trustpub.policies.policyset import PolicySet
from trustpub.registry.actors import UserActor, pattern_matches
from trustpub.registry.db import configs as stored
from trustpub.registry.db.configs import ConfigRow, NewConfig
from trustpub.registry.db.database import RegistryDB
from trustpub.registry.db.errors import RegistryDataError
from trustpub.registry.db.queries import Connection
from trustpub.registry.errors import RegistryRefused, bad_request, conflict, forbidden, not_found
from trustpub.registry.names import check_crate_name
from trustpub.sqlite_reads import ThisTurn
from trustpub.text import shown
from trustpub.web import JSONResponse, read_json_object
from trustpub.web.times import rfc3339

if TYPE_CHECKING:
    from trustpub.registry.registry import Registry

log = logging.getLogger("trustpub.registry")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class OwnerConfigSettings:
    """``[trusted_publishing_configs]``: owner-managed configs (trustpub.registry.configs).

    ``github_api_url`` answers ``GET /users/{login}`` for configs of the canonical GitHub
    issuer ("" turns lookups off: configs must then give ``repository_owner_id``);
    ``github_api_urls`` maps a GitHub Enterprise issuer URL to its API URL.
    ``github_api_token`` (optional) authenticates the lookups. ``pending_ttl``: seconds a
    pending publisher waits for its crate to be created.
    """

    github_api_url: str = "https://api.github.com"
    github_api_urls: tuple[tuple[str, str], ...] = ()
    github_api_token: str | None = field(default=None, repr=False)
    pending_ttl: int = 7 * 24 * 3600


CONFIG_FILE = "registry"
"""The ``file`` of a config's policy: ids read ``registry#github-config-7`` (a policy
file always ends in ``.toml``, so the two never collide)."""

PATHS: dict[ProviderKind, str] = {
    "github": "/api/v1/trusted_publishing/github_configs",
    "gitlab": "/api/v1/trusted_publishing/gitlab_configs",
}
EXTENSIONS = ("refs", "job_workflow", "operations", "token_ttl")
_FIELDS: dict[ProviderKind, tuple[str, ...]] = {
    "github": ("crate", "repository_owner", "repository_name", "workflow_filename", "environment"),
    "gitlab": ("crate", "namespace", "project", "workflow_filepath", "environment"),
}
_EXTRA: dict[ProviderKind, tuple[str, ...]] = {
    "github": ("repository_owner_id", "issuer", *EXTENSIONS),
    "gitlab": ("issuer", *EXTENSIONS),
}
DEFAULT_PER_PAGE = 10
MAX_PER_PAGE = 100

# crates.io's texts.
NOT_OWNER = "You are not an owner of this crate"
MISSING_SCOPE = "this token does not have the required permissions to perform this action"
UNKNOWN_GITHUB_OWNER = "Unknown GitHub user or organization"


def wrong_shape(detail: str) -> RegistryRefused:
    """A JSON body of the wrong shape: 422, as crates.io (and every JSON endpoint here)."""
    return RegistryRefused(detail, 422)


def crate_not_found(name: str) -> RegistryRefused:
    return not_found(f"crate `{shown(name)}` does not exist")


# -- configs as policies ---------------------------------------------------------------------


def policy_name(row: ConfigRow) -> str:
    return f"{row.provider}-config-{row.id}"


def config_id(policy: Policy) -> int | None:
    """The config a policy was made from; None for a file policy."""
    if policy.file != CONFIG_FILE:
        return None
    return int(policy.name.rsplit("-", 1)[1])


def policy_table(row: ConfigRow | NewConfig, *, pending_owner: str | None) -> dict[str, object]:
    """The config as a ``[[policy]]`` table. ``pending_owner``: the registrant of a
    pending publisher, who becomes the new crate's owner."""
    table: dict[str, object] = {
        "name": policy_name(row) if isinstance(row, ConfigRow) else "new-config",
        "provider": row.provider,
        "issuer": row.issuer,
        "crates": [row.crate_name],
        "workflow": row.workflow,
    }
    if row.provider == "github":
        table["repository"] = f"{row.repository_owner}/{row.repository_name}"
        table["repository_owner_id"] = row.owner_id
    else:
        table["project_path"] = f"{row.repository_owner}/{row.repository_name}"
        if row.owner_id is not None:
            table["namespace_id"] = row.owner_id
    if row.environment is not None:
        table["environment"] = row.environment
    for key in EXTENSIONS:
        if key in row.extensions:
            table[key] = row.extensions[key]
    if pending_owner is not None:
        # A pending publisher exists to create the crate: it grants publish-new, with
        # its registrant (and nobody else) as the new crate's owner.
        operations = list(row.extensions.get("operations", [Operation.PUBLISH_UPDATE.value]))
        if Operation.PUBLISH_NEW.value not in operations:
            operations.append(Operation.PUBLISH_NEW.value)
        table["operations"] = operations
        table["owners"] = [pending_owner]
    return table


def config_policy(row: ConfigRow, issuers: Sequence[Issuer]) -> Policy | None:
    """The stored config as a policy; None (and logged) when it no longer validates
    (its issuer was removed from the configuration, say): such a config matches nothing."""
    owner = row.created_by_login if row.pending else None
    policy, problems = read_policy_table(
        CONFIG_FILE, policy_name(row), policy_table(row, pending_owner=owner), issuers
    )
    if policy is None:
        log.warning(
            "owner config does not validate; it matches nothing",
            extra={"fields": {"config": row.id, "problems": [str(p) for p in problems]}},
        )
    return policy


class OwnerConfigs:
    """The live policy set: file policies and the registry's configs, one index.

    Each exchange reads the configs' generation (one row; concurrent exchanges share a
    read that began after they arrived, ``_FreshReads``); when it moved, only the
    configs changed since are read again and converted (the database's change log), and
    the union is indexed anew; pending publishers past their expiry drop out on the
    first exchange after it. So every worker process sees a created or deleted config
    on its next exchange, and matching itself is one dictionary lookup whatever the
    number of configs. Measured with ``bench/config_lookup.py``.
    """

    def __init__(self, db: RegistryDB, issuers: Sequence[Issuer]) -> None:
        self._db = db
        self._issuers = tuple(issuers)
        self._generation: int | None = None
        self._policies: dict[int, Policy] = {}
        self._expiry: dict[int, int] = {}
        self._next_expiry: int | None = None
        self._key: tuple[int, int] | None = None
        self._set: PolicySet | None = None
        self._lock = anyio.Lock()
        # Read once per turn of the loop for the exchanges of that turn (it was 6 % of an
        # exchange's CPU, a file check and a query each time: py-spy).
        self._generation_now: ThisTurn[int] = ThisTurn()
        # Where the database is not SQLite: the generation read in a thread of its own
        # (trustpub.hop), a quarter of a pooled hop's CPU.
        self._hop = Hop("trustpub-config-generation")
        self._generations = _FreshReads(self._read_generation)

    def close(self) -> None:
        """End the generation reads' thread (it starts again if used again)."""
        self._hop.close()

    async def _read_generation(self) -> int:
        """The generation, on the loop where the engine can (PostgreSQL), else in the
        hop's thread."""
        generation = await self._db.config_generation_async()
        if generation is None:
            generation = await self._hop.run(self._db.config_generation)
        return generation

    def _apply(self, changed: Mapping[int, ConfigRow | None]) -> None:
        for cid, row in changed.items():
            self._policies.pop(cid, None)
            self._expiry.pop(cid, None)
            if row is None:
                continue
            policy = config_policy(row, self._issuers)
            if policy is None:
                continue
            self._policies[cid] = policy
            if row.pending and row.expires_at is not None:
                self._expiry[cid] = row.expires_at

    def _drop_expired(self, now: int) -> None:
        if self._next_expiry is None or now < self._next_expiry:
            return
        for cid in [cid for cid, at in self._expiry.items() if at <= now]:
            del self._expiry[cid]
            self._policies.pop(cid, None)

    def _index(self, files: PolicySet) -> PolicySet:
        self._next_expiry = min(self._expiry.values(), default=None)
        return PolicySet(
            (*files.policies, *self._policies.values()),
            files=files.files,
            fingerprint=files.fingerprint,
        )

    def build(self, files: PolicySet, rows: Iterable[ConfigRow]) -> PolicySet:
        """The union of ``files`` and ``rows`` (every config in force), from scratch."""
        self._policies.clear()
        self._expiry.clear()
        self._apply({row.id: row for row in rows})
        return self._index(files)

    def _refresh(self, files: PolicySet) -> PolicySet:
        """Blocking: catch up with the database (changes only, when the log allows)."""
        changed = None
        if self._generation is not None:
            generation, changed = self._db.config_changes(self._generation)
        if changed is None:
            generation, rows = self._db.live_configs()
            built = self.build(files, rows)
        else:
            self._apply(changed)
            self._drop_expired(self._db.now())
            built = self._index(files)
        self._generation = generation
        self._key, self._set = (id(files), generation), built
        return built

    async def combined(self, files: PolicySet) -> PolicySet:
        """The union for ``files``; ``StoreUnavailable`` (503) when the registry database
        cannot be read: without the configs' current state, the exchange must not guess."""
        try:
            return await self._combined(files)
        except RegistryDataError as exc:
            raise StoreUnavailable("The registry database is unavailable") from exc

    async def warm(self, files: PolicySet) -> None:
        """Build the union ahead of the first exchange; a failure is logged (the first
        exchange tries again)."""
        try:
            await self._combined(files)
        except RegistryDataError as exc:
            log.warning("cannot read the owner configs", extra={"fields": {"reason": str(exc)}})

    def _fresh(self, files: PolicySet, generation: int) -> PolicySet | None:
        expired = self._next_expiry is not None and self._db.now() >= self._next_expiry
        if self._set is not None and self._key == (id(files), generation) and not expired:
            return self._set
        return None

    async def _combined(self, files: PolicySet) -> PolicySet:
        # On SQLite, read here at once.
        generation = self._generation_now.get(self._db.config_generation_now)
        if generation is None:
            generation = await self._generations.get()
        current = self._fresh(files, generation)
        if current is not None:
            return current
        async with self._lock:
            current = self._fresh(files, generation)
            if current is not None:  # another exchange caught up while we waited
                return current
            # In a worker thread, off the event loop. Exchanges wait for the new set: a
            # deleted config must never match again once its deletion is committed.
            return await anyio.to_thread.run_sync(self._refresh, files)

    async def record_pin(self, matched: Iterable[str], namespace_id: str) -> list[ConfigRow]:
        """After a successful GitLab exchange: pin the namespace id on the matched
        configs that have none (crates.io's ``namespace_id``, null until then)."""
        ids = []
        for pid in matched:
            file, _, name = pid.partition("#")
            if file != CONFIG_FILE or not name.startswith("gitlab-config-"):
                continue
            cid = int(name.rsplit("-", 1)[1])
            policy = self._policies.get(cid)
            if policy is not None and policy.namespace_id is None:
                ids.append(cid)
        if not ids:
            return []
        return await anyio.to_thread.run_sync(
            lambda: self._db.pin_config_namespace(ids, namespace_id)
        )


class _FreshReads(Generic[T]):
    """A read shared by concurrent callers, each answered by a read that began after it
    asked (so a config deleted before an exchange arrived is never matched).

    While one read runs, the callers arriving meanwhile wait for the next, which starts
    when it ends: under load, two reads serve any number of exchanges, where each used
    to make its own (measured with ``bench/run``: a thread hop each and the engine
    lock's queue were the largest share of an exchange's time). A failed read fails the
    callers it answers; the next caller starts a new one.
    """

    def __init__(self, read: Callable[[], Awaitable[T]]) -> None:
        self._read = read
        # The answer for the callers that came after the running read began.
        self._next: asyncio.Future[T] | None = None
        self._running: asyncio.Task[None] | None = None

    async def get(self) -> T:
        answers = self._next
        if answers is None:
            answers = self._next = asyncio.get_running_loop().create_future()
            if self._running is None:
                self._start()
        # Shielded: a caller that goes away (its client disconnected) does not cancel a
        # read that others wait for.
        return await asyncio.shield(answers)

    def _start(self) -> None:
        answers, self._next = self._next, None
        assert answers is not None
        self._running = asyncio.ensure_future(self._run(answers))

    async def _run(self, answers: asyncio.Future[T]) -> None:
        try:
            value = await self._read()
        except asyncio.CancelledError:  # the loop is closing: no further read
            self._running = None
            answers.cancel()
            if self._next is not None:
                self._next.cancel()
                self._next = None
            raise
        except Exception as exc:
            answers.set_exception(exc)
        else:
            answers.set_result(value)
        self._running = None
        if self._next is not None:
            self._start()


# -- the GitHub owner lookup -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GitHubAccount:
    login: str
    id: int


class GitHubLookup:
    """``GET {api}/users/{login}`` for the GitHub (or GitHub Enterprise) of an issuer."""

    client: httpx.AsyncClient | None = None
    """Set by the host (its shared client); without one, lookups are unavailable."""

    def __init__(self, settings: OwnerConfigSettings, *, timeout: float = 10.0) -> None:
        self._settings = settings
        self._timeout = timeout

    def api_url(self, issuer: str) -> str:
        for configured, url in self._settings.github_api_urls:
            if configured == issuer:
                return url
        return self._settings.github_api_url if issuer == CANONICAL_ISSUERS["github"] else ""

    async def user(self, issuer: str, login: str) -> GitHubAccount | None:
        """The account, or None when no lookup is configured for ``issuer``. Raises
        ``RegistryRefused``: 400 for an unknown login, 502 when the API fails."""
        base = self.api_url(issuer)
        if not base:
            return None
        headers = {"Accept": "application/vnd.github+json", "User-Agent": "trustpub"}
        if self._settings.github_api_token:
            headers["Authorization"] = f"Bearer {self._settings.github_api_token}"
        if self.client is None:
            raise RegistryRefused("The GitHub API lookup is not available yet", 503)
        try:
            response = await self.client.get(
                f"{base}/users/{quote(login, safe='')}", headers=headers, timeout=self._timeout
            )
        except httpx.HTTPError as exc:
            raise RegistryRefused(
                f"The GitHub API at {base} could not be reached ({type(exc).__name__}); "
                "try again, or give `repository_owner_id`",
                502,
            ) from None
        if response.status_code == 404:
            raise bad_request(UNKNOWN_GITHUB_OWNER)
        try:
            data = response.json() if response.status_code == 200 else None
        except ValueError:
            data = None
        if (
            not isinstance(data, dict)
            or not isinstance(data.get("login"), str)
            or not isinstance(data.get("id"), int)
            or isinstance(data.get("id"), bool)
            or data["login"].lower() != login.lower()
        ):
            raise RegistryRefused(
                f"The GitHub API at {base} answered HTTP {response.status_code} without the "
                "account; try again, or give `repository_owner_id`",
                502,
            )
        return GitHubAccount(data["login"], data["id"])


# -- the API ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Request:
    provider: ProviderKind
    crate: str
    new: NewConfig
    explicit_owner_id: str | None


def config_problems(
    new: NewConfig, pending_owner: str | None, issuers: Sequence[Issuer]
) -> list[PolicyProblem]:
    """Every problem of a config about to be stored: the validation of policy files,
    field by field (a GitHub owner id not yet resolved is checked as a placeholder)."""
    probe = new if new.owner_id is not None or new.provider != "github" else _with(new, "0")
    _, problems = read_policy_table(
        CONFIG_FILE, "new-config", policy_table(probe, pending_owner=pending_owner), issuers
    )
    return problems


def _problem_text(problems: Sequence[PolicyProblem], provider: ProviderKind) -> str:
    names = {
        "github": {
            "repository": "repository_owner/repository_name",
            "workflow": "workflow_filename",
        },
        "gitlab": {"project_path": "namespace/project", "workflow": "workflow_filepath"},
    }[provider]
    parts = []
    for p in problems:
        field = names.get(p.field or "", p.field)
        parts.append(f"`{field}`: {p.message}" if field else p.message)
    return "Invalid config: " + "; ".join(parts)


class ConfigsAPI:
    """The configs endpoints, served by the host application beside the registry's."""

    def __init__(
        self,
        registry: Registry,
        issuers: Sequence[Issuer],
        settings: OwnerConfigSettings,
        lookup: GitHubLookup,
    ) -> None:
        self._registry = registry
        self._issuers = tuple(issuers)
        self._settings = settings
        self._lookup = lookup

    @property
    def routes(self) -> list[BaseRoute]:
        routes: list[BaseRoute] = []
        for provider, path in PATHS.items():
            routes += [
                Route(path, self._bind(self.create, provider), methods=["POST"]),
                Route(path, self._bind(self.list, provider), methods=["GET"]),
                Route(f"{path}/{{id}}", self._bind(self.delete, provider), methods=["DELETE"]),
            ]
        return routes

    def _bind(
        self, fn: Callable[[Request, ProviderKind], Awaitable[Response]], provider: ProviderKind
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            return await fn(request, provider)

        return self._registry.guarded(endpoint)

    async def _run(self, call: Callable[[], T]) -> T:
        return await self._registry.run_storage(call)

    async def _user(self, request: Request, crate: str) -> UserActor:
        """crates.io's check: an API token with the `trusted-publishing` scope whose
        crate patterns cover ``crate``."""
        actor = await self._registry.actor(request)
        if not isinstance(actor, UserActor):
            # A CI job's token must not widen its own trust.
            raise forbidden(MISSING_SCOPE)
        if "trusted-publishing" not in actor.scopes:
            raise forbidden(MISSING_SCOPE)
        if actor.crate_patterns and not any(
            pattern_matches(p, crate) for p in actor.crate_patterns
        ):
            raise forbidden(MISSING_SCOPE)
        return actor

    # -- POST ------------------------------------------------------------------------------

    def _parse(self, data: Mapping[str, object], provider: ProviderKind) -> _Request:
        key = f"{provider}_config"
        body = data.get(key)
        if set(data) != {key} or not isinstance(body, dict):
            raise wrong_shape(f"Expected a JSON object with one key, `{key}`, holding the config")
        fields, extra = _FIELDS[provider], _EXTRA[provider]
        unknown = sorted(set(body) - set(fields) - set(extra))
        if unknown:
            raise wrong_shape(
                f"Unknown field(s) in `{key}`: {', '.join(f'`{u}`' for u in unknown)} "
                f"(expected: {', '.join(fields + extra)})"
            )
        values: dict[str, str] = {}
        environment: str | None = None
        for name in fields:
            value = body.get(name)
            if name == "environment" and value is None:
                continue
            if not isinstance(value, str):
                raise wrong_shape(
                    f"`{key}.{name}`: " + ("missing" if name not in body else "expected a string")
                )
            if not value or len(value) > 255:
                raise bad_request(f"`{key}.{name}`: must be 1 to 255 characters")
            if name == "environment":
                environment = value
            values[name] = value
        crate = values["crate"]
        issuer = body.get("issuer", CANONICAL_ISSUERS[provider])
        if not isinstance(issuer, str):
            raise wrong_shape(f"`{key}.issuer`: expected a string")
        explicit: str | None = None
        if "repository_owner_id" in body:
            raw = body["repository_owner_id"]
            if isinstance(raw, bool) or not isinstance(raw, (int, str)) or not str(raw).isdigit():
                raise wrong_shape(f"`{key}.repository_owner_id`: expected a numeric id")
            explicit = str(int(raw))
        extensions = {k: body[k] for k in EXTENSIONS if k in body}
        if provider == "github":
            owner, name, workflow = (
                values["repository_owner"],
                values["repository_name"],
                values["workflow_filename"],
            )
        else:
            owner, name, workflow = (
                values["namespace"],
                values["project"],
                values["workflow_filepath"],
            )
        if provider == "github" and "/" in owner:
            raise bad_request(f'`{key}.repository_owner`: "{owner}": an account name has no "/"')
        if "/" in name:
            field = "repository_name" if provider == "github" else "project"
            raise bad_request(f'`{key}.{field}`: "{name}": a name has no "/"')
        new = NewConfig(
            provider=provider,
            crate_name=crate,
            issuer=issuer,
            repository_owner=owner,
            owner_id=explicit if provider == "github" else None,
            repository_name=name,
            workflow=workflow,
            environment=environment,
            extensions=extensions,
        )
        return _Request(provider, crate, new, explicit)

    def _validate(self, new: NewConfig, *, pending_owner: str | None) -> None:
        problems = config_problems(new, pending_owner, self._issuers)
        if problems:
            raise bad_request(_problem_text(problems, _provider(new.provider)))

    async def create(self, request: Request, provider: ProviderKind) -> Response:
        parsed = self._parse(await read_json_object(request), provider)
        actor = await self._user(request, parsed.crate)
        db = self._registry.db
        crate = await self._run(lambda: db.crate_state(parsed.crate))
        if crate is None:
            # A pending publisher: the crate does not exist yet, and this token may
            # create crates.
            if "publish-new" not in actor.scopes:
                raise crate_not_found(parsed.crate)
            check_crate_name(parsed.crate)
            pending_owner: str | None = actor.login
        else:
            if actor.user_id not in crate.owner_ids:
                raise bad_request(NOT_OWNER)
            pending_owner = None
        self._validate(parsed.new, pending_owner=pending_owner)
        new = parsed.new
        if crate is not None:
            new = _renamed(new, crate.crate.name)
        if provider == "github":
            # Never trusted on first use: the owner's id is fixed now, from GitHub itself
            # (and an id given in the request must agree with it).
            account = await self._lookup.user(new.issuer, new.repository_owner)
            if account is not None:
                if parsed.explicit_owner_id not in (None, str(account.id)):
                    raise bad_request(
                        f"`repository_owner_id` {parsed.explicit_owner_id} does not match the "
                        f"GitHub account `{account.login}` (id {account.id})"
                    )
                new = _with(new, str(account.id), login=account.login)
            elif parsed.explicit_owner_id is None:
                raise bad_request(
                    f"No GitHub API is configured for the issuer {new.issuer}: give the "
                    "owner's numeric account id as `repository_owner_id`"
                )

        def check(conn: Connection) -> int | None:
            # Again inside the write transaction: the state the insert sees.
            from trustpub.registry.db import queries

            found = queries.crate(conn, parsed.crate)
            if found is None:
                if pending_owner is None:
                    raise crate_not_found(parsed.crate)
                return None
            state = queries.state_of(conn, found)
            if pending_owner is not None or actor.user_id not in state.owner_ids:
                # Created by someone else since: not this user's crate.
                raise bad_request(NOT_OWNER)
            return found.id

        try:
            row = await self._run(
                lambda: db.create_config(
                    new,
                    actor.user_id,
                    check,
                    pending_ttl=self._settings.pending_ttl,
                    actor_login=actor.login,
                )
            )
        except stored.DuplicateConfig as exc:
            raise conflict(
                f"An identical {provider} Trusted Publishing config already exists for this "
                f"crate (id {exc.existing.id})"
            ) from None
        except stored.PendingTaken:
            raise conflict(
                f"Another user has a pending Trusted Publishing config for crate "
                f"`{parsed.crate}`; a pending name has one registrant until it expires"
            ) from None
        # Recorded in the audit trail (and the owners notified) in the same transaction.
        config_created(row, actor)
        return JSONResponse({f"{provider}_config": config_json(row)})

    # -- GET -------------------------------------------------------------------------------

    async def list(self, request: Request, provider: ProviderKind) -> Response:
        name = request.query_params.get("crate")
        if not name:
            raise bad_request("Must specify either `crate` or `user_id` query parameter")
        per_page = _int_param(request, "per_page", DEFAULT_PER_PAGE, 1, MAX_PER_PAGE)
        after = _seek(request.query_params.get("seek"))
        actor = await self._user(request, name)
        db = self._registry.db
        crate = await self._run(lambda: db.crate_state(name))
        if crate is None:
            pending = await self._run(lambda: db.configs_for(provider, name, pending=True))
            mine = [r for r in pending if r.created_by == actor.user_id]
            if not mine:
                raise crate_not_found(name)
            rows = mine
        else:
            if actor.user_id not in crate.owner_ids:
                raise bad_request(NOT_OWNER)
            rows = await self._run(lambda: db.configs_for(provider, name))
        page = [r for r in rows if r.id > after][:per_page]
        next_page = None
        if len(page) == per_page and any(r.id > page[-1].id for r in rows):
            token = base64.urlsafe_b64encode(str(page[-1].id).encode()).decode().rstrip("=")
            next_page = "?" + urlencode({"crate": name, "per_page": per_page, "seek": token})
        return JSONResponse(
            {
                f"{provider}_configs": [config_json(r) for r in page],
                "meta": {"total": len(rows), "next_page": next_page},
            },
            headers={"Cache-Control": "no-store"},
        )

    # -- DELETE ----------------------------------------------------------------------------

    async def delete(self, request: Request, provider: ProviderKind) -> Response:
        raw = request.path_params["id"]
        if not raw.isdigit() or len(raw) > 18:
            raise not_found("Not Found")
        wanted = int(raw)
        db = self._registry.db
        found = await self._run(lambda: db.config(wanted))
        if found is None or found.provider != provider:
            raise not_found("Not Found")
        actor = await self._user(request, found.crate_name)

        def check(conn: Connection, row: ConfigRow | None) -> None:
            from trustpub.registry.db import queries

            if row is None or row.provider != provider:
                raise not_found("Not Found")
            if row.crate_id is None:
                if row.created_by != actor.user_id:
                    raise bad_request(NOT_OWNER)
                return
            state = queries.state_of(conn, queries.crate_by_id(conn, row.crate_id))
            if actor.user_id not in state.owner_ids:
                raise bad_request(NOT_OWNER)

        # Recorded in the audit trail (and the owners notified) in the same transaction.
        row = await self._run(lambda: db.delete_config(wanted, check, actor.login))
        config_deleted(row, actor)
        return Response(status_code=204)


def config_created(row: ConfigRow, actor: UserActor) -> ConfigRow:
    """A created config, in the service's log (the audit trail has it from its
    transaction). Returns it."""
    log.info(
        "trusted publishing config created",
        extra={"fields": {"config": row.id, "crate": row.crate_name, "by": actor.login}},
    )
    return row


def config_deleted(row: ConfigRow, actor: UserActor) -> ConfigRow:
    """A deleted config, in the service's log (the audit trail has it from its
    transaction). Returns it."""
    log.info(
        "trusted publishing config deleted",
        extra={"fields": {"config": row.id, "crate": row.crate_name, "by": actor.login}},
    )
    return row


def _with(new: NewConfig, owner_id: str, *, login: str | None = None) -> NewConfig:
    return NewConfig(
        provider=new.provider,
        crate_name=new.crate_name,
        issuer=new.issuer,
        repository_owner=login if login is not None else new.repository_owner,
        owner_id=owner_id,
        repository_name=new.repository_name,
        workflow=new.workflow,
        environment=new.environment,
        extensions=new.extensions,
    )


def _renamed(new: NewConfig, crate_name: str) -> NewConfig:
    return NewConfig(
        provider=new.provider,
        crate_name=crate_name,
        issuer=new.issuer,
        repository_owner=new.repository_owner,
        owner_id=new.owner_id,
        repository_name=new.repository_name,
        workflow=new.workflow,
        environment=new.environment,
        extensions=new.extensions,
    )


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise bad_request(f"`{name}` must be an integer from {low} to {high}")
    return int(raw)


def _seek(raw: str | None) -> int:
    if raw is None:
        return 0
    try:
        text = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError):
        text = ""
    if not text.isdigit() or len(text) > 18:
        raise bad_request("invalid seek parameter")
    return int(text)


def config_json(row: ConfigRow) -> dict[str, object]:
    """crates.io's shape, plus the extension fields a config uses (and, for a pending
    publisher, ``pending`` and ``expires_at``)."""
    data: dict[str, object] = {"id": row.id, "crate": row.crate_name}
    if row.provider == "github":
        data.update(
            repository_owner=row.repository_owner,
            repository_owner_id=int(row.owner_id) if row.owner_id is not None else None,
            repository_name=row.repository_name,
            workflow_filename=row.workflow,
        )
    else:
        data.update(
            namespace=row.repository_owner,
            namespace_id=row.owner_id,
            project=row.repository_name,
            workflow_filepath=row.workflow,
        )
    data["environment"] = row.environment
    data["created_at"] = rfc3339(row.created_at)
    if row.issuer != CANONICAL_ISSUERS[_provider(row.provider)]:
        data["issuer"] = row.issuer
    for key in EXTENSIONS:
        if key in row.extensions:
            data[key] = row.extensions[key]
    if row.pending:
        data["pending"] = True
        data["expires_at"] = rfc3339(row.expires_at or 0)
    return data


def _provider(value: str) -> ProviderKind:
    kind: Literal["github", "gitlab"] = "github" if value == "github" else "gitlab"
    return kind


__all__ = [
    "CONFIG_FILE",
    "ConfigsAPI",
    "GitHubLookup",
    "OwnerConfigs",
    "TrustpubError",
    "config_id",
    "config_json",
    "config_policy",
]
