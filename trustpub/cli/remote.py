"""What the commands that talk to a trustpub server share (``exchange``, ``revoke``):
the server's URL, the HTTP client, and how a client error becomes a command error."""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import httpx

from trustpub.cli.console import Console, failed, refused, usage_error
from trustpub.client import ClientError, Refused, WrongURL, base_url


@dataclass(frozen=True, slots=True)
class World:
    """What a command reads from outside; tests pass their own (a MockTransport client,
    a recorded sleep)."""

    env: Mapping[str, str]
    http: httpx.Client
    sleep: Callable[[float], None]


Execute = Callable[[argparse.Namespace, Console, World], int]


def handler(execute: Execute) -> Callable[[argparse.Namespace, Console], int]:
    """``execute`` in the real world: the process's environment, a client that never
    follows redirects (a token must only go where the user said), real sleeps."""

    def run(args: argparse.Namespace, console: Console) -> int:
        with httpx.Client(follow_redirects=False) as http:
            return execute(args, console, World(os.environ, http, time.sleep))

    return run


def add_url_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url",
        metavar="URL",
        help="the trustpub server's base URL, https://HOST (default $TRUSTPUB_URL)",
    )


def add_cargo_home_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cargo-home", metavar="DIR", help="cargo home (default $CARGO_HOME or ~/.cargo)"
    )


def server_url(flag: str | None, env: Mapping[str, str]) -> str:
    """``--url``, else ``$TRUSTPUB_URL``: the server's base URL, or a usage error."""
    try:
        return base_url(flag or env.get("TRUSTPUB_URL") or "")
    except ValueError as exc:
        source = "--url" if flag else "--url (or $TRUSTPUB_URL)"
        raise usage_error(f"{source}: {exc}") from None


@contextmanager
def reporting_client_errors() -> Iterator[None]:
    """A refusal exits 1, a wrong URL 2 (fix the command line), anything else 3."""
    try:
        yield
    except Refused as exc:
        raise refused(str(exc)) from None
    except WrongURL as exc:
        raise usage_error(str(exc)) from None
    except ClientError as exc:
        raise failed(str(exc)) from None
