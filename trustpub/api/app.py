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
from starlette.routing import BaseRoute, Route

from trustpub.api import health, introspect, tokens
from trustpub.api.access import AccessLog
from trustpub.api.errors import EXCEPTION_HANDLERS
from trustpub.api.state import Services
from trustpub.config import Settings
from trustpub.errors import StoreUnavailable
from trustpub.exchange import Exchanger
from trustpub.metrics import Gauge, Registry
from trustpub.oidc.keys import KeySets
from trustpub.oidc.verify import Verifier
from trustpub.policies import load_policies
from trustpub.policies.live import LivePolicies, policy_snapshot
from trustpub.registry import LocalAuthority
from trustpub.registry import Registry as CargoRegistry
from trustpub.store import open_store
from trustpub.store.base import Store
from trustpub.tokens.service import TokenService

log = logging.getLogger("trustpub.api")

ROUTES: list[BaseRoute] = [
    Route("/api/v1/trusted_publishing/tokens", tokens.exchange, methods=["POST"]),
    Route("/api/v1/trusted_publishing/tokens", tokens.revoke, methods=["DELETE"]),
    Route("/api/v1/trusted_publishing/introspect", introspect.introspect, methods=["POST"]),
    Route("/healthz", health.healthz, methods=["GET"]),
    Route("/readyz", health.readyz, methods=["GET"]),
    Route("/metrics", health.metrics, methods=["GET"]),
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
    cargo_registry: CargoRegistry | None = None
    if settings.registry_enabled:
        cargo_registry = CargoRegistry(settings.data_dir / "registry", settings.public_url)
        routes += cargo_registry.routes

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Services]]:
        async with contextlib.AsyncExitStack() as stack:
            services = await _build_services(settings, stack, http_client, store)
            if cargo_registry is not None:
                # In-process: trustpub tokens are checked against our own store.
                authority = LocalAuthority(services.tokens)
                await stack.enter_async_context(cargo_registry.open(authority))
            # Also on app.state, for operators' tooling and tests; handlers use the
            # lifespan state through trustpub.api.state.services().
            app.state.services = services
            async with anyio.create_task_group() as tasks:
                if settings.policy_reload_interval > 0:
                    tasks.start_soon(services.policies.watch, settings.policy_reload_interval)
                _on_sighup(services.policies.reload)
                yield {"services": services}
                tasks.cancel_scope.cancel()

    return Starlette(
        routes=routes,
        middleware=[
            Middleware(
                AccessLog,
                trusted_proxies=settings.trusted_proxies,
                forwarded_header=settings.forwarded_header,
            )
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )


async def _build_services(
    settings: Settings,
    stack: contextlib.AsyncExitStack,
    http_client: httpx.AsyncClient | None,
    store: Store | None,
) -> Services:
    metrics = Registry()
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
    )
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
        on_reload=lambda result: metrics.policy_reloads.inc(result),
        snapshot=policy_snapshot(settings),
    )
    token_service = TokenService(store)
    verifier = Verifier(settings.issuers, settings.audience, keys, leeway=settings.jwt_leeway)
    exchanger = Exchanger(
        verifier,
        policies,
        store,
        token_service,
        metrics,
        max_ttl=settings.max_token_ttl,
        leeway=settings.jwt_leeway,
    )
    metrics.add_gauge(
        Gauge(
            "trustpub_policies",
            "Policies in the live set.",
            lambda: [((), float(len(policies.current)))],
        )
    )
    metrics.add_gauge(
        Gauge(
            "trustpub_key_fetches_total",
            "Key set fetches by issuer and result.",
            lambda: [((i, r), float(n)) for (i, r), n in sorted(keys.fetch_outcomes.items())],
            labels=("issuer", "result"),
            kind="counter",
        )
    )
    return Services(settings, store, keys, policies, token_service, exchanger, metrics)


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
