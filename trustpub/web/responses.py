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
from starlette.responses import Response

from trustpub.jsoncodec import response_body

NO_STORE: Mapping[str, str] = {"Cache-Control": "no-store"}


def render_json(content: Any) -> bytes:
    """Compact JSON in UTF-8 (``trustpub.jsoncodec.response_body``): a lone surrogate
    inside a string becomes its ``\\uXXXX`` escape, the JSON for that very string."""
    return response_body(content)


_NO_STORE_RAW = (b"cache-control", b"no-store")
_JSON_TYPE_RAW = (b"content-type", b"application/json")


def _no_store_json_headers(response: Response, headers: Mapping[str, str] | None) -> bool:
    """Set the headers Starlette's ``init_headers`` would give a JSON response with
    ``NO_STORE``, the set every exchange and introspection answer carries, without
    encoding them again (a few us of each such response); False for any other set."""
    if headers is not NO_STORE or response.status_code < 200 or response.status_code in (204, 304):
        return False
    length = (b"content-length", str(len(response.body)).encode("latin-1"))
    response.raw_headers = [_NO_STORE_RAW, length, _JSON_TYPE_RAW]
    return True


class JSONResponse(_StarletteJSONResponse):
    """Starlette's ``JSONResponse``, rendered by ``render_json``."""

    def render(self, content: Any) -> bytes:
        return render_json(content)

    def init_headers(self, headers: Mapping[str, str] | None = None) -> None:
        if not _no_store_json_headers(self, headers):
            super().init_headers(headers)


class RenderedJSONResponse(Response):
    """A body that is JSON already (an answer kept rendered), as ``application/json``."""

    media_type = "application/json"

    def init_headers(self, headers: Mapping[str, str] | None = None) -> None:
        if not _no_store_json_headers(self, headers):
            super().init_headers(headers)


def error_response(
    status: int, detail: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """crates.io's error shape, ``{"errors": [{"detail": ...}]}``; never cacheable."""
    return JSONResponse(
        {"errors": [{"detail": detail}]},
        status_code=status,
        headers={**(headers or {}), **NO_STORE},
    )
