"""The Starlette application: routes, error mapping, and the lifespan that builds the
services (HTTP client, key sets, store, policies, token service) once."""

from __future__ import annotations

import contextlib
import logging
import signal
from collections.abc import AsyncIterator

import anyio
import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.routing import BaseRoute, Route

from trustpub.api import health, introspect, tokens
from trustpub.api.access import AccessLog
from trustpub.api.state import Services, services
from trustpub.config import Settings
from trustpub.errors import StoreUnavailable
from trustpub.exchange import Exchanger
from trustpub.metrics import MetricsRegistry
from trustpub.oidc import KeySets, Verifier
from trustpub.policies import LivePolicies, load_policies
from trustpub.policies.live import policy_snapshot
from trustpub.ratelimit import limiter_for
from trustpub.registry import LocalAuthority
from trustpub.registry import Registry as CargoRegistry
from trustpub.store import Store, open_store
from trustpub.tokens import TokenService
from trustpub.web import ErrorBoundary, exception_handlers, paths

log = logging.getLogger("trustpub.api")

ROUTES: list[BaseRoute] = [
    Route(paths.TOKENS, tokens.exchange_jwt, methods=["POST"]),
    Route(paths.TOKENS, tokens.revoke_token, methods=["DELETE"]),
    Route(paths.INTROSPECT, introspect.introspect, methods=["POST"]),
    Route(paths.HEALTHZ, health.healthz, methods=["GET"]),
    Route(paths.READYZ, health.readyz, methods=["GET"]),
    Route(paths.METRICS, health.metrics, methods=["GET"]),
    Route(paths.STATUS, health.status, methods=["GET"]),
]


def create_app(
    settings: Settings,
    *,
    http_client: httpx.AsyncClient | None = None,
    store: Store | None = None,
) -> Starlette:
    """The service. ``http_client`` and ``store`` replace the ones built from settings
    (tests pass an ``httpx.MockTransport`` client or a store of their own)."""

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
            storage=settings.registry_storage,
        )
        routes += cargo_registry.routes

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, object]]:
        async with contextlib.AsyncExitStack() as stack:
            services = await _build_services(settings, stack, http_client, store, metrics)
            # Readiness checks: the registry's own probe joins this list.
            readiness = health.default_checks(services)
            if cargo_registry is not None:
                # In-process: trustpub tokens are checked against our own store.
                authority = LocalAuthority(services.tokens)
                cargo_registry.rate_limiter = services.limiter
                await stack.enter_async_context(cargo_registry.open(authority))
                readiness.append(health.ReadinessCheck("registry", cargo_registry.writable))
            # Also on app.state, for operators' tooling and tests; handlers use the
            # lifespan state through trustpub.api.state.services().
            app.state.services = services
            async with anyio.create_task_group() as tasks:
                if settings.policy_reload_interval > 0:
                    tasks.start_soon(services.policies.watch, settings.policy_reload_interval)
                tasks.start_soon(metrics.sample_process_forever)
                _on_sighup(services.policies.reload)
                for issuer in settings.issuers:
                    services.keys.ready(issuer)  # fetch the key sets in the background
                yield {"services": services, "readiness": readiness}
                tasks.cancel_scope.cancel()

    app = Starlette(
        routes=routes,
        # The access log sees the answer the error boundary gives.
        middleware=[
            Middleware(
                AccessLog,
                trusted_proxies=settings.trusted_proxies,
                forwarded_header=settings.forwarded_header,
            ),
            Middleware(ErrorBoundary, on_unexpected=metrics.unexpected_errors.inc),
        ],
        exception_handlers=exception_handlers({StoreUnavailable: _count_store_outage}),
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
        snapshot=policy_snapshot(settings),
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
