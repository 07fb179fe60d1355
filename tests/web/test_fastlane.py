"""FastLane's routes past the router: the same answers as through it, for every outcome."""

from __future__ import annotations

import logging

import pytest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.testclient import TestClient

from trustpub.errors import StoreUnavailable
from trustpub.web import ErrorBoundary, FastLane, JSONResponse, exception_handlers

PATH = "/hot"
called: list[str] = []


async def hot(request: Request) -> Response:
    called.append("router" if "router" in request.scope else "lane")
    body = await request.body()
    outcome = request.query_params.get("outcome", "ok")
    if outcome == "http":
        raise HTTPException(422, "Missing field `jwt`")
    if outcome == "store":
        raise StoreUnavailable("The token store is unavailable")
    if outcome == "bug":
        raise RuntimeError("a bug")
    return JSONResponse({"echo": body.decode(), "endpoint": request.scope["endpoint"].__name__})


async def other(request: Request) -> Response:
    return Response("other")


def build(past_router: bool, outages: list[str]) -> Starlette:
    handlers = exception_handlers({StoreUnavailable: lambda request: outages.append("outage")})
    routes = {("POST", PATH): hot} if past_router else {}
    return Starlette(
        routes=[Route(PATH, hot, methods=["POST"]), Route("/other", other, methods=["GET"])],
        middleware=[
            Middleware(ErrorBoundary),
            Middleware(FastLane, routes=routes, handlers=handlers),
        ],
        exception_handlers=handlers,
    )


def answers(past_router: bool, method: str, path: str, **kwargs: object) -> tuple[object, ...]:
    outages: list[str] = []
    client = TestClient(build(past_router, outages), raise_server_exceptions=False)
    response = client.request(method, path, **kwargs)  # type: ignore[arg-type]
    headers = {k: v for k, v in response.headers.items() if k != "date"}
    return response.status_code, headers, response.content, outages


@pytest.mark.parametrize(
    ("method", "path", "content"),
    [
        ("POST", PATH, b"hello"),
        ("POST", f"{PATH}?outcome=http", b""),
        ("POST", f"{PATH}?outcome=store", b""),
        ("POST", f"{PATH}?outcome=bug", b""),
        ("GET", PATH, b""),  # the router's 405
        ("PUT", PATH, b""),
        ("POST", f"{PATH}/", b""),  # not the exact path: the router's answer
        ("GET", "/other", b""),
    ],
)
def test_an_endpoint_past_the_router_answers_as_through_it(
    method: str, path: str, content: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="trustpub.web"):
        through = answers(False, method, path, content=content)
        past = answers(True, method, path, content=content)
    assert past == through


def test_the_lane_calls_the_endpoint_and_the_router_does_not() -> None:
    called.clear()
    client = TestClient(build(True, []))
    assert client.post(PATH, content=b"x").json() == {"echo": "x", "endpoint": "hot"}
    assert called == ["lane"]
    called.clear()
    TestClient(build(False, [])).post(PATH, content=b"x")
    assert called == ["router"]


def test_a_mapped_error_is_answered_and_counted_as_through_the_router() -> None:
    outages: list[str] = []
    client = TestClient(build(True, outages))
    response = client.post(f"{PATH}?outcome=store")
    assert response.status_code == 503
    assert response.json() == {"errors": [{"detail": "The token store is unavailable"}]}
    assert outages == ["outage"]


def test_an_unmapped_error_reaches_the_error_boundary(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = TestClient(build(True, []), raise_server_exceptions=False)
    with caplog.at_level(logging.ERROR, logger="trustpub.web"):
        response = client.post(f"{PATH}?outcome=bug")
    assert response.status_code == 500
    assert response.json() == {"errors": [{"detail": "Internal server error"}]}
    assert any(r.getMessage() == "unhandled error" for r in caplog.records)


def test_a_blocking_endpoint_cannot_be_put_past_the_router() -> None:
    def blocking(request: Request) -> Response:
        return Response()

    with pytest.raises(TypeError, match="must be async"):
        FastLane(Starlette(), routes={("GET", "/x"): blocking})  # type: ignore[dict-item]
