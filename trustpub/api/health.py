"""Liveness, readiness and metrics."""

from __future__ import annotations

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from trustpub.api.state import services
from trustpub.errors import StoreUnavailable, TrustpubError


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    """Ready when the store answers, policies are loaded, and every issuer's keys are
    warm or fetchable. The body says what is wrong, never a secret."""
    svc = services(request)
    problems: list[str] = []
    try:
        with anyio.fail_after(5):
            await svc.store.ping()
        store = "ok"
    except (StoreUnavailable, TimeoutError) as exc:
        store = getattr(exc, "detail", "timed out")
        problems.append(f"store: {store}")
    registry = getattr(request.app.state, "cargo_registry", None)
    if registry is not None:
        try:
            await registry.check_writable()
        except TrustpubError as exc:
            problems.append(f"registry: {exc.detail}")
    if svc.policies.last_error is not None:
        problems.append(f"policies: last reload failed: {svc.policies.last_error}")
    issuers: dict[str, str] = {}
    for issuer in svc.settings.issuers:
        ok = await svc.keys.warm(issuer)
        issuers[issuer.url] = "ok" if ok else "unavailable"
        if not ok:
            problems.append(f"keys: no usable key set for {issuer.url}")
    body = {
        "status": "ready" if not problems else "not ready",
        "store": store,
        "policies": {"loaded": len(svc.policies.current), "error": svc.policies.last_error},
        "issuers": issuers,
        "problems": problems,
    }
    return JSONResponse(body, status_code=200 if not problems else 503)


async def metrics(request: Request) -> Response:
    return PlainTextResponse(
        services(request).metrics.render(), media_type="text/plain; version=0.0.4"
    )
