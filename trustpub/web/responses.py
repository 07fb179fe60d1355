"""JSON responses from one shared encoder, and the error body every endpoint uses.

Every text reaches the wire: a lone surrogate (``\\ud800``, which JSON bodies and JWT
claims can carry) has no UTF-8 form, so it is written as its JSON escape instead of
failing the response. Other text is byte-for-byte what Starlette's ``JSONResponse``
writes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.responses import JSONResponse as _StarletteJSONResponse

from trustpub.jsoncodec import response_body

NO_STORE: Mapping[str, str] = {"Cache-Control": "no-store"}


def render_json(content: Any) -> bytes:
    """Compact JSON in UTF-8 (``trustpub.jsoncodec.response_body``): a lone surrogate
    inside a string becomes its ``\\uXXXX`` escape, the JSON for that very string."""
    return response_body(content)


class JSONResponse(_StarletteJSONResponse):
    """Starlette's ``JSONResponse``, rendered by ``render_json``."""

    def render(self, content: Any) -> bytes:
        return render_json(content)


def error_response(
    status: int, detail: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """crates.io's error shape, ``{"errors": [{"detail": ...}]}``; never cacheable."""
    return JSONResponse(
        {"errors": [{"detail": detail}]},
        status_code=status,
        headers={**(headers or {}), **NO_STORE},
    )
