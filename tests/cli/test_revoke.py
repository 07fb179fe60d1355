"""``trustpub revoke`` against a fake server (httpx.MockTransport)."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import pytest

from trustpub import cargo
from trustpub.cli import build_parser, main, run_handler
from trustpub.cli.console import Console
from trustpub.cli.remote import World
from trustpub.cli.revoke import execute

SERVER = "https://registry.example"
TOKEN = "trustpub_revoke-me-please"


class Server:
    def __init__(self, status: int = 204, body: object = None) -> None:
        self.status, self.body = status, body
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(self.status, json=self.body)


def run(
    server: Server, *args: str, env: dict[str, str] | None = None, stdin: str = ""
) -> tuple[int, str, str]:
    parsed = build_parser().parse_args(["revoke", "--url", SERVER, *args])
    out, err = io.StringIO(), io.StringIO()
    console = Console(out, err, io.StringIO(stdin), prefix="trustpub revoke")
    with httpx.Client(transport=httpx.MockTransport(server)) as http:
        world = World(env or {}, http, lambda seconds: None)
        code = run_handler(console, lambda: execute(parsed, console, world))
    return code, out.getvalue(), err.getvalue()


def test_a_token_from_standard_input_is_revoked() -> None:
    server = Server()
    code, out, err = run(server, "--token-file", "-", stdin=TOKEN + "\n")
    assert code == 0
    (request,) = server.requests
    assert request.method == "DELETE"
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert "revoked the token from standard input" in err
    assert TOKEN not in out + err


def test_a_token_from_a_file_a_variable_or_cargo(tmp_path: Path) -> None:
    file = tmp_path / "token"
    file.write_text(TOKEN)
    cargo.store_token(tmp_path, "reg", TOKEN)
    for args, env in (
        (("--token-file", str(file)), {}),
        (("--from-env", "MY_TOKEN"), {"MY_TOKEN": TOKEN}),
        (("--cargo-registry", "reg", "--cargo-home", str(tmp_path)), {}),
    ):
        server = Server()
        assert run(server, *args, env=env)[0] == 0
        assert server.requests[0].headers["authorization"] == f"Bearer {TOKEN}"


def test_a_token_source_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["revoke", "--url", SERVER])
    assert exc.value.code == 2
    assert "one of the arguments --token-file --from-env --cargo-registry is required" in (
        capsys.readouterr().err
    )


def test_an_empty_token_is_a_usage_error() -> None:
    server = Server()
    code, _, err = run(server, "--from-env", "UNSET")
    assert code == 2
    assert "trustpub revoke: error: $UNSET: empty, no token to revoke" in err
    assert server.requests == []


def test_a_refusal_exits_1_with_the_servers_reason() -> None:
    detail = "Invalid `Authorization` header: Failed to parse token"
    code, _, err = run(
        Server(401, {"errors": [{"detail": detail}]}), "--token-file", "-", stdin="x"
    )
    assert code == 1
    assert detail in err


def test_a_server_error_exits_3_after_retries() -> None:
    server = Server(503, {})
    code, _, err = run(server, "--token-file", "-", stdin=TOKEN)
    assert code == 3
    assert len(server.requests) == 3
    assert "revocation failed after 3 attempts" in err
    assert TOKEN not in err
