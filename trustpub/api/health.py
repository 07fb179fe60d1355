"""Liveness, readiness, the operators' status page, and metrics.

``/readyz`` answers one question for a load balancer: can this process serve correctly
now? It runs the readiness checks concurrently and says which failed, by name only
(``store``, ``keys``, ``policies``, ...): never a file name, an issuer or a problem.

- ``store``: the token store accepts a write (and keeps it across restarts);
- ``keys``: every issuer has a usable key set, stale included, read from the cache (a
  missing one gets a background fetch; nothing here waits on an issuer);
- ``policies``: a policy set is in force. A broken policy file does not count: the last
  good set serves, so the process stays ready; ``/metrics`` and ``/status`` report it.

The checks are a list in the lifespan state under ``"readiness"`` (see
``default_checks``): another check, such as the registry's writability probe, is one
more ``ReadinessCheck`` appended there.

``/status`` is for operators (JSON: issuers and key ages, policy files and problems,
stores, build), behind the introspection credentials: whoever may introspect tokens
runs the registry and may see how the service is doing.
"""

from __future__ import annotations

import logging
import os
import platform
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from trustpub.api.introspect import require_credential
from trustpub.api.state import Services, services
from trustpub.errors import ConfigurationError, StoreUnavailable
from trustpub.metrics import CONTENT_TYPE
from trustpub.policies.live import directory_signature

log = logging.getLogger("trustpub.api")

NO_STORE = {"Cache-Control": "no-store"}
STORE_CHECK_TIMEOUT = 2.0


@dataclass(frozen=True, slots=True)
class ReadinessCheck:
    """One readiness check: ``check()`` answers True when that part can serve."""

    name: str
    check: Callable[[], Awaitable[bool]]


def default_checks(svc: Services) -> list[ReadinessCheck]:
    """The service's own readiness checks: store, keys, policies."""

    async def store() -> bool:
        return (await _store_problem(svc)) is None

    async def keys() -> bool:
        # Every issuer is asked (no short cut), so each missing set gets its fetch.
        ready = [svc.keys.ready(issuer) for issuer in svc.settings.issuers]
        return all(ready)

    async def policies() -> bool:
        return getattr(svc.policies, "current", None) is not None

    return [
        ReadinessCheck("store", store),
        ReadinessCheck("keys", keys),
        ReadinessCheck("policies", policies),
    ]


async def _store_problem(svc: Services) -> str | None:
    try:
        with anyio.fail_after(STORE_CHECK_TIMEOUT):
            await svc.store.ping()
    except (StoreUnavailable, ConfigurationError) as exc:
        return exc.detail
    except TimeoutError:
        return "timed out"
    return None


def readiness_checks(request: Request) -> list[ReadinessCheck]:
    checks: list[ReadinessCheck] | None = request.scope["state"].get("readiness")
    return checks if checks is not None else default_checks(services(request))


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    results: dict[str, bool] = {}

    async def run(check: ReadinessCheck) -> None:
        try:
            results[check.name] = await check.check()
        except Exception:  # a failing check means "not ready", never a 500
            log.exception("readiness check %s failed", check.name)
            results[check.name] = False

    async with anyio.create_task_group() as tasks:
        for check in readiness_checks(request):
            tasks.start_soon(run, check)
    ready = all(results.values())
    body = {
        "status": "ready" if ready else "not ready",
        "checks": {name: "ok" if ok else "failed" for name, ok in sorted(results.items())},
    }
    return JSONResponse(body, status_code=200 if ready else 503, headers=NO_STORE)


async def status(request: Request) -> Response:
    """``GET /status``: how this process is doing, for operators."""
    svc = services(request)
    require_credential(
        request,
        svc.settings.introspection_credentials,
        disabled="The status page is disabled: no credentials are configured",
        invalid="Invalid credential",
    )
    store_problem = await _store_problem(svc)
    issuers: list[dict[str, Any]] = []
    for issuer in svc.settings.issuers:
        key_set = svc.keys.status(issuer)
        issuers.append(
            {
                "issuer": key_set.issuer,
                "loaded": key_set.loaded,
                "keys": key_set.key_count,
                "age_seconds": None if key_set.age is None else round(key_set.age, 3),
                "refreshing": key_set.refreshing,
                "failed_fetches": key_set.failures,
                "last_error": key_set.last_error,
            }
        )
    policies = svc.policies
    error = policies.last_error
    body = {
        "issuers": issuers,
        "policies": {
            "directory": str(policies.directory),
            "files": [name for name, _, _ in directory_signature(policies.directory)],
            "loaded": len(policies.current),
            "last_reload_failed": error is not None,
            "problems": [] if error is None else _problem_lines(error),
        },
        "stores": {
            "tokens": {
                "backend": type(svc.store).__name__,
                "location": getattr(svc.store, "location", None),
                "ok": store_problem is None,
                "problem": store_problem,
            }
        },
        "build": {
            "version": _version(),
            "python": platform.python_version(),
            "pid": os.getpid(),
            "multiprocess_metrics": svc.metrics.multiprocess,
        },
    }
    return JSONResponse(body, headers=NO_STORE)


def _problem_lines(error: str) -> list[str]:
    lines = [line.strip() for line in error.splitlines()]
    # PolicyLoadError's detail: a count line, then one problem per line.
    problems = [line for line in lines[1:] if line]
    return problems or [error]


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("trustpub")
    except PackageNotFoundError:
        return "unknown"


async def metrics(request: Request) -> Response:
    return PlainTextResponse(services(request).metrics.render(), media_type=CONTENT_TYPE)
