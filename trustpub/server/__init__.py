"""How ``trustpub serve`` runs: the process model and the connection limits.

- ``supervisor``: bind, announce, start N workers and keep them running; SIGHUP reloads
  policies in place, SIGTERM stops within a deadline.
- ``worker``: the application under uvicorn, with a bound on concurrent requests.
- ``protocol``: uvicorn's HTTP/1.1 protocol with head, body and connection limits.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from trustpub.config import Settings

__all__ = ["serve"]


def serve(settings: Settings, workers: int, announce: str) -> int:
    """Bind, announce, serve until stopped; the exit status (``supervisor.serve``).

    Imported on call: workers run as ``python -m trustpub.server.worker``, and a package
    that imported its worker module first would make that run a second copy of it.
    """
    from trustpub.server.supervisor import serve as run

    return run(settings, workers, announce)
