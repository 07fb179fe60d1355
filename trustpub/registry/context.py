"""What the endpoint modules kept beside ``Registry`` (``browse``, ``me``) use of it.

They take the registry as this protocol rather than as ``Registry``: ``registry.py``
builds them, so naming its class would tie the two modules in a circle.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar

from starlette.requests import Request

from trustpub.metrics import RegistryMetrics
from trustpub.registry.actors import Actor
from trustpub.registry.db import RegistryDB

T = TypeVar("T")


class RegistryContext(Protocol):
    db: RegistryDB
    metrics: RegistryMetrics

    async def run_db(self, call: Callable[[], T]) -> T:
        """Run a blocking database call off the event loop."""
        ...

    async def actor(self, request: Request) -> Actor:
        """Who sends the request (401 when nobody valid does)."""
        ...

    async def check_read(self, request: Request, crate: str | None = None) -> Actor | None:
        """Refuse a read the registry's access rules do not allow."""
        ...

    async def check_listing(self, request: Request) -> None:
        """``check_read`` for reads across crates."""
        ...
