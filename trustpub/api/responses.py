"""JSON responses from one shared encoder."""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import JSONResponse

# Starlette's JSONResponse settings, built once: json.dumps with options constructs a
# new encoder on every call, and these responses are rendered on every request.
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


class CompactJSONResponse(JSONResponse):
    """A ``JSONResponse`` with byte-for-byte the same body."""

    def render(self, content: Any) -> bytes:
        return _ENCODER.encode(content).encode("utf-8")
