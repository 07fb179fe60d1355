"""Request bodies (size limit with and without Content-Length) and JSON responses."""

from __future__ import annotations

import json

import pytest
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import Message

from trustpub.web import JSONResponse as CompactJSONResponse
from trustpub.web import read_body, read_json_object, rfc3339


def request(chunks: list[bytes], headers: dict[str, str]) -> Request:
    messages: list[Message] = [
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
        for i, chunk in enumerate(chunks)
    ]

    async def receive() -> Message:
        return messages.pop(0)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/",
        "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
    }
    return Request(scope, receive)


@pytest.mark.anyio
async def test_a_body_within_its_declared_length_is_read_whole() -> None:
    body = await read_body(request([b'{"jwt":', b'"x"}'], {"content-length": "11"}), 64)
    assert body == b'{"jwt":"x"}'


@pytest.mark.anyio
async def test_a_declared_length_over_the_limit_is_refused_before_reading() -> None:
    with pytest.raises(HTTPException) as refused:
        await read_body(request([b"x" * 10], {"content-length": "65"}), 64)
    assert refused.value.status_code == 413


@pytest.mark.anyio
async def test_a_body_longer_than_its_declared_length_is_refused() -> None:
    # A server frames by Content-Length; should one not, the length is checked anyway.
    with pytest.raises(HTTPException) as refused:
        await read_body(request([b"x" * 40, b"x" * 40], {"content-length": "10"}), 64)
    assert refused.value.status_code == 400
    assert refused.value.detail == "Request body longer than its Content-Length"


@pytest.mark.anyio
async def test_a_chunked_body_over_the_limit_is_refused() -> None:
    with pytest.raises(HTTPException) as refused:
        await read_body(request([b"x" * 40, b"x" * 40], {}), 64)
    assert refused.value.status_code == 413


@pytest.mark.anyio
async def test_a_chunked_body_within_the_limit_is_read() -> None:
    data = await read_json_object(request([b'{"token":', b' "t"}'], {}))
    assert data == {"token": "t"}


@pytest.mark.parametrize(
    "content",
    [
        {"token": "trustpub_x", "crates": {"octo-lib": ["publish-update", "yank"]}},
        {"errors": [{"detail": "Unsupported JWT issuer: https://é.example/ \u2028"}]},
        {"active": False},
    ],
)
def test_compact_json_responses_have_starlettes_exact_body(content: dict[str, object]) -> None:
    assert CompactJSONResponse(content).body == JSONResponse(content).body


def test_compact_json_responses_refuse_nan_as_starlette_does() -> None:
    with pytest.raises(ValueError, match="JSON"):
        CompactJSONResponse({"x": float("nan")})
    assert json.loads(bytes(CompactJSONResponse({"x": 1}).body)) == {"x": 1}


@pytest.mark.parametrize(
    ("timestamp", "expected"),
    [
        (0, "1970-01-01T00:00:00Z"),
        (1_769_941_559, "2026-02-01T10:25:59Z"),
        (4_102_444_800, "2100-01-01T00:00:00Z"),
    ],
)
def test_rfc3339_is_utc_seconds_with_z(timestamp: int, expected: str) -> None:
    assert rfc3339(timestamp) == expected
