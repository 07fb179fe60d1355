"""How ``trustpub serve`` runs: the process model and the connection limits.

- ``supervisor``: bind, announce, start N workers and keep them running; SIGHUP reloads
  policies in place, SIGTERM stops within a deadline.
- ``worker``: the application under uvicorn, with a bound on concurrent requests.
- ``protocol``: uvicorn's HTTP/1.1 protocol with head, body and connection limits.
"""

from trustpub.server.supervisor import serve

__all__ = ["serve"]
