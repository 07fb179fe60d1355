"""trustpub.client against fake servers (httpx.MockTransport): what is retried, what is
reported, and how."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from trustpub.client import (
    INTROSPECT_PATH,
    TOKENS_PATH,
    Client,
    IssuedToken,
    Refused,
    Unavailable,
    WrongURL,
    base_url,
    request_actions_token,
)

SERVER = "https://trustpub.example"
TOKEN = "trustpub_secret-token-value"

Handler = Callable[[httpx.Request], httpx.Response]


class Server:
    """Answers each request with the next handler (the last one repeats)."""

    def __init__(self, *handlers: Handler) -> None:
        self.handlers = handlers
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.handlers[min(len(self.requests), len(self.handlers)) - 1](request)


def client(server: Server, sleeps: list[float], notes: list[str] | None = None) -> Client:
    http = httpx.Client(transport=httpx.MockTransport(server))
    notify = notes.append if notes is not None else (lambda message: None)
    return Client(SERVER + "/", http, sleep=sleeps.append, notify=notify)


def answer(status: int, body: object = None) -> Handler:
    return lambda request: httpx.Response(status, json=body)


def refuse_connection(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("[Errno 111] Connection refused", request=request)


def test_revoke_sends_the_token_as_a_bearer_token() -> None:
    server = Server(answer(204))
    client(server, []).revoke(TOKEN)
    (request,) = server.requests
    assert (request.method, str(request.url)) == ("DELETE", SERVER + TOKENS_PATH)
    assert request.headers["authorization"] == f"Bearer {TOKEN}"


def test_revoke_is_retried_after_any_failure_it_is_idempotent() -> None:
    sleeps: list[float] = []
    notes: list[str] = []
    server = Server(answer(503, {}), refuse_connection, answer(204))
    client(server, sleeps, notes).revoke(TOKEN)
    assert len(server.requests) == 3
    assert sleeps == [1.0, 2.0]
    assert notes[0].startswith("revocation: https://trustpub.example")
    assert "retrying in 1 s" in notes[0]
    assert all(TOKEN not in note for note in notes)


def test_a_refused_revocation_gives_the_servers_reason() -> None:
    detail = "Invalid `Authorization` header: Failed to parse token"
    server = Server(answer(401, {"errors": [{"detail": detail}]}))
    with pytest.raises(Refused) as exc:
        client(server, []).revoke("nonsense")
    assert exc.value.details == (detail,)
    assert exc.value.status == 401
    assert f"  - {detail}" in str(exc.value)


@pytest.mark.parametrize("status", [404, 405])
def test_a_wrong_path_asks_for_the_base_url(status: int) -> None:
    with pytest.raises(WrongURL, match="is the URL the server's base URL"):
        client(Server(answer(status, {"errors": [{"detail": "Not Found"}]})), []).revoke(TOKEN)


def test_introspection_returns_the_answer() -> None:
    server = Server(answer(200, {"active": False}))
    assert client(server, []).introspect(TOKEN, "credential-0123456789") == {"active": False}
    (request,) = server.requests
    assert str(request.url) == SERVER + INTROSPECT_PATH
    assert request.headers["authorization"] == "Bearer credential-0123456789"


def test_a_429_is_retried_even_for_a_token_the_server_has_not_seen() -> None:
    sleeps: list[float] = []
    server = Server(answer(429, {}), answer(200, {"token": TOKEN}))
    issued = client(server, sleeps).exchange(lambda: "the.fixed.jwt", fresh=False)
    assert issued.token == TOKEN
    assert sleeps == [1.0]


def test_an_exchange_answer_without_a_token_points_at_the_url() -> None:
    with pytest.raises(WrongURL, match="without a token"):
        client(Server(answer(200, {"ok": True})), []).exchange(lambda: "j.w.t", fresh=True)


def test_an_unreachable_server_is_never_said_to_have_seen_the_token() -> None:
    with pytest.raises(Unavailable) as exc:
        client(Server(refuse_connection), []).exchange(lambda: "j.w.t", fresh=False)
    assert exc.value.unsent
    assert "may have seen" not in str(exc.value)
    assert "cannot connect to trustpub.example" in str(exc.value)


def test_the_issued_token_stays_out_of_its_repr() -> None:
    assert TOKEN not in repr(IssuedToken(TOKEN, None, {}))


@pytest.mark.parametrize("url", ["", "trustpub.example", "ftp://x.example", "https://x/?a=b"])
def test_a_base_url_must_be_http_with_a_host(url: str) -> None:
    with pytest.raises(ValueError, match="base URL"):
        base_url(url)


def test_the_actions_token_request_keeps_the_runners_query() -> None:
    server = Server(answer(200, {"value": "a.b.c"}))
    http = httpx.Client(transport=httpx.MockTransport(server))
    url = "https://runner.example/token?api-version=2.0"
    assert request_actions_token(http, url, "req", "reg.example:8080") == "a.b.c"
    (request,) = server.requests
    assert request.url.params["api-version"] == "2.0"
    assert request.url.params["audience"] == "reg.example:8080"
    assert request.headers["authorization"] == "bearer req"


def test_the_actions_token_request_is_retried_after_a_server_error() -> None:
    sleeps: list[float] = []
    server = Server(answer(500, {}), answer(200, {"value": "a.b.c"}))
    http = httpx.Client(transport=httpx.MockTransport(server))
    assert request_actions_token(http, "https://r.example/t", "req", "a", sleep=sleeps.append)
    assert sleeps == [1.0]
