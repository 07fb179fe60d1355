"""HTTP API: the service's own endpoints (exchange, revocation, introspection, health
and metrics) and the Starlette application that serves them. The HTTP machinery they
share with the registry and the dev issuer is ``trustpub.web``.

Import from ``trustpub.api``; its modules are internals.
"""

from trustpub.api.app import ROUTES, app_from_environment, create_app
from trustpub.api.state import Services, services

__all__ = ["ROUTES", "Services", "app_from_environment", "create_app", "services"]
