"""The companion Cargo registry: a sparse index and the cargo web API.

``Registry`` holds the metadata database and the file store and exposes ``routes``
for a host application (Starlette does not run the lifespans of mounted sub-apps, so
the host opens the registry in its own lifespan with ``registry.open(authority)``).
``create_registry_app`` runs it on its own. Its endpoints raise; the host maps errors
to responses with ``trustpub.web.exception_handlers`` (both hosts do).
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import hashlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

import anyio
import anyio.to_thread
import httpx
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route
from starlette.types import Scope

from trustpub.errors import ConfigurationError, TrustpubError
from trustpub.metrics import RegistryMetrics
from trustpub.notify.addresses import DestinationRefused, WebhookRules, parse_webhook_url, resolve
from trustpub.notify.settings import NotificationSettings
from trustpub.ratelimit import MemoryBackend, RateLimiter, RateLimits, client_address
from trustpub.registry import changes
from trustpub.registry.actors import Actor, TrustpubActor
from trustpub.registry.auth import RemoteAuthority, TokenAuthority
from trustpub.registry.browse import CATEGORIES, CATEGORY_SLUGS, KEYWORDS, Browse
from trustpub.registry.categories import Categories, default_categories
from trustpub.registry.db import (
    ApiToken,
    CrateRow,
    RegistryDB,
    StorageFull,
    StorageUnavailable,
    VersionRow,
)
from trustpub.registry.db.index_files import IndexFile
from trustpub.registry.db.webhook_keys import KEY_FILE, WebhookKeys
from trustpub.registry.downloads import (
    RECENT_DAYS,
    DownloadCounter,
    FlushPolicy,
    recent_window,
    utc_day,
)
from trustpub.registry.errors import (
    RegistryRefused,
    Unauthenticated,
    bad_request,
    forbidden,
    not_found,
)
from trustpub.registry.hotfiles import HotFile, HotFiles
from trustpub.registry.index import ReadyIndex, config_json
from trustpub.registry.me import ME, Account
from trustpub.registry.names import canonical_name, index_path
from trustpub.registry.publish import Limits, parse_publish
from trustpub.registry.storage import CrateStorage, StorageSettings, open_storage
from trustpub.registry.views import (
    audit_json,
    crate_summary,
    dependency_json,
    download_json,
    extra_download_json,
    newest_first,
    user_json,
    version_detail,
    webhook_json,
)
from trustpub.text import shown
from trustpub.tokens import REGISTRY_TOKENS, TRUSTPUB_TOKENS
from trustpub.web import (
    Answer,
    ErrorBoundary,
    FastLane,
    JSONResponse,
    Lane,
    bearer_credential,
    exception_handlers,
    paths,
    query_int,
    read_body,
    read_json_object,
)

log = logging.getLogger("trustpub.registry")

T = TypeVar("T")
Endpoint = Callable[[Request], Awaitable[Response]]
MAX_PER_PAGE = 100
READ_CHECK_TTL = 1.0  # seconds a token found valid reads without a new check (check_read)
MAX_READERS = 10_000  # tokens remembered so (all forgotten past it)
INVITATION_TTL = 30 * 24 * 3600  # crates.io's


def publish_warnings(invalid_categories: Sequence[str]) -> dict[str, dict[str, list[str]]]:
    """The publish answer (crates.io's): the categories dropped because the registry's
    list lacks them, which cargo prints as a warning. Badges are not kept, nor checked."""
    return {
        "warnings": {
            "invalid_categories": list(invalid_categories),
            "invalid_badges": [],
            "other": [],
        }
    }


class Registry:
    """A registry in ``directory`` (``registry.db``, and ``crates/``, ``tmp/`` unless
    ``storage`` puts the files elsewhere, such as an S3 bucket).

    ``public_url`` is where cargo reaches the host application: the index is at
    ``sparse+{public_url}/index/`` and ``config.json`` points downloads and the API there.

    ``auth_required`` makes it private (cargo's ``auth-required``, cargo 1.74+): the
    index, ``config.json``, every API read and every download need a valid token, and a
    request without one gets cargo's 401 challenge naming ``login_url`` (where users
    learn how to get a token). ``invitation_ttl``: how long an owner invitation stays
    open, in seconds. ``categories``: the categories crates may name (by default the
    list trustpub ships, crates.io's). ``require_metadata`` (crates.io's rule)
    refuses a publish without a description or a license; a private registry may turn
    it off. ``download_flush``: when download counts are written
    (``trustpub.registry.downloads``). ``webhook_keys`` encrypt the webhook secrets
    (``trustpub.registry.db.webhook_keys``; by default a key file in ``directory``).
    """

    def __init__(
        self,
        directory: str | Path,
        public_url: str,
        *,
        limits: Limits | None = None,
        clock: Callable[[], float] = time.time,
        metrics: RegistryMetrics | None = None,
        webhook_rules: WebhookRules | None = None,
        auth_required: bool = False,
        login_url: str | None = None,
        invitation_ttl: int = INVITATION_TTL,
        database: str | None = None,
        storage: StorageSettings | None = None,
        categories: Categories | None = None,
        require_metadata: bool = True,
        download_flush: FlushPolicy | None = None,
        webhook_keys: WebhookKeys | None = None,
    ) -> None:
        # `database`: a postgresql:// URL; by default the SQLite file in `directory`.
        self.webhook_rules = webhook_rules or WebhookRules()
        if login_url is not None and not _header_safe_url(login_url):
            # It is written into a quoted header value: nothing may end the quotes.
            raise ValueError(
                "login_url: expected an http(s) URL (printable ASCII, no spaces or quotes)"
            )
        self.auth_required = auth_required
        self.login_url = login_url
        self.invitation_ttl = invitation_ttl
        self.require_metadata = require_metadata
        self.metrics = metrics if metrics is not None else RegistryMetrics()
        self.directory = Path(directory)
        self.public_url = public_url.rstrip("/")
        self.limits = limits or Limits()
        # `webhook_keys`: the operator's; by default a key file kept in `directory`
        # (created on first use), shared by replicas that share the directory.
        self.db = RegistryDB(
            database or self.directory / "registry.db",
            clock=clock,
            webhook_keys=webhook_keys or self.directory / KEY_FILE,
        )
        self._default_webhook_keys = webhook_keys is None
        self._clock = clock
        # Counted in memory, written in batches by a task of `open()`.
        self.downloads = DownloadCounter(self.db, self.metrics, clock, download_flush)
        # The index files, served from memory (trustpub.registry.index).
        self.index = ReadyIndex(self.db)
        self.config_body = config_json(self.public_url, auth_required)
        self.storage = storage or StorageSettings()
        self.files: CrateStorage[Any] = open_storage(self.storage, self.directory)
        # Downloads answered from memory (trustpub.registry.hotfiles): a public registry
        # streaming files of its own directory only.
        self.hot_files: HotFiles | None = (
            HotFiles()
            if not auth_required
            and self.storage.downloads == "stream"
            and self.storage.local_root(self.directory) is not None
            else None
        )
        self._authority: TokenAuthority | None = None
        self._readers: dict[bytes, _Reader] = {}  # see check_read
        self._open = False
        # Per process; the trustpub service replaces it with its own (shared on Redis).
        self.rate_limiter = RateLimiter(RateLimits(), MemoryBackend())
        self.categories = categories if categories is not None else default_categories()
        self.browse = Browse(self, self.categories)
        crates = paths.CRATES
        account = Account(self)
        browse = self.browse
        self.routes: list[BaseRoute] = [
            Route(f"{paths.INDEX}/config.json", self._h(self.config_json), methods=["GET"]),
            Route(f"{paths.INDEX}/{{path:path}}", self._h(self.index_file), methods=["GET"]),
            Route(f"{crates}/new", self._h(self.publish), methods=["PUT"]),
            Route(crates, self._h(self.search), methods=["GET"]),
            Route(f"{crates}/{{name}}", self._h(self.crate_info), methods=["GET"]),
            Route(f"{crates}/{{name}}", self._h(self.patch_crate), methods=["PATCH"]),
            Route(
                f"{crates}/{{name}}/owners", self._h(self.owners), methods=["GET", "PUT", "DELETE"]
            ),
            # Before `{name}/{version}`, which would otherwise take `versions` for a version.
            Route(f"{crates}/{{name}}/versions", self._h(self.versions), methods=["GET"]),
            Route(
                f"{crates}/{{name}}/reverse_dependencies",
                self._h(self.reverse_dependencies),
                methods=["GET"],
            ),
            Route(f"{crates}/{{name}}/audit", self._h(self.audit), methods=["GET"]),
            Route(f"{crates}/{{name}}/downloads", self._h(self.crate_downloads), methods=["GET"]),
            Route(
                f"{crates}/{{name}}/webhooks",
                self._h(self.webhooks),
                methods=["GET", "PUT"],
            ),
            Route(
                f"{crates}/{{name}}/webhooks/{{id}}",
                self._h(self.delete_webhook),
                methods=["DELETE"],
            ),
            Route(f"{crates}/{{name}}/{{version}}", self._h(self.version_info), methods=["GET"]),
            Route(
                f"{crates}/{{name}}/{{version}}/download", self._h(self.download), methods=["GET"]
            ),
            Route(
                f"{crates}/{{name}}/{{version}}/dependencies",
                self._h(self.dependencies),
                methods=["GET"],
            ),
            Route(
                f"{crates}/{{name}}/{{version}}/downloads",
                self._h(self.version_downloads),
                methods=["GET"],
            ),
            Route(f"{crates}/{{name}}/{{version}}/yank", self._h(self.yank), methods=["DELETE"]),
            Route(f"{crates}/{{name}}/{{version}}/unyank", self._h(self.unyank), methods=["PUT"]),
            Route(CATEGORIES, self._h(browse.list_categories), methods=["GET"]),
            Route(f"{CATEGORIES}/{{slug}}", self._h(browse.show_category), methods=["GET"]),
            Route(CATEGORY_SLUGS, self._h(browse.category_slugs), methods=["GET"]),
            Route(KEYWORDS, self._h(browse.list_keywords), methods=["GET"]),
            Route(f"{KEYWORDS}/{{keyword}}", self._h(browse.show_keyword), methods=["GET"]),
            Route(f"{ME}/tokens", self._h(account.list_tokens), methods=["GET"]),
            Route(f"{ME}/tokens", self._h(account.create_token), methods=["PUT"]),
            Route(f"{ME}/tokens/{{id:int}}", self._h(account.revoke_token), methods=["DELETE"]),
            Route("/api/v1/tokens/current", self._h(account.revoke_current), methods=["DELETE"]),
            Route(
                f"{ME}/crate_owner_invitations",
                self._h(account.list_invitations),
                methods=["GET"],
            ),
            Route(
                f"{ME}/crate_owner_invitations/{{crate_id:int}}",
                self._h(account.answer_invitation),
                methods=["PUT"],
            ),
        ]

    @property
    def lanes(self) -> list[Lane]:
        """Its reads answered past the router (``trustpub.web.FastLane``)."""
        return [
            ("GET", f"{paths.INDEX}/", self.fast_index),
            ("GET", f"{paths.CRATES}/", self.fast_download),
        ]

    def _h(self, endpoint: Endpoint) -> Endpoint:
        async def guarded(request: Request) -> Response:
            try:
                if not self._open:
                    raise RegistryRefused("The registry is not running", 503)
                return await endpoint(request)
            except (TrustpubError, HTTPException) as exc:
                # Counted here; answered by the one error mapping (trustpub.web).
                self.metrics.refused(exc.status_code)
                raise

        return guarded

    def guarded(self, endpoint: Endpoint) -> Endpoint:
        """``endpoint`` served like the registry's own (refused while it is closed,
        refusals counted): for the host's further registry endpoints (configs)."""
        return self._h(endpoint)

    async def run_storage(self, call: Callable[[], T]) -> T:
        """A blocking storage call in a worker thread, its errors worded as refusals."""
        return await self._db(call)

    @contextlib.asynccontextmanager
    async def open(self, authority: TokenAuthority | None) -> AsyncIterator[Registry]:
        """Open the database and file store; ``authority`` validates trustpub tokens
        (None: the registry accepts only its own API tokens). Download counts are
        written in the background while it is open, and a last time when it closes."""
        await anyio.to_thread.run_sync(self.open_storage)
        self._authority = authority
        self._open = True
        try:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(self.downloads.run_forever)
                tasks.start_soon(self.index.keep_current)
                try:
                    yield self
                finally:
                    tasks.cancel_scope.cancel()
        finally:
            self._open = False
            self._authority = None
            try:
                with anyio.CancelScope(shield=True):
                    # What was counted since the last flush.
                    if not await self.downloads.flush():
                        lost = self.downloads.discard()
                        log.error(
                            "download counts lost: the database was unavailable at stop",
                            extra={"fields": {"downloads": lost}},
                        )
            finally:
                self.close_storage()

    def open_storage(self) -> None:
        """Open the database and the file store (creating them on first use), and sweep
        what a crash left. Blocking. Raises ``ConfigurationError`` naming the data
        directory when it cannot be used (read-only, a newer schema, ...): a start-up
        check can call this, then ``close_storage()``, before serving."""
        try:
            self.db.open()
            if self._default_webhook_keys and not self.db.location.startswith("/"):
                # Replicas share the database: they must share the key too, which the
                # data directory's key file does only if the directory is shared.
                log.warning(
                    "webhook secrets are encrypted with the key file of the data "
                    "directory; every replica must share it, or configure "
                    "[registry] webhook_secrets_key_file",
                    extra={"fields": {"key_file": str(self.directory / KEY_FILE)}},
                )
            # When each category was first offered: the categories API's created_at.
            self.db.record_categories(self.categories.slugs())
            self.files.open()
            # A crash between a file's rename and its commit left it without a version.
            self.db.holding_write_lock(self.files.sweep_orphans)
            self.index.catch_up()
        except StorageUnavailable as exc:
            self.db.close()
            where = self.storage.url or f"data directory {self.directory.absolute()}"
            if not self.db.location.startswith("/"):
                where += f" or {self.db.location}"
            raise ConfigurationError(f"the registry cannot use its {where}: {exc.reason}") from exc

    def close_storage(self) -> None:
        self.db.close()
        self.index.reset()

    async def _db(self, call: Callable[[], T]) -> T:
        """Run a blocking storage call in a worker thread; its errors become refusals."""
        with changes.worded():
            return await anyio.to_thread.run_sync(call)

    async def run_db(self, call: Callable[[], T]) -> T:
        """``_db`` for the endpoints kept in other modules (``me``)."""
        return await self._db(call)

    async def check_writable(self) -> None:
        """Readiness: raise ``RegistryRefused`` (503, or 507 when the disk is full) unless
        the database and the file store can take a publish now. Names no file."""
        needed = self.limits.crate + self.limits.metadata

        def check() -> None:
            self.db.check_writable()
            self.files.check_writable(needed)

        if not self._open:
            raise RegistryRefused("The registry is not running", 503)
        try:
            await anyio.to_thread.run_sync(check)
        except StorageFull as exc:
            raise RegistryRefused("the registry's storage is full", 507) from exc
        except StorageUnavailable as exc:
            raise RegistryRefused("the registry's storage is unavailable", 503) from exc

    async def writable(self) -> bool:
        """``check_writable`` as a readiness check: True when a publish could be taken."""
        try:
            await self.check_writable()
        except RegistryRefused:
            return False
        return True

    async def revoke_leaked_token(self, token: str) -> ApiToken | None:
        """Revoke a registry API token reported as leaked; it as it was before (its
        ``revoked_at`` says whether it was revoked already), None if unknown here."""
        if not self._open:
            raise RegistryRefused("The registry is not running", 503)
        if not REGISTRY_TOKENS.is_well_formed(token):
            return None
        digest = REGISTRY_TOKENS.hash(token)
        return await self._db(lambda: self.db.revoke_token_by_hash(digest))

    # -- authentication ----------------------------------------------------------------

    async def actor(self, request: Request) -> Actor:
        """Who sends the request. Cargo sends the token as the bare header value;
        ``Bearer <token>`` is accepted too. Failed token checks are rate-limited per
        client address; past the limit the address is refused before any check."""
        token = bearer_credential(request)
        if not token:
            if self.auth_required:
                raise self._challenge()
            raise forbidden("this action requires authentication (no `Authorization` header)")
        client = client_address(request.scope.get("client"))
        await self.rate_limiter.check_auth_allowed(client)
        try:
            return await self._authenticate(token)
        except RegistryRefused:
            await self.rate_limiter.auth_failed(client)
            raise

    def _challenge(self) -> Unauthenticated:
        return Unauthenticated(
            "this registry requires authentication: send a registry API token "
            "(`cargo login --registry NAME`)",
            self.login_url,
        )

    async def check_read(self, request: Request, crate: str | None = None) -> Actor | None:
        """In a registry that requires authentication, refuse a read without a valid
        token (401 with cargo's challenge; an invalid token is a 401 too, so cargo says
        the token was rejected). ``crate``: the crate read, which a Trusted Publishing
        token must be allowed to read (``changes.readable_crates``); for others, any of
        a user's tokens reads every crate (crate scopes limit changes, not reads: a
        build needs every dependency). A public registry lets everyone read (None).

        A token found valid is taken as valid for reads for ``READ_CHECK_TTL`` seconds
        in this process (never past its expiry): a build asks for many index files in
        a row, and each check would otherwise cost a database write (the token's last
        use) or an introspection. So a revoked token may still read for up to that
        long, the same bound as an index change (``trustpub.registry.index``). Only
        reads: every change checks the token afresh."""
        if not self.auth_required:
            return None
        reader = await self._reader(request)
        actor = reader.actor
        if isinstance(actor, TrustpubActor) and crate is not None:
            readable = reader.readable
            if readable is None:
                readable = await self._db(lambda: changes.readable_crates(self.db, actor.token))
                reader.readable = readable
            if canonical_name(crate) not in readable:
                # Answered as for a crate that does not exist: a CI token learns nothing
                # of the crates it may not read.
                raise not_found(f"crate `{shown(crate)}` does not exist")
        return actor

    async def _reader(self, request: Request) -> _Reader:
        token = bearer_credential(request)
        key = hashlib.sha256(token.encode()).digest() if token else None
        now = self.index.clock()
        found = self._readers.get(key) if key is not None else None
        if found is not None and now < found.until and not _expired(found.actor, self.db.now()):
            # Valid a moment ago (the exact token: its hash): the failed-check limit
            # guards guessing, which a known valid token is not.
            return found
        try:
            actor = await self.actor(request)
        except RegistryRefused as exc:
            if exc.status_code == 403:
                raise Unauthenticated(exc.detail, self.login_url) from None
            raise
        reader = _Reader(now + READ_CHECK_TTL, actor)
        if key is not None:
            if len(self._readers) >= MAX_READERS:
                self._readers.clear()
            self._readers[key] = reader
        return reader

    async def _authenticate(self, token: str) -> Actor:
        if REGISTRY_TOKENS.is_well_formed(token):
            digest = REGISTRY_TOKENS.hash(token)
            user = await self._db(lambda: changes.user_actor(self.db, digest))
            if user is None:
                raise forbidden("The provided API token is invalid, expired or revoked")
            return user
        if TRUSTPUB_TOKENS.is_well_formed(token):
            if self._authority is None:
                raise forbidden("This registry does not accept Trusted Publishing tokens")
            trusted = await self._authority.introspect(token)
            if trusted is None:
                raise forbidden(
                    "The provided Trusted Publishing token is invalid, expired or revoked"
                )
            return TrustpubActor(trusted)
        for tokens in (REGISTRY_TOKENS, TRUSTPUB_TOKENS):
            if token.startswith(tokens.prefix):
                # Ours by its prefix, yet malformed: say how (never echoing the token).
                raise forbidden(f"Invalid `Authorization` header: {tokens.problem(token)}")
        raise forbidden(
            "Invalid `Authorization` header: not a registry API token (`tpreg_…`) or a "
            "Trusted Publishing token (`trustpub_…`)"
        )

    # -- sparse index ------------------------------------------------------------------

    async def config_json(self, request: Request) -> Response:
        if self.auth_required:
            await self.check_read(request)
        return Response(self.config_body, media_type="application/json")

    async def index_file(self, request: Request) -> Response:
        """A crate's index file, from memory (``trustpub.registry.index``): no database
        query unless the file's bytes are not cached, or the last catch-up is too old."""
        path = request.path_params["path"]
        if self.auth_required:
            name = path.rsplit("/", 1)[-1]
            await self.check_read(request, name if name and index_path(name) == path else None)
        if not self.index.is_current():
            await self._db(self.index.catch_up)
        head = self.index.head(path)
        if head is None:
            name = path.rsplit("/", 1)[-1]
            if not name or index_path(name) != path:
                raise not_found(f"no index file at `{path}`")
            if self.index.may_have_missed():
                # Perhaps a crate just published through another process.
                await self._db(self.index.catch_up)
                head = self.index.head(path)
            if head is None:
                raise not_found(f"crate `{shown(name)}` does not exist")
        if _not_modified(request, head.etag, head.last_modified):
            self.metrics.index_requests.inc("not_modified")
            return Response(status_code=304, headers=_index_headers(head))
        ready = self.index.cached(head)
        if ready is None:
            ready = await self._db(lambda: self.index.read(path))
            if ready is None:  # pragma: no cover - files are never deleted
                raise not_found(f"crate `{shown(path.rsplit('/', 1)[-1])}` does not exist")
            self.index.keep(ready)
        self.metrics.index_requests.inc("ok")
        return Response(
            ready.body, media_type="text/plain; charset=utf-8", headers=_index_headers(ready)
        )

    def fast_index(self, scope: Scope) -> Answer | None:
        """An index file or its 304 from memory, as ``index_file`` answers it; None when
        that takes more (a private registry's read check, a catch-up, a database read,
        a miss, an error): then the request goes to ``index_file`` (``trustpub.web``'s
        fast lane, for the path cargo fetches most)."""
        if self.auth_required or not self._open or not self.index.is_current():
            return None
        head = self.index.head(scope["path"][len(paths.INDEX) + 1 :])
        if head is None:
            return None
        if_none_match = if_modified_since = None
        for name, value in scope["headers"]:
            if name == b"if-none-match" and if_none_match is None:
                if_none_match = value.decode("latin-1")
            elif name == b"if-modified-since" and if_modified_since is None:
                if_modified_since = value.decode("latin-1")
        if _unchanged(if_none_match, if_modified_since, head.etag, head.last_modified):
            self.metrics.index_requests.inc("not_modified")
            return 304, _not_modified_headers(head.etag, head.last_modified), b""
        ready = self.index.cached(head)
        if ready is None or ready.body is None:
            return None
        self.metrics.index_requests.inc("ok")
        return 200, _index_file_headers(ready.etag, ready.last_modified, ready.body), ready.body

    async def _index_changed(self) -> None:
        """After a change committed by this process: serve it at once. A failure here
        is logged, not raised (the change is made; the next catch-up sees it)."""
        try:
            await anyio.to_thread.run_sync(self.index.catch_up)
        except StorageUnavailable as exc:
            log.warning("cannot read the index changes", extra={"fields": {"reason": exc.reason}})

    # -- web API -----------------------------------------------------------------------

    async def publish(self, request: Request) -> Response:
        actor = await self.actor(request)
        body = await read_body(request, self.limits.body)
        # The right to publish the name is checked from the metadata, before the .crate
        # is unpacked or anything is written.
        parsed = await anyio.to_thread.run_sync(
            lambda: parse_publish(
                body,
                self.limits,
                lambda meta: changes.check_publish_right(self.db, actor, meta.name),
                require_metadata=self.require_metadata,
            )
        )
        # As crates.io: categories the registry does not offer are dropped, and named
        # in the answer.
        kept, invalid = self.categories.split(parsed.metadata.categories)
        parsed = replace(parsed, metadata=replace(parsed.metadata, categories=kept))
        vers = parsed.metadata.vers
        staged = await self._db(lambda: self.files.stage(parsed.crate))
        try:
            await self._db(
                lambda: changes.publish(
                    self.db,
                    actor,
                    parsed,
                    lambda crate: self.files.place(staged, crate, vers),
                    lambda crate: self.files.remove(crate, vers),
                )
            )
        finally:
            self.files.discard(staged)
        await self._index_changed()
        self.metrics.publishes.inc("trustpub" if isinstance(actor, TrustpubActor) else "api-token")
        log.info(
            "published",
            extra={
                "fields": {
                    "crate": parsed.metadata.name,
                    "version": vers,
                    "via": "trustpub" if isinstance(actor, TrustpubActor) else "api-token",
                }
            },
        )
        return JSONResponse(publish_warnings(invalid))

    async def check_listing(self, request: Request) -> None:
        """``check_read`` for reads across crates (search, categories, keywords): a
        Trusted Publishing token, which may read only some crates, is refused."""
        if isinstance(await self.check_read(request), TrustpubActor):
            raise forbidden(
                "Trusted Publishing tokens cannot search or list a registry that requires "
                "authentication; use a `read` token"
            )

    async def search(self, request: Request) -> Response:
        """crates.io's search: ``q`` (name or description), ``category`` (with its
        subcategories), ``keyword``, ``sort`` (see ``Browse.search_filters``), paged."""
        await self.check_listing(request)
        query = request.query_params.get("q", "")
        per_page = query_int(request, "per_page", 10, 1, MAX_PER_PAGE)
        page = query_int(request, "page", 1, 1, 10_000)
        filters = self.browse.search_filters(request, query)
        if filters.matches_nothing:
            return JSONResponse({"crates": [], "meta": {"total": 0}})
        crates, total = await self._db(
            lambda: self.db.search(
                query,
                per_page,
                (page - 1) * per_page,
                sort=filters.sort,
                categories=filters.categories,
                keyword=filters.keyword,
                recent_since=recent_window(self._clock())[0],
            )
        )
        versions = await self._db(lambda: self.db.versions_of([k.id for k in crates]))
        recent = await self._recent_downloads([k.id for k in crates])
        return JSONResponse(
            {
                "crates": [crate_summary(k, versions[k.id], recent[k.id]) for k in crates],
                "meta": {"total": total},
            }
        )

    async def _crate_with_versions(self, request: Request) -> tuple[CrateRow, list[VersionRow]]:
        """The crate the path names and its versions, oldest first (404 if none)."""
        name = request.path_params["name"]
        await self.check_read(request, name)
        found = await self._db(lambda: self.db.crate_with_versions(name))
        if found is None:
            raise not_found(f"crate `{shown(name)}` does not exist")
        return found

    async def _recent_downloads(self, crate_ids: list[int]) -> dict[int, int]:
        since, _ = recent_window(self._clock())
        return await self._db(lambda: self.db.recent_downloads(crate_ids, since))

    async def crate_info(self, request: Request) -> Response:
        crate, versions = await self._crate_with_versions(request)
        recent = await self._recent_downloads([crate.id])
        return JSONResponse(
            {
                "crate": crate_summary(crate, versions, recent[crate.id]),
                "versions": [version_detail(v) for v in reversed(versions)],
                **await self.browse.crate_terms(crate),
            }
        )

    async def versions(self, request: Request) -> Response:
        """Every version of a crate, newest first, as the crate endpoint lists them (the
        ``versions`` link of the crate JSON points here)."""
        _, versions = await self._crate_with_versions(request)
        return JSONResponse(
            {
                "versions": [version_detail(v) for v in reversed(versions)],
                "meta": {"total": len(versions), "next_page": None},
            }
        )

    async def patch_crate(self, request: Request) -> Response:
        name = request.path_params["name"]
        actor = await self.actor(request)
        data = await read_json_object(request)
        crate = data.get("crate")
        if not isinstance(crate, dict) or set(crate) != {"trustpub_only"}:
            raise bad_request('Expected a body like {"crate": {"trustpub_only": true}}')
        value = crate["trustpub_only"]
        if not isinstance(value, bool):
            raise bad_request("`trustpub_only` must be true or false")
        await self._db(lambda: changes.set_trustpub_only(self.db, actor, name, value))
        found = await self._db(lambda: self.db.crate_with_versions(name))
        assert found is not None
        recent = await self._recent_downloads([found[0].id])
        return JSONResponse({"crate": crate_summary(*found, recent[found[0].id])})

    async def owners(self, request: Request) -> Response:
        name = request.path_params["name"]
        if request.method == "GET":
            await self.check_read(request, name)
            users = await self._db(lambda: self.db.owners(name))
            if users is None:
                raise not_found(f"crate `{shown(name)}` does not exist")
            return JSONResponse({"users": [user_json(u) for u in users]})
        actor = await self.actor(request)
        data = await read_json_object(request)
        logins = data.get("users", data.get("owners"))
        if (
            not isinstance(logins, list)
            or not logins
            or not all(isinstance(x, str) and x for x in logins)
            or len(logins) > 50
        ):
            raise bad_request('Expected a body like {"users": ["login"]}')
        if request.method == "PUT":
            # As crates.io: users are invited, and become owners when they accept.
            msg, _events = await self._db(
                lambda: changes.invite_owners(self.db, actor, name, logins, self.invitation_ttl)
            )
            return JSONResponse({"ok": True, "msg": msg})
        msg = await self._db(lambda: changes.change_owners(self.db, actor, name, logins, False))
        self.metrics.owner_changes.inc("remove", amount=len(logins))
        return JSONResponse({"ok": True, "msg": msg})

    # -- audit trail and webhooks (owners, with an API token) -------------------------------

    async def owner_actor(self, request: Request) -> Actor:
        """The caller, for endpoints that only owners may use: 401 without a valid
        token (then ``owned_crate`` answers 404 for an unknown crate, 403 for a caller
        who does not own it)."""
        if not bearer_credential(request):
            raise RegistryRefused(
                "this action requires authentication (no `Authorization` header)", 401
            )
        try:
            return await self.actor(request)
        except RegistryRefused as exc:
            if exc.status_code == 403:
                raise RegistryRefused(exc.detail, 401) from exc
            raise

    async def audit(self, request: Request) -> Response:
        """A crate's audit trail, newest first, each event with its notifications'
        delivery state."""
        name = request.path_params["name"]
        per_page = query_int(request, "per_page", 20, 1, MAX_PER_PAGE)
        page = query_int(request, "page", 1, 1, 10_000)
        actor = await self.owner_actor(request)
        state = await self._db(lambda: changes.owned_crate(self.db, actor, name))
        found, total = await self._db(
            lambda: self.db.audit(state.crate.id, per_page, (page - 1) * per_page)
        )
        next_page = f"?page={page + 1}&per_page={per_page}" if page * per_page < total else None
        return JSONResponse(
            {
                "events": [audit_json(event, sent) for event, sent in found],
                "meta": {"total": total, "next_page": next_page},
            }
        )

    async def webhooks(self, request: Request) -> Response:
        name = request.path_params["name"]
        actor = await self.owner_actor(request)
        if request.method == "GET":
            state = await self._db(lambda: changes.owned_crate(self.db, actor, name))
            hooks = await self._db(lambda: self.db.webhooks(state.crate.id))
            return JSONResponse({"webhooks": [webhook_json(h, last) for h, last in hooks]})
        data = await read_json_object(request)
        hook = data.get("webhook")
        if not isinstance(hook, dict) or set(hook) != {"url"} or not isinstance(hook["url"], str):
            raise bad_request('Expected a body like {"webhook": {"url": "https://..."}}')
        url = hook["url"]
        try:
            destination = parse_webhook_url(url, self.webhook_rules)
            # Checked now too (and again at every delivery): refuse a private address
            # while the owner is there to read why.
            await anyio.to_thread.run_sync(resolve, destination, self.webhook_rules)
        except DestinationRefused as exc:
            raise bad_request(str(exc)) from exc
        # The secret is shown in this answer only; receivers verify with it.
        secret = "whsec_" + secrets.token_urlsafe(32)
        created = await self._db(lambda: changes.add_webhook(self.db, actor, name, url, secret))
        body = webhook_json(created, None)
        body["secret"] = secret
        return JSONResponse({"webhook": body})

    async def delete_webhook(self, request: Request) -> Response:
        name, raw_id = request.path_params["name"], request.path_params["id"]
        actor = await self.owner_actor(request)
        if not (raw_id.isascii() and raw_id.isdigit() and len(raw_id) <= 18):
            raise not_found(f"no webhook with id `{raw_id[:40]}`")
        webhook_id = int(raw_id)
        await self._db(lambda: changes.delete_webhook(self.db, actor, name, webhook_id))
        return Response(status_code=204)

    async def version_info(self, request: Request) -> Response:
        name, num = request.path_params["name"], request.path_params["version"]
        await self.check_read(request, name)
        version = await self._db(lambda: self.db.version(name, num))
        if version is None:
            raise not_found(f"crate `{shown(name)}` does not have a version `{shown(num)}`")
        return JSONResponse({"version": version_detail(version)})

    async def dependencies(self, request: Request) -> Response:
        """A version's dependencies (yanked or not), as crates.io lists them: required
        before optional, then by crate name."""
        name, num = request.path_params["name"], request.path_params["version"]
        await self.check_read(request, name)
        _, deps = await self._db(lambda: self.db.dependencies(name, num))
        deps.sort(key=lambda d: (d.optional, d.crate.lower(), d.crate, d.id))
        return JSONResponse({"dependencies": [dependency_json(d) for d in deps]})

    async def reverse_dependencies(self, request: Request) -> Response:
        """The crates whose default version (the highest not yanked) depends on this
        one, as crates.io lists them: by name (crates.io puts the most downloaded
        first; this registry counts no downloads), ``page``/``per_page`` paging."""
        name = request.path_params["name"]
        if isinstance(await self.check_read(request, name), TrustpubActor):
            # The dependents are other crates, which such a token may not read.
            raise forbidden(
                "Trusted Publishing tokens cannot list reverse dependencies in a registry "
                "that requires authentication; use a `read` token"
            )
        per_page = query_int(request, "per_page", 10, 1, MAX_PER_PAGE)
        page = query_int(request, "page", 1, 1, 10_000)
        found = await self._db(
            lambda: self.db.reverse_dependencies(name, per_page, (page - 1) * per_page)
        )
        return JSONResponse(
            {
                "dependencies": [
                    dependency_json(d, found.crate, n)
                    for d, n in zip(found.dependencies, found.downloads, strict=True)
                ],
                "versions": [version_detail(v) for v in found.versions],
                "meta": {"total": found.total},
            }
        )

    async def download(self, request: Request) -> Response:
        name, num = request.path_params["name"], request.path_params["version"]
        await self.check_read(request, name)
        # Read before the version: a kept answer is good for this generation at most.
        before = (
            self.index.head(index_path(name))
            if self.hot_files is not None and self.index.is_current()
            else None
        )
        version = await self._db(lambda: self.db.version(name, num))
        if version is None:
            raise not_found(f"crate `{shown(name)}` does not have a version `{shown(num)}`")
        if self.storage.downloads == "redirect":
            url = await self._db(lambda: self.files.download_url(version.crate_name, version.num))
            if url is not None:
                self.metrics.downloads.inc()
                self.downloads.count(version.id)
                return RedirectResponse(url, 302)
        stored = await self._db(lambda: self.files.get(version.crate_name, version.num))
        if stored is None:
            log.error(
                "a published .crate file is missing",
                extra={"fields": {"crate": version.crate_name, "version": version.num}},
            )
            raise RegistryRefused("The .crate file is missing from the registry", 500)
        self.metrics.downloads.inc()
        self.downloads.count(version.id)
        headers = {
            "Content-Length": str(stored.size),
            "Content-Disposition": f'attachment; filename="{version.crate_name}-'
            f'{version.num}.crate"',
        }
        hot = self.hot_files
        if (
            hot is not None
            and before is not None
            and before.path == index_path(version.crate_name)
            and stored.size <= hot.max_file
        ):
            # Small: read whole (one worker-thread hop) and kept for the fast lane.
            chunks = stored.chunks
            body = await self._db(lambda: b"".join(chunks))
            response = Response(body, media_type="application/gzip", headers=headers)
            if len(body) == stored.size:
                hot.keep(
                    f"{name}/{num}",
                    HotFile(before.path, before.generation, version.id, response.raw_headers, body),
                )
            return response
        return StreamingResponse(
            stored.chunks,  # sync: read in worker threads
            media_type="application/gzip",
            headers=headers,
        )

    def fast_download(self, scope: Scope) -> Answer | None:
        """A download kept in memory (``trustpub.registry.hotfiles``), answered and
        counted as ``download`` does; None when it is not kept, or its crate changed
        since, or the index is not current: then the request goes to ``download``."""
        hot = self.hot_files
        if hot is None or not self._open:
            return None
        path: str = scope["path"]
        if not path.endswith("/download"):
            return None
        key = path[len(paths.CRATES) + 1 : -len("/download")]
        found = hot.get(key)
        if found is None or not self.index.is_current():
            return None
        head = self.index.head(found.index_path)
        if head is None or head.generation != found.generation:
            hot.drop(key)
            return None
        self.metrics.downloads.inc()
        self.downloads.count(found.version_id)
        return 200, found.headers, found.body

    # -- download counts (crates.io's shapes; the last RECENT_DAYS days, today included) ----

    async def crate_downloads(self, request: Request) -> Response:
        """Daily downloads of the crate's five highest versions, each on its own, and of
        the others added up by day (``meta.extra_downloads``)."""
        _, versions = await self._crate_with_versions(request)
        ordered = newest_first(versions)
        latest, rest = [v.id for v in ordered[:5]], [v.id for v in ordered[5:]]
        since, until = recent_window(self._clock())
        per_version = await self._db(lambda: self.db.version_downloads(latest, since, until))
        extra = await self._db(lambda: self.db.downloads_by_day(rest, since, until))
        return JSONResponse(
            {
                "version_downloads": [download_json(d) for d in per_version],
                "meta": {"extra_downloads": [extra_download_json(d) for d in extra]},
            }
        )

    async def version_downloads(self, request: Request) -> Response:
        """One version's daily downloads over the days ending ``before_date``
        (YYYY-MM-DD, included; default today)."""
        name, num = request.path_params["name"], request.path_params["version"]
        await self.check_read(request, name)
        until = request.query_params.get("before_date")
        if until is None:
            until = utc_day(self._clock())
        elif not _is_day(until):
            raise bad_request("`before_date` must be a date as YYYY-MM-DD")
        version = await self._db(lambda: self.db.version(name, num))
        if version is None:
            raise not_found(f"crate `{shown(name)}` does not have a version `{shown(num)}`")
        last = datetime.date.fromisoformat(until)
        since = (last - datetime.timedelta(days=RECENT_DAYS - 1)).isoformat()
        found = await self._db(lambda: self.db.version_downloads([version.id], since, until))
        return JSONResponse({"version_downloads": [download_json(d) for d in found]})

    async def yank(self, request: Request) -> Response:
        return await self._set_yanked(request, True)

    async def unyank(self, request: Request) -> Response:
        return await self._set_yanked(request, False)

    async def _set_yanked(self, request: Request, yanked: bool) -> Response:
        name, num = request.path_params["name"], request.path_params["version"]
        actor = await self.actor(request)
        await self._db(lambda: changes.set_yanked(self.db, actor, name, num, yanked))
        await self._index_changed()
        self.metrics.yanks.inc("yank" if yanked else "unyank")
        return JSONResponse({"ok": True})


def _header_safe_url(url: str) -> bool:
    return (
        url.startswith(("https://", "http://"))
        and url.isascii()
        and url.isprintable()
        and not any(c in url for c in '"\\ ')
    )


def _is_day(text: str) -> bool:
    """A calendar day written YYYY-MM-DD, exactly (no other ISO 8601 form)."""
    if len(text) != 10 or not text.isascii() or text[4] != "-" or text[7] != "-":
        return False
    try:
        datetime.date.fromisoformat(text)
    except ValueError:
        return False
    return text[:4].isdigit() and text[5:7].isdigit() and text[8:].isdigit()


@dataclass(slots=True)
class _Reader:
    """A token found valid for reads (``check_read``), until ``until`` (monotonic)."""

    until: float
    actor: Actor
    readable: frozenset[str] | None = None  # a Trusted Publishing token's, once read


def _expired(actor: Actor, now: int) -> bool:
    if isinstance(actor, TrustpubActor):
        return now >= actor.token.record.expires_at
    return actor.expires_at is not None and now >= actor.expires_at


def _index_headers(file: IndexFile) -> Mapping[str, str]:
    return _caching_headers(file.etag, file.last_modified)


@functools.lru_cache(maxsize=4096)
def _caching_headers(etag: str, last_modified: int) -> Mapping[str, str]:
    # Read-only: a response copies its headers, and this mapping serves many.
    return MappingProxyType(
        {
            "ETag": etag,
            "Last-Modified": formatdate(last_modified, usegmt=True),
            "Cache-Control": "no-cache",
        }
    )


@functools.lru_cache(maxsize=4096)
def _not_modified_headers(etag: str, last_modified: int) -> Sequence[tuple[bytes, bytes]]:
    """The encoded headers ``index_file``'s 304 has (the fast lane's answer)."""
    return tuple(
        Response(status_code=304, headers=_caching_headers(etag, last_modified)).raw_headers
    )


def _index_file_headers(
    etag: str, last_modified: int, body: bytes
) -> Sequence[tuple[bytes, bytes]]:
    """The encoded headers ``index_file``'s 200 has (the fast lane's answer)."""
    return _index_file_headers_for(etag, last_modified, len(body))


@functools.lru_cache(maxsize=4096)
def _index_file_headers_for(
    etag: str, last_modified: int, length: int
) -> Sequence[tuple[bytes, bytes]]:
    response = Response(
        b"x" * length,
        media_type="text/plain; charset=utf-8",
        headers=_caching_headers(etag, last_modified),
    )
    return tuple(response.raw_headers)


def _not_modified(request: Request, etag: str, last_modified: int) -> bool:
    return _unchanged(
        request.headers.get("if-none-match"),
        request.headers.get("if-modified-since"),
        etag,
        last_modified,
    )


def _unchanged(
    if_none_match: str | None, if_modified_since: str | None, etag: str, last_modified: int
) -> bool:
    """Whether a conditional GET's validators say the client's copy is current."""
    if if_none_match is not None:
        # RFC 9110: with If-None-Match present, If-Modified-Since is ignored.
        tags = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
        return "*" in tags or etag in tags
    if if_modified_since is not None:
        try:
            since = parsedate_to_datetime(if_modified_since)
        except (TypeError, ValueError):
            return False
        return last_modified <= since.timestamp()
    return False


def create_registry_app(
    directory: str | Path,
    public_url: str,
    *,
    authority: TokenAuthority | None = None,
    trustpub_url: str | None = None,
    credential: str | None = None,
    limits: Limits | None = None,
    http_client: httpx.AsyncClient | None = None,
    notifications: NotificationSettings | None = None,
    auth_required: bool = False,
    login_url: str | None = None,
    invitation_ttl: int = INVITATION_TTL,
    database: str | None = None,
    storage: StorageSettings | None = None,
    categories: Categories | None = None,
    require_metadata: bool = True,
    webhook_keys: WebhookKeys | None = None,
) -> Starlette:
    """The registry on its own. trustpub tokens are validated by ``authority``, or by
    the introspection endpoint of the trustpub service at ``trustpub_url`` using
    ``credential``; with neither, only registry API tokens are accepted. With
    ``notifications``, it delivers its outbox (mail, webhooks) in the background."""
    if authority is None and trustpub_url is not None and not credential:
        raise ValueError("a trustpub URL needs an introspection credential")
    registry = Registry(
        directory,
        public_url,
        limits=limits,
        webhook_rules=notifications.webhooks if notifications is not None else None,
        auth_required=auth_required,
        login_url=login_url,
        invitation_ttl=invitation_ttl,
        database=database,
        storage=storage,
        categories=categories,
        require_metadata=require_metadata,
        webhook_keys=webhook_keys,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            chosen = authority
            if chosen is None and trustpub_url is not None:
                assert credential is not None
                client = http_client
                if client is None:
                    client = await stack.enter_async_context(
                        # Redirects are not followed: the credential goes to one host only.
                        httpx.AsyncClient(follow_redirects=False, trust_env=False)
                    )
                chosen = RemoteAuthority(client, trustpub_url, credential)
            await stack.enter_async_context(registry.open(chosen))
            if notifications is None:
                yield
                return
            from trustpub.notify import OutboxWorker

            webhook_client = await stack.enter_async_context(
                httpx.AsyncClient(follow_redirects=False, trust_env=False)
            )
            worker = OutboxWorker(registry.db, notifications, webhook_client)
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(worker.run_forever)
                yield
                tasks.cancel_scope.cancel()

    app = Starlette(
        routes=registry.routes,
        middleware=[Middleware(ErrorBoundary), Middleware(FastLane, lanes=registry.lanes)],
        exception_handlers=exception_handlers(),
        lifespan=lifespan,
    )
    app.state.registry = registry
    return app
