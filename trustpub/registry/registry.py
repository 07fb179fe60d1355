"""The companion Cargo registry: a sparse index and the cargo web API.

``Registry`` holds the metadata database and the file store and exposes ``routes``
for a host application (Starlette does not run the lifespans of mounted sub-apps, so
the host opens the registry in its own lifespan with ``registry.open(authority)``).
``create_registry_app`` runs it on its own. Its endpoints raise; the host maps errors
to responses with ``trustpub.web.exception_handlers`` (both hosts do).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path
from typing import Any, TypeVar

import anyio.to_thread
import httpx
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from trustpub.errors import ConfigurationError, TrustpubError
from trustpub.metrics import RegistryMetrics
from trustpub.ratelimit import MemoryBackend, RateLimiter, RateLimits, client_address
from trustpub.registry import changes
from trustpub.registry.actors import Actor, TrustpubActor
from trustpub.registry.auth import RemoteAuthority, TokenAuthority
from trustpub.registry.db import CrateRow, RegistryDB, StorageFull, StorageUnavailable, VersionRow
from trustpub.registry.errors import RegistryRefused, bad_request, forbidden, not_found
from trustpub.registry.names import index_path
from trustpub.registry.publish import Limits, parse_publish
from trustpub.registry.storage import CrateStorage, StorageSettings, open_storage
from trustpub.registry.views import crate_summary, user_json, version_detail
from trustpub.tokens import REGISTRY_TOKENS, TRUSTPUB_TOKENS
from trustpub.web import (
    ErrorBoundary,
    JSONResponse,
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
PUBLISH_WARNINGS: dict[str, dict[str, list[str]]] = {
    "warnings": {"invalid_categories": [], "invalid_badges": [], "other": []}
}


class Registry:
    """A registry in ``directory`` (``registry.db``, and ``crates/``, ``tmp/`` unless
    ``storage`` puts the files elsewhere, such as an S3 bucket).

    ``public_url`` is where cargo reaches the host application: the index is at
    ``sparse+{public_url}/index/`` and ``config.json`` points downloads and the API there.
    """

    def __init__(
        self,
        directory: str | Path,
        public_url: str,
        *,
        limits: Limits | None = None,
        clock: Callable[[], float] = time.time,
        metrics: RegistryMetrics | None = None,
        storage: StorageSettings | None = None,
    ) -> None:
        self.metrics = metrics if metrics is not None else RegistryMetrics()
        self.directory = Path(directory)
        self.public_url = public_url.rstrip("/")
        self.limits = limits or Limits()
        self.db = RegistryDB(self.directory / "registry.db", clock=clock)
        self.storage = storage or StorageSettings()
        self.files: CrateStorage[Any] = open_storage(self.storage, self.directory)
        self._authority: TokenAuthority | None = None
        self._open = False
        # Per process; the trustpub service replaces it with its own (shared on Redis).
        self.rate_limiter = RateLimiter(RateLimits(), MemoryBackend())
        crates = paths.CRATES
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
            Route(f"{crates}/{{name}}/{{version}}", self._h(self.version_info), methods=["GET"]),
            Route(
                f"{crates}/{{name}}/{{version}}/download", self._h(self.download), methods=["GET"]
            ),
            Route(f"{crates}/{{name}}/{{version}}/yank", self._h(self.yank), methods=["DELETE"]),
            Route(f"{crates}/{{name}}/{{version}}/unyank", self._h(self.unyank), methods=["PUT"]),
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

    @contextlib.asynccontextmanager
    async def open(self, authority: TokenAuthority | None) -> AsyncIterator[Registry]:
        """Open the database and file store; ``authority`` validates trustpub tokens
        (None: the registry accepts only its own API tokens)."""
        await anyio.to_thread.run_sync(self.open_storage)
        self._authority = authority
        self._open = True
        try:
            yield self
        finally:
            self._open = False
            self._authority = None
            self.close_storage()

    def open_storage(self) -> None:
        """Open the database and the file store (creating them on first use), and sweep
        what a crash left. Blocking. Raises ``ConfigurationError`` naming the data
        directory when it cannot be used (read-only, a newer schema, ...): a start-up
        check can call this, then ``close_storage()``, before serving."""
        try:
            self.db.open()
            self.files.open()
            # A crash between a file's rename and its commit left it without a version.
            self.db.holding_write_lock(self.files.sweep_orphans)
        except StorageUnavailable as exc:
            self.db.close()
            where = self.storage.url or f"data directory {self.directory.absolute()}"
            raise ConfigurationError(f"the registry cannot use its {where}: {exc.reason}") from exc

    def close_storage(self) -> None:
        self.db.close()

    async def _db(self, call: Callable[[], T]) -> T:
        """Run a blocking storage call in a worker thread; its errors become refusals."""
        with changes.worded():
            return await anyio.to_thread.run_sync(call)

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

    # -- authentication ----------------------------------------------------------------

    async def actor(self, request: Request) -> Actor:
        """Who sends the request. Cargo sends the token as the bare header value;
        ``Bearer <token>`` is accepted too. Failed token checks are rate-limited per
        client address; past the limit the address is refused before any check."""
        token = bearer_credential(request)
        if not token:
            raise forbidden("this action requires authentication (no `Authorization` header)")
        client = client_address(request.scope.get("client"))
        await self.rate_limiter.check_auth_allowed(client)
        try:
            return await self._authenticate(token)
        except RegistryRefused:
            await self.rate_limiter.auth_failed(client)
            raise

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
        return JSONResponse(
            {
                "dl": f"{self.public_url}{paths.CRATES}",
                "api": self.public_url,
                "auth-required": False,
            }
        )

    async def index_file(self, request: Request) -> Response:
        path = request.path_params["path"]
        name = path.rsplit("/", 1)[-1]
        if not name or index_path(name) != path:
            raise not_found(f"no index file at `{path}`")
        found = await self._db(lambda: self.db.index_crate(name))
        if found is None:
            raise not_found(f"crate `{name}` does not exist")
        crate, versions = found
        body = "".join(
            json.dumps(v.index_line(), separators=(",", ":")) + "\n" for v in versions
        ).encode("utf-8")
        etag = '"' + hashlib.sha256(body).hexdigest()[:40] + '"'
        headers = {
            "ETag": etag,
            "Last-Modified": formatdate(crate.index_updated_at, usegmt=True),
            "Cache-Control": "no-cache",
        }
        if _not_modified(request, etag, crate.index_updated_at):
            self.metrics.index_requests.inc("not_modified")
            return Response(status_code=304, headers=headers)
        self.metrics.index_requests.inc("ok")
        return Response(body, media_type="text/plain; charset=utf-8", headers=headers)

    # -- web API -----------------------------------------------------------------------

    async def publish(self, request: Request) -> Response:
        actor = await self.actor(request)
        body = await read_body(request, self.limits.body)
        # The right to publish the name is checked from the metadata, before the .crate
        # is unpacked or anything is written.
        parsed = await anyio.to_thread.run_sync(
            parse_publish,
            body,
            self.limits,
            lambda meta: changes.check_publish_right(self.db, actor, meta.name),
        )
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
        return JSONResponse(PUBLISH_WARNINGS)

    async def search(self, request: Request) -> Response:
        query = request.query_params.get("q", "")
        per_page = query_int(request, "per_page", 10, 1, MAX_PER_PAGE)
        page = query_int(request, "page", 1, 1, 10_000)
        crates, total = await self._db(
            lambda: self.db.search(query, per_page, (page - 1) * per_page)
        )
        versions = await self._db(lambda: self.db.versions_of([k.id for k in crates]))
        return JSONResponse(
            {
                "crates": [crate_summary(k, versions[k.id]) for k in crates],
                "meta": {"total": total},
            }
        )

    async def _crate_with_versions(self, request: Request) -> tuple[CrateRow, list[VersionRow]]:
        """The crate the path names and its versions, oldest first (404 if none)."""
        name = request.path_params["name"]
        found = await self._db(lambda: self.db.crate_with_versions(name))
        if found is None:
            raise not_found(f"crate `{name}` does not exist")
        return found

    async def crate_info(self, request: Request) -> Response:
        crate, versions = await self._crate_with_versions(request)
        return JSONResponse(
            {
                "crate": crate_summary(crate, versions),
                "versions": [version_detail(v) for v in reversed(versions)],
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
        return JSONResponse({"crate": crate_summary(*found)})

    async def owners(self, request: Request) -> Response:
        name = request.path_params["name"]
        if request.method == "GET":
            users = await self._db(lambda: self.db.owners(name))
            if users is None:
                raise not_found(f"crate `{name}` does not exist")
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
        add = request.method == "PUT"
        msg = await self._db(lambda: changes.change_owners(self.db, actor, name, logins, add))
        self.metrics.owner_changes.inc("add" if add else "remove", amount=len(logins))
        return JSONResponse({"ok": True, "msg": msg})

    async def version_info(self, request: Request) -> Response:
        name, num = request.path_params["name"], request.path_params["version"]
        version = await self._db(lambda: self.db.version(name, num))
        if version is None:
            raise not_found(f"crate `{name}` does not have a version `{num}`")
        return JSONResponse({"version": version_detail(version)})

    async def download(self, request: Request) -> Response:
        name, num = request.path_params["name"], request.path_params["version"]
        version = await self._db(lambda: self.db.version(name, num))
        if version is None:
            raise not_found(f"crate `{name}` does not have a version `{num}`")
        if self.storage.downloads == "redirect":
            url = await self._db(lambda: self.files.download_url(version.crate_name, version.num))
            if url is not None:
                self.metrics.downloads.inc()
                return RedirectResponse(url, 302)
        stored = await self._db(lambda: self.files.get(version.crate_name, version.num))
        if stored is None:
            log.error(
                "a published .crate file is missing",
                extra={"fields": {"crate": version.crate_name, "version": version.num}},
            )
            raise RegistryRefused("The .crate file is missing from the registry", 500)
        self.metrics.downloads.inc()
        return StreamingResponse(
            stored.chunks,  # sync: read in worker threads
            media_type="application/gzip",
            headers={
                "Content-Length": str(stored.size),
                "Content-Disposition": f'attachment; filename="{version.crate_name}-'
                f'{version.num}.crate"',
            },
        )

    async def yank(self, request: Request) -> Response:
        return await self._set_yanked(request, True)

    async def unyank(self, request: Request) -> Response:
        return await self._set_yanked(request, False)

    async def _set_yanked(self, request: Request, yanked: bool) -> Response:
        name, num = request.path_params["name"], request.path_params["version"]
        actor = await self.actor(request)
        await self._db(lambda: changes.set_yanked(self.db, actor, name, num, yanked))
        self.metrics.yanks.inc("yank" if yanked else "unyank")
        return JSONResponse({"ok": True})


def _not_modified(request: Request, etag: str, last_modified: int) -> bool:
    if_none_match = request.headers.get("if-none-match")
    if if_none_match is not None:
        # RFC 9110: with If-None-Match present, If-Modified-Since is ignored.
        tags = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
        return "*" in tags or etag in tags
    if_modified_since = request.headers.get("if-modified-since")
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
    storage: StorageSettings | None = None,
) -> Starlette:
    """The registry on its own. trustpub tokens are validated by ``authority``, or by
    the introspection endpoint of the trustpub service at ``trustpub_url`` using
    ``credential``; with neither, only registry API tokens are accepted."""
    if authority is None and trustpub_url is not None and not credential:
        raise ValueError("a trustpub URL needs an introspection credential")
    registry = Registry(directory, public_url, limits=limits, storage=storage)

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
            yield

    app = Starlette(
        routes=registry.routes,
        middleware=[Middleware(ErrorBoundary)],
        exception_handlers=exception_handlers(),
        lifespan=lifespan,
    )
    app.state.registry = registry
    return app
