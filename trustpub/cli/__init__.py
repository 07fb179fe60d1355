"""The ``trustpub`` command.

Each command module adds its subcommand with ``register(subparsers)`` and sets a
``handler(args, console) -> int``. Handlers write through ``console`` and fail by
raising ``console.CommandError``; ``main`` catches it, and the configuration errors
every command may meet, once (see ``console`` for the exit statuses).
"""

from __future__ import annotations

import argparse
import difflib
from collections.abc import Sequence
from typing import Any

from trustpub import __version__
from trustpub.cli.console import EXIT_USAGE, CommandError, Console
from trustpub.errors import ConfigurationError, PolicyLoadError


class Parser(argparse.ArgumentParser):
    """argparse, with "did you mean ...?" for a mistyped command or choice.

    argparse learns this only in Python 3.14 (``suggest_on_error``); this is the same
    hook it uses, ``_check_value``, which has kept its signature since Python 3.2.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The deepest parser that parsed a command line wins: it names the options an
        # unrecognized one is compared with.
        self.set_defaults(_parser=self)

    def parse_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> argparse.Namespace:
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            chosen: argparse.ArgumentParser = getattr(parsed, "_parser", self)
            options = [o for a in chosen._actions for o in a.option_strings]
            hints = []
            for extra in extras:
                close = difflib.get_close_matches(extra.partition("=")[0], options, n=1)
                if extra.startswith("-") and close:
                    hints.append(f"{extra!r}: did you mean {close[0]!r}?")
            chosen.error(
                f"unrecognized arguments: {' '.join(extras)}"
                + (f" ({'; '.join(hints)})" if hints else "")
            )
        return parsed

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        try:
            super()._check_value(action, value)
        except argparse.ArgumentError as exc:
            if isinstance(value, str) and action.choices is not None:
                close = difflib.get_close_matches(value, [str(c) for c in action.choices], n=1)
                if close:
                    raise argparse.ArgumentError(
                        action, f"{exc.message}; did you mean {close[0]!r}?"
                    ) from None
            raise


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="trustpub",
        description="Trusted Publishing for Cargo registries.",
        epilog=(
            "Exit status: 0 done, 1 refused (the answer is no), 2 usage or configuration "
            "error, 3 failed (network, server, files). 'trustpub COMMAND --help' for more."
        ),
    )
    parser.add_argument("-V", "--version", action="version", version=f"trustpub {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    # Each command module adds its own subcommand.
    from trustpub.cli import dev_issuer, exchange, revoke, serve
    from trustpub.cli import policy as policy_cli
    from trustpub.cli import registry as registry_cli

    serve.register(subparsers)
    exchange.register(subparsers)
    revoke.register(subparsers)
    policy_cli.register(subparsers)
    registry_cli.register(subparsers)
    dev_issuer.register(subparsers)
    return parser


def add_command(subparsers: Any, name: str, text: str, **options: Any) -> argparse.ArgumentParser:
    """Add subcommand ``name``. ``text`` reads like a docstring: its first line is the
    summary in the list of commands, the paragraphs after it the description atop the
    command's help (the summary again when there are none)."""
    summary, _, description = text.strip().partition("\n\n")
    parser: argparse.ArgumentParser = subparsers.add_parser(
        name, help=summary, description=description.strip() or None, **options
    )
    return parser


def help_handler(parser: argparse.ArgumentParser) -> Any:
    """A handler for a command that needs a subcommand: its help, exit status 2."""

    def handler(args: argparse.Namespace, console: Console) -> int:
        parser.print_help(console.stderr)
        return EXIT_USAGE

    return handler


def main(argv: Sequence[str] | None = None, console: Console | None = None) -> int:
    console = console or Console()
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(console.stderr)
        return EXIT_USAGE
    console.prefix = f"trustpub {args.command}"
    return run_handler(console, lambda: handler(args, console))


def run_handler(console: Console, handler: Any) -> int:
    """Run ``handler()``; report a ``CommandError`` or a configuration error once."""
    try:
        result: int = handler()
        return result
    except CommandError as exc:
        console.error(exc.message)
        return exc.exit_code
    except PolicyLoadError as exc:
        console.error("the policies do not load:")
        for problem in exc.problems:
            console.raw_err(f"  {problem}")
        return EXIT_USAGE
    except ConfigurationError as exc:
        # The detail names where: the file and key, the variable or the option.
        console.error(exc.detail)
        return EXIT_USAGE
    except KeyboardInterrupt:
        console.raw_err()
        return 130
