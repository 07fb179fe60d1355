"""The ``trustpub`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from trustpub import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trustpub",
        description="Trusted Publishing for Cargo registries.",
    )
    parser.add_argument("--version", action="version", version=f"trustpub {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    # Each command module adds its own subcommand.
    from trustpub.cli import dev_issuer, exchange, serve
    from trustpub.cli import policy as policy_cli
    from trustpub.cli import registry as registry_cli

    serve.register(subparsers)
    dev_issuer.register(subparsers)
    exchange.register(subparsers)
    policy_cli.register(subparsers)
    registry_cli.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    result: int = handler(args)
    return result
