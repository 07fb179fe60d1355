"""The Starlette application: routes, error mapping, and the lifespan that builds the
services (HTTP client, key sets, store, policies, token service) once."""

from __future__ import annotations

import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Callable

import anyio
import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.routing import BaseRoute, Route

from trustpub.api import health, introspect, secret_scanning, tokens
from trustpub.api.access import AccessLog
from trustpub.api.scanning_keys import ScanningKeys
from trustpub.api.state import Services, services
from trustpub.config import Settings
from trustpub.errors import StoreUnavailable
from trustpub.exchange import Exchanger
from trustpub.metrics import MetricsRegistry
from trustpub.notify import OutboxWorker
from trustpub.oidc import KeySets, Verifier
from trustpub.policies import LivePolicies, load_policies
from trustpub.policies.live import policy_snapshot
from trustpub.ratelimit import limiter_for
from trustpub.registry import LocalAuthority
from trustpub.registry import Registry as CargoRegistry
from trustpub.registry.configs import ConfigsAPI, GitHubLookup, OwnerConfigs
from trustpub.store import Store, open_store
from trustpub.tokens import TokenService
from trustpub.web import (
    BoundedApplication,
    Endpoint,
    ErrorBoundary,
    FastLane,
    exception_handlers,
    paths,
)

log = logging.getLogger("trustpub.api")

ROUTES: list[BaseRoute] = [
    Route(paths.TOKENS, tokens.exchange_jwt, methods=["POST"]),
    Route(paths.TOKENS, tokens.revoke_token, methods=["DELETE"]),
    Route(paths.INTROSPECT, introspect.introspect, methods=["POST"]),
    Route(paths.HEALTHZ, health.healthz, methods=["GET"]),
    Route(paths.READYZ, health.readyz, methods=["GET"]),
    Route(paths.METRICS, health.metrics, methods=["GET"]),
    Route(paths.STATUS, health.status, methods=["GET"]),
    Route(paths.LEAK_REPORTS, secret_scanning.verify, methods=["POST"]),
]
# Called past the router (trustpub.web.FastLane): the routes every exchange and every
# introspection take. Each is in ROUTES too, which answers their other methods.
HOT_ROUTES: dict[tuple[str, str], Endpoint] = {
    ("POST", paths.TOKENS): tokens.exchange_jwt,
    ("DELETE", paths.TOKENS): tokens.revoke_token,
    ("POST", paths.INTROSPECT): introspect.introspect,
}


def create_app(
    settings: Settings,
    *,
    http_client: httpx.AsyncClient | None = None,
    store: Store | None = None,
    on_built: Callable[[], None] | None = None,
) -> Starlette:
    """The service. ``http_client`` and ``store`` replace the ones built from settings
    (tests pass an ``httpx.MockTransport`` client or a store of their own). ``on_built``
    is called once what start-up builds to keep (policies, the owner configs' index) is
    built: the server's worker then keeps it out of the cyclic collector's passes."""

    # Companion Cargo registry (trustpub.registry): its routes join ours, and it is
    # opened in our lifespan, because Starlette does not run a mounted app's lifespan.
    routes = list(ROUTES)
    # Built here, not in the lifespan: the error boundary and the registry count into it.
    metrics = MetricsRegistry()
    cargo_registry: CargoRegistry | None = None
    if settings.registry_enabled:
        cargo_registry = CargoRegistry(
            settings.data_dir / "registry",
            settings.public_url,
            metrics=metrics.registry,
            webhook_rules=settings.notifications.webhooks,
            auth_required=settings.registry_auth_required,
            login_url=settings.registry_login_url,
            invitation_ttl=settings.registry_invitation_ttl,
            require_metadata=settings.registry_require_metadata,
            database=settings.registry_database,
            storage=settings.registry_storage,
            categories=settings.registry_categories,
            webhook_keys=settings.registry_webhook_keys,
        )
        routes += cargo_registry.routes
        # Owner-managed configs (crates.io's API); the GitHub lookup gets its HTTP client
        # in the lifespan.
        github = GitHubLookup(settings.owner_configs)
        configs_api = ConfigsAPI(cargo_registry, settings.issuers, settings.owner_configs, github)
        routes += configs_api.routes

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, object]]:
        async with contextlib.AsyncExitStack() as stack:
            client = http_client
            if client is None:
                # Redirects are not followed: a key set must come from the issuer's own
                # host, and a GitHub account from the configured API.
                client = await stack.enter_async_context(
                    httpx.AsyncClient(follow_redirects=False, trust_env=False)
                )
            services = await _build_services(settings, stack, client, store, metrics)
            # Readiness checks: the registry's own probe joins this list.
            readiness = health.default_checks(services)
            owner_configs: OwnerConfigs | None = None
            if cargo_registry is not None:
                # In-process: trustpub tokens are checked against our own store.
                authority = LocalAuthority(services.tokens)
                cargo_registry.rate_limiter = services.limiter
                await stack.enter_async_context(cargo_registry.open(authority))
                # Its own client: GitHub's API is not an issuer (tests replace the issuers'
                # client, never this one).
                github.client = await stack.enter_async_context(
                    httpx.AsyncClient(follow_redirects=False, trust_env=False)
                )
                owner_configs = OwnerConfigs(cargo_registry.db, settings.issuers)
                stack.callback(owner_configs.close)
                services.exchanger.configs = owner_configs
                readiness.append(health.ReadinessCheck("registry", cargo_registry.writable))
            state: dict[str, object] = {"services": services, "readiness": readiness}
            if settings.secret_scanning.enabled:
                state[secret_scanning.STATE_KEY] = await _leak_reports(
                    settings, stack, services, cargo_registry
                )
            # Also on app.state, for operators' tooling and tests; handlers use the
            # lifespan state through trustpub.api.state.services().
            app.state.services = services
            async with anyio.create_task_group() as tasks:
                if settings.policy_reload_interval > 0:
                    tasks.start_soon(services.policies.watch, settings.policy_reload_interval)
                tasks.start_soon(metrics.sample_process_forever)
                if cargo_registry is not None:
                    # Owners' mail and webhooks, from the registry's outbox: never in
                    # the request that queued them.
                    webhook_client = await stack.enter_async_context(
                        httpx.AsyncClient(follow_redirects=False, trust_env=False)
                    )
                    outbox = OutboxWorker(cargo_registry.db, settings.notifications, webhook_client)
                    tasks.start_soon(outbox.run_forever)
                if owner_configs is not None:
                    # Build the union now rather than on the first exchange.
                    async def warm(configs: OwnerConfigs = owner_configs) -> None:
                        await configs.warm(services.policies.current)
                        if on_built is not None:
                            on_built()

                    tasks.start_soon(warm)
                elif on_built is not None:
                    on_built()
                _on_sighup(services.policies.reload)
                for issuer in settings.issuers:
                    services.keys.ready(issuer)  # fetch the key sets in the background
                yield state
                tasks.cancel_scope.cancel()

    handlers = exception_handlers({StoreUnavailable: _count_store_outage})
    app = BoundedApplication(
        routes=routes,
        # The access log sees the answer the error boundary gives.
        middleware=[
            Middleware(
                AccessLog,
                trusted_proxies=settings.trusted_proxies,
                forwarded_header=settings.forwarded_header,
            ),
            Middleware(ErrorBoundary, on_unexpected=metrics.unexpected_errors.inc),
            # Index files from memory, and the exchange and introspection, past the
            # router (inside the two above).
            Middleware(
                FastLane,
                lanes=cargo_registry.lanes if cargo_registry else [],
                routes=HOT_ROUTES,
                handlers=handlers,
            ),
        ],
        exception_handlers=handlers,
        lifespan=lifespan,
    )
    app.state.cargo_registry = cargo_registry  # for operators' tooling and tests
    return app


async def _build_services(
    settings: Settings,
    stack: contextlib.AsyncExitStack,
    http_client: httpx.AsyncClient | None,
    store: Store | None,
    metrics: MetricsRegistry,
) -> Services:
    if http_client is None:
        # Redirects are not followed: a key set must come from the issuer's own host.
        http_client = await stack.enter_async_context(
            httpx.AsyncClient(follow_redirects=False, trust_env=False)
        )
    keys = KeySets(
        http_client,
        max_age=settings.key_sets.max_age,
        refresh_cooldown=settings.key_sets.refresh_cooldown,
        max_stale=settings.key_sets.max_stale,
        on_fetch=metrics.key_fetches.inc,
    )
    stack.push_async_callback(keys.aclose)
    if store is None:
        store = open_store(settings.store_url)
        stack.push_async_callback(store.aclose)
    try:
        # Creates the embedded database on first start. A store that is down does not
        # stop the service: exchanges answer 503 until it returns, and /readyz says so.
        await store.ping()
    except StoreUnavailable as exc:
        log.warning("store unavailable at start-up", extra={"fields": {"reason": exc.detail}})
    policies = LivePolicies(
        settings.policy_dir,
        lambda: load_policies(settings.policy_dir, settings.issuers),
        on_reload=lambda result: metrics.policies_reloaded(result, len(policies.current)),
        snapshot=policy_snapshot(settings.data_dir, settings.policy_dir, settings.issuers),
    )
    metrics.observe_policies(len(policies.current), policies.last_error is not None)
    token_service = TokenService(store)
    verifier = Verifier(
        settings.issuers,
        settings.audience,
        keys,
        leeway=settings.jwt_leeway,
        max_lifetime=settings.max_jwt_lifetime,
    )
    limiter = limiter_for(store, settings.rate_limits)
    exchanger = Exchanger(
        verifier,
        policies,
        store,
        token_service,
        metrics,
        max_ttl=settings.max_token_ttl,
        leeway=settings.jwt_leeway,
        limiter=limiter,
    )
    return Services(settings, store, keys, policies, token_service, exchanger, metrics, limiter)


async def _leak_reports(
    settings: Settings,
    stack: contextlib.AsyncExitStack,
    services: Services,
    cargo_registry: CargoRegistry | None,
) -> secret_scanning.LeakReports:
    config = settings.secret_scanning
    # A client of its own (not the issuers' one a test may replace): GitHub's key
    # server is another host, fetched rarely; redirects are not followed.
    http = await stack.enter_async_context(
        httpx.AsyncClient(follow_redirects=False, trust_env=False)
    )
    keys = ScanningKeys(
        http,
        config.key_url,
        development=config.development,
        refresh_cooldown=config.refresh_cooldown,
    )
    return secret_scanning.LeakReports(keys, services.tokens, cargo_registry)


def _count_store_outage(request: Request) -> None:
    # The store logged the failure where it happened; here it is only counted.
    services(request).metrics.store_errors.inc()


def _on_sighup(reload: object) -> None:
    """Reload policies on SIGHUP, where this process may install signal handlers."""
    import asyncio

    try:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, reload)  # type: ignore[arg-type]
    except (RuntimeError, NotImplementedError, ValueError):
        # Not the main thread (a test client), or no signals on this platform.
        log.debug("SIGHUP reload not available in this process")


def app_from_environment() -> Starlette:
    """Factory for ``uvicorn --factory`` and worker processes: settings from
    ``$TRUSTPUB_CONFIG`` and ``TRUSTPUB_*`` variables."""
    from trustpub.config import load_settings
    from trustpub.logs import configure

    settings = load_settings()
    configure(settings.log_level)
    return create_app(settings)
