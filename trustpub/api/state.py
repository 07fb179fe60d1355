"""The services a running application holds, built once in its lifespan."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from starlette.requests import Request

from trustpub.config import Settings
from trustpub.exchange import Exchanger
from trustpub.metrics import MetricsRegistry
from trustpub.oidc import KeySets
from trustpub.policies import LivePolicies
from trustpub.ratelimit import RateLimiter
from trustpub.store import Store
from trustpub.tokens import TokenService


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    store: Store
    keys: KeySets
    policies: LivePolicies
    tokens: TokenService
    exchanger: Exchanger
    metrics: MetricsRegistry
    limiter: RateLimiter


def services(request: Request) -> Services:
    """The typed way to reach the services from a request (``request.state`` is untyped).

    Read from the request's copy of the lifespan state, ``scope["state"]``, which is
    what ``request.state`` wraps, without building that wrapper on every request.
    """
    return cast(Services, request.scope["state"]["services"])
