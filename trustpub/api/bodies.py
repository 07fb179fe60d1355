"""Reading request bodies: size-limited, JSON only, with clear errors."""

from __future__ import annotations

import json

from starlette.exceptions import HTTPException
from starlette.requests import Request

JSON_LIMIT = 64 * 1024


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise HTTPException(400, "Invalid Content-Length header")
        if int(declared) > limit:
            raise HTTPException(413, f"Request body too large (limit {limit} bytes)")
        # The server frames the body by Content-Length, so it is at most `limit` bytes:
        # read it whole. The length is checked again all the same.
        whole = await request.body()
        if len(whole) > limit:
            raise HTTPException(413, f"Request body too large (limit {limit} bytes)")
        return whole
    # No length given (chunked): refuse as soon as the chunks pass the limit.
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HTTPException(413, f"Request body too large (limit {limit} bytes)")
    return bytes(body)


async def read_json_object(request: Request, limit: int = JSON_LIMIT) -> dict[str, object]:
    """A JSON object body. A missing Content-Type is accepted; any other type is 415."""
    content_type = request.headers.get("content-type")
    if content_type is not None and not _is_json(content_type):
        raise HTTPException(415, "Expected request with `Content-Type: application/json`")
    body = await read_body(request, limit)
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise HTTPException(400, "Failed to parse the request body as JSON") from None
    if not isinstance(data, dict):
        raise HTTPException(422, "Expected a JSON object")
    return data


def string_field(data: dict[str, object], name: str) -> str:
    """A required string field of a JSON object body (422 otherwise)."""
    value = data.get(name)
    if value is None:
        raise HTTPException(422, f"Missing field `{name}`")
    if not isinstance(value, str):
        raise HTTPException(422, f"Field `{name}` must be a string")
    return value
