"""The credential a request carries in ``Authorization``, parsed one way everywhere.

``Bearer <credential>`` (the scheme in any case, as HTTP says) or, where the caller
allows it, the bare header value: cargo sends a registry token without a scheme.
"""

from __future__ import annotations

from starlette.requests import Request


def bearer_credential(request: Request, *, bare: bool = True) -> str | None:
    """The credential, ``None`` when there is no ``Authorization`` header (or, with
    ``bare=False``, when it is not a ``Bearer`` credential). An empty header is ``""``:
    present, and no credential a caller accepts."""
    header = request.headers.get("authorization")
    if header is None:
        return None
    value = header.strip()
    scheme, space, rest = value.partition(" ")
    if space and scheme.lower() == "bearer":
        return rest.strip()
    if bare:
        return value
    return None
