"""The shared mechanisms one by one: JSON parsing, rendering, query integers, bearer
credentials, and the error boundary."""

from __future__ import annotations

import json
import logging

import pytest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.testclient import TestClient
from starlette.types import Message, Receive, Scope, Send

from trustpub.errors import StoreUnavailable
from trustpub.web import (
    CLIENT_CLOSED_REQUEST,
    MAX_JSON_DEPTH,
    ErrorBoundary,
    JSONResponse,
    bearer_credential,
    error_response,
    exception_handlers,
    parse_json,
    query_int,
    read_body,
    render_json,
)

# -- JSON in ---------------------------------------------------------------------------


def test_json_nested_to_the_limit_is_parsed() -> None:
    doc = b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH
    assert parse_json(doc) is not None


@pytest.mark.parametrize(
    "doc",
    [
        b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1),
        b'{"a":' * 1000 + b"1" + b"}" * 1000,
        # Unclosed: refused by depth before the parser can recurse.
        b"[" * 100_000,
    ],
)
def test_json_nested_too_deeply_is_a_bad_request(doc: bytes) -> None:
    with pytest.raises(HTTPException) as refused:
        parse_json(doc)
    assert refused.value.status_code == 400
    assert "nested too deeply" in refused.value.detail


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    text = "[" * 500 + '\\"{'
    assert parse_json(json.dumps({"s": text}).encode()) == {"s": text}


@pytest.mark.parametrize(
    "doc",
    [b'{"jwt": "\\ud800"}', b'["\\udfff"]', b'{"\\uDBFF": 1}', b'["a\\ud800b"]'],
)
def test_a_lone_surrogate_is_a_bad_request(doc: bytes) -> None:
    with pytest.raises(HTTPException) as refused:
        parse_json(doc)
    assert refused.value.status_code == 400
    assert "surrogate" in refused.value.detail


@pytest.mark.parametrize(
    "doc",
    [
        b'["\\ud83d\\ude00"]',  # a pair: one character, U+1F600
        b'["\\\\ud800"]',  # an escaped backslash, then text
        b'["\xf0\x9f\x98\x80"]',
        b'\xef\xbb\xbf["with a byte order mark"]',
    ],
)
def test_paired_surrogates_and_lookalikes_are_accepted(doc: bytes) -> None:
    value = parse_json(doc)
    assert isinstance(value, list)
    assert str(value[0]).encode("utf-8")


@pytest.mark.parametrize(
    "doc",
    [b"\xed\xa0\x80", b'"\xff"', b"1" * 5000, b"{", b"", b"NaN-ish"],
)
def test_undecodable_or_unparsable_bodies_are_bad_requests(doc: bytes) -> None:
    with pytest.raises(HTTPException) as refused:
        parse_json(doc)
    assert refused.value.status_code == 400


# -- JSON out --------------------------------------------------------------------------


def test_a_lone_surrogate_is_rendered_as_its_json_escape() -> None:
    body = render_json({"errors": [{"detail": "repository `octo/\ud800`"}]})
    assert body == b'{"errors":[{"detail":"repository `octo/\\ud800`"}]}'
    assert json.loads(body)["errors"][0]["detail"] == "repository `octo/\ud800`"


def test_escaped_backslashes_before_a_surrogate_keep_their_meaning() -> None:
    text = "\\\ud800\\"
    assert json.loads(render_json([text])) == [text]


def test_error_responses_have_crates_io_shape_and_are_never_cached() -> None:
    response = error_response(404, "no crate `x`", {"Cache-Control": "public", "X-A": "1"})
    assert json.loads(bytes(response.body)) == {"errors": [{"detail": "no crate `x`"}]}
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-a"] == "1"


# -- query integers, bearer credentials ------------------------------------------------


def _request(query: bytes = b"", authorization: bytes | None = None) -> Request:
    headers = [] if authorization is None else [(b"authorization", authorization)]
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/",
        "query_string": query,
        "headers": headers,
    }
    return Request(scope)


@pytest.mark.parametrize(
    ("query", "expected"), [(b"", 10), (b"n=1", 1), (b"n=100", 100), (b"n=007", 7)]
)
def test_query_int_reads_ascii_digits_in_range(query: bytes, expected: int) -> None:
    assert query_int(_request(query), "n", 10, 1, 100) == expected


@pytest.mark.parametrize(
    "value",
    ["%C2%B2", "%D9%A3", "0", "101", "-1", "+5", "1.0", "", " 5", "9" * 5000, "%EF%BC%95"],
)
def test_query_int_refuses_anything_else_with_a_400(value: str) -> None:
    with pytest.raises(HTTPException) as refused:
        query_int(_request(f"n={value}".encode()), "n", 10, 1, 100)
    assert refused.value.status_code == 400
    assert refused.value.detail == "`n` must be an integer from 1 to 100"


@pytest.mark.parametrize(
    ("header", "bare", "expected"),
    [
        (None, True, None),
        (b"Bearer abc", True, "abc"),
        (b"bEaReR   abc  ", True, "abc"),
        (b"  tpreg_abc ", True, "tpreg_abc"),
        (b"", True, ""),
        (b"Bearer", True, "Bearer"),
        (b"Basic abc", False, None),
        (b"abc", False, None),
        (b"bearer abc", False, "abc"),
        (b"bearer", False, None),
    ],
)
def test_bearer_credential(header: bytes | None, bare: bool, expected: str | None) -> None:
    assert bearer_credential(_request(authorization=header), bare=bare) == expected


# -- the error boundary ----------------------------------------------------------------


def _app(endpoint: object, counted: list[int]) -> Starlette:
    async def route(request: Request) -> Response:
        return await endpoint(request)  # type: ignore[operator, no-any-return]

    return Starlette(
        routes=[Route("/", route, methods=["GET", "POST"])],
        middleware=[Middleware(ErrorBoundary, on_unexpected=lambda: counted.append(1))],
        exception_handlers=exception_handlers(
            {StoreUnavailable: lambda request: counted.append(503)}
        ),
    )


def test_an_unexpected_error_is_a_json_500_counted_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken(request: Request) -> Response:
        raise RuntimeError("secret internals")

    counted: list[int] = []
    with caplog.at_level(logging.DEBUG), TestClient(_app(broken, counted)) as client:
        response = client.get("/")
    assert response.status_code == 500
    assert response.json() == {"errors": [{"detail": "Internal server error"}]}
    assert "secret internals" not in response.text
    assert "Traceback" not in response.text
    assert counted == [1]
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert errors[0].exc_info is not None


def test_refusals_are_mapped_and_observed_not_counted_as_bugs() -> None:
    async def refused(request: Request) -> Response:
        if request.method == "GET":
            raise StoreUnavailable("Token store unavailable")
        raise HTTPException(405, "no", headers={"Allow": "GET"})

    counted: list[int] = []
    with TestClient(_app(refused, counted)) as client:
        outage = client.get("/")
        wrong = client.post("/")
    assert outage.status_code == 503
    assert outage.json() == {"errors": [{"detail": "Token store unavailable"}]}
    assert wrong.status_code == 405
    assert wrong.headers["allow"] == "GET"
    assert counted == [503]


def test_a_response_with_an_unencodable_text_still_renders() -> None:
    async def quoting(request: Request) -> Response:
        return JSONResponse({"name": "\ud800"})

    with TestClient(_app(quoting, [])) as client:
        response = client.get("/")
    assert response.status_code == 200
    assert response.json() == {"name": "\ud800"}


@pytest.mark.anyio
async def test_an_error_after_the_answer_started_is_logged_and_counted_but_not_answered(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def half_answer(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise RuntimeError("failed mid-answer")

    counted: list[int] = []
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    boundary = ErrorBoundary(half_answer, on_unexpected=lambda: counted.append(1))
    scope: Scope = {"type": "http", "method": "GET", "path": "/", "headers": []}
    with caplog.at_level(logging.ERROR):
        await boundary(scope, receive, send)
    assert [m["type"] for m in sent] == ["http.response.start"]
    assert counted == [1]
    assert [r.getMessage() for r in caplog.records] == ["unhandled error"]


@pytest.mark.anyio
async def test_a_client_leaving_mid_body_gets_no_500_and_no_error_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def reads_body(scope: Scope, receive: Receive, send: Send) -> None:
        await read_body(Request(scope, receive), 1024)

    counted: list[int] = []
    sent: list[Message] = []
    messages: list[Message] = [
        {"type": "http.request", "body": b"{", "more_body": True},
        {"type": "http.disconnect"},
    ]

    async def receive() -> Message:
        return messages.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    boundary = ErrorBoundary(reads_body, on_unexpected=lambda: counted.append(1))
    scope: Scope = {"type": "http", "method": "POST", "path": "/", "headers": []}
    with caplog.at_level(logging.DEBUG, logger="trustpub"):
        await boundary(scope, receive, send)
    assert counted == []
    assert sent[0]["status"] == CLIENT_CLOSED_REQUEST
    aborts = [r for r in caplog.records if r.name == "trustpub.web"]
    assert [(r.levelno, r.getMessage()) for r in aborts] == [
        (logging.INFO, "client aborted the request")
    ]


@pytest.mark.parametrize("status", [200, 201, 401, 422, 429, 503])
def test_no_store_json_headers_are_the_ones_starlette_would_send(status: int) -> None:
    from starlette.responses import JSONResponse as StarletteJSON
    from starlette.responses import Response as StarletteResponse

    from trustpub.web import NO_STORE, RenderedJSONResponse

    content = {"token": "x", "crates": {"a": ["publish"]}}
    ours = JSONResponse(content, status_code=status, headers=NO_STORE)
    theirs = StarletteJSON(content, status_code=status, headers=dict(NO_STORE))
    assert ours.raw_headers == theirs.raw_headers
    rendered = RenderedJSONResponse(ours.body, status_code=status, headers=NO_STORE)
    plain = StarletteResponse(
        ours.body, status_code=status, headers=dict(NO_STORE), media_type="application/json"
    )
    assert rendered.raw_headers == plain.raw_headers
    # Any other header set takes Starlette's own path.
    other = JSONResponse(content, status_code=status, headers={"Retry-After": "1", **NO_STORE})
    assert (b"retry-after", b"1") in other.raw_headers


def test_no_store_json_headers_for_a_bodiless_status_are_starlette_s() -> None:
    from starlette.responses import Response as StarletteResponse

    from trustpub.web import NO_STORE, RenderedJSONResponse

    for status in (204, 304):
        rendered = RenderedJSONResponse(b"", status_code=status, headers=NO_STORE)
        plain = StarletteResponse(
            b"", status_code=status, headers=dict(NO_STORE), media_type="application/json"
        )
        assert rendered.raw_headers == plain.raw_headers


def test_a_bounded_application_leaves_starlette_s_outer_error_layer_out() -> None:
    from starlette.middleware.errors import ServerErrorMiddleware

    from trustpub.web import BoundedApplication

    async def boom(request: Request) -> Response:
        raise RuntimeError("a bug")

    routes = [Route("/boom", boom)]
    bounded = BoundedApplication(routes=routes, middleware=[Middleware(ErrorBoundary)])
    plain = BoundedApplication(routes=routes)
    client = TestClient(bounded, raise_server_exceptions=False)
    response = client.get("/boom")  # built on the first request
    assert response.status_code == 500
    assert response.json() == {"errors": [{"detail": "Internal server error"}]}
    assert isinstance(bounded.middleware_stack, ErrorBoundary)
    TestClient(plain, raise_server_exceptions=False).get("/boom")
    assert isinstance(plain.middleware_stack, ServerErrorMiddleware)
