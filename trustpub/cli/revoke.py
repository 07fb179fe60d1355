"""``trustpub revoke``: revoke a trustpub token before it expires (after a publish job,
or when one has leaked)."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from trustpub import cargo
from trustpub.cli import add_command, remote
from trustpub.cli.console import Console, failed, usage_error
from trustpub.client import Client

REVOKE = """revoke a trustpub token (e.g. at the end of a publish job)

Revoke a token that 'trustpub exchange' obtained, so that it stops working before it
expires. The server answers the same for an unknown or expired token. The token is read
from a file, standard input, a variable or cargo's credentials, never from the command
line, where other users could see it.
"""


def register(subparsers: Any) -> None:
    parser = add_command(subparsers, "revoke", REVOKE)
    remote.add_url_argument(parser)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--token-file", metavar="FILE", help="read the token from FILE; '-' for standard input"
    )
    source.add_argument("--from-env", metavar="NAME", help="read the token from variable NAME")
    source.add_argument(
        "--cargo-registry",
        metavar="NAME",
        help="revoke the token stored for cargo registry NAME in $CARGO_HOME/credentials.toml",
    )
    remote.add_cargo_home_argument(parser)
    parser.set_defaults(handler=remote.handler(execute))


def execute(args: argparse.Namespace, console: Console, world: remote.World) -> int:
    url = remote.server_url(args.url, world.env)
    token, source = read_token(args, world.env, console)
    with remote.reporting_client_errors():
        Client(url, world.http, sleep=world.sleep, notify=console.note).revoke(token)
    console.note(f"revoked the token from {source} (if it was still valid)")
    return 0


def read_token(
    args: argparse.Namespace, env: Mapping[str, str], console: Console
) -> tuple[str, str]:
    """The token and where it came from; never shown, not even in an error."""
    if args.token_file is not None:
        from_stdin = args.token_file == "-"  # noqa: S105 - the name for standard input
        source = "standard input" if from_stdin else args.token_file
        try:
            text = console.stdin.read() if from_stdin else Path(args.token_file).read_text()
        except OSError as exc:
            raise usage_error(f"--token-file {args.token_file}: {exc.strerror}") from None
    elif args.from_env is not None:
        source, text = f"${args.from_env}", env.get(args.from_env, "")
    else:
        home = cargo.cargo_home(args.cargo_home, env)
        source = f"cargo registry {args.cargo_registry}"
        try:
            text = cargo.read_token(home, args.cargo_registry) or ""
        except ValueError as exc:
            raise usage_error(f"--cargo-registry: {exc}") from None
        except cargo.CredentialsError as exc:
            raise failed(str(exc)) from None
        if not text:
            raise usage_error(f"no token for {source} in {home / 'credentials.toml'}")
    token = text.strip()
    if not token:
        raise usage_error(f"{source}: empty, no token to revoke")
    return token, source
