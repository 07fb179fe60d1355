"""JSON responses from one shared encoder, and the error body every endpoint uses.

Every text reaches the wire: a lone surrogate (``\\ud800``, which JSON bodies and JWT
claims can carry) has no UTF-8 form, so it is written as its JSON escape instead of
failing the response. Other text is byte-for-byte what Starlette's ``JSONResponse``
writes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from starlette.responses import JSONResponse as _StarletteJSONResponse

# Starlette's JSONResponse settings, built once: json.dumps with options constructs a
# new encoder on every call, and these responses are rendered on every request.
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))

NO_STORE: Mapping[str, str] = {"Cache-Control": "no-store"}


def render_json(content: Any) -> bytes:
    """Compact JSON in UTF-8. Outside strings the encoder writes only ASCII, so the one
    character UTF-8 cannot encode, a lone surrogate inside a string, becomes its
    ``\\uXXXX`` escape: the JSON for that very string."""
    return _ENCODER.encode(content).encode("utf-8", "backslashreplace")


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
