"""How every command talks to its user, and how it fails.

A command writes only through its ``Console``: ``out`` for the result a script reads
(a token, a table, a report) on standard output, and ``note``, ``warn`` for messages to
a person on standard error, each prefixed with the command (``trustpub exchange: ...``,
as argparse prefixes its usage errors).

A command fails by raising ``CommandError`` with a message and an exit status; ``main``
catches it once and prints ``trustpub COMMAND: error: MESSAGE``. Exit statuses, the
same for every command (the README documents them):

    0  done
    1  refused: the command ran and the answer is no (a policy refuses, the registry
       refuses a token, a check finds problems, no such token)
    2  usage: bad arguments, configuration or input (argparse uses 2 too)
    3  failed: the command could not do its job (network, server, file system)
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_FAILED = 3


class CommandError(Exception):
    """A command's failure: ``message`` for the user, ``exit_code`` for scripts."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


def usage_error(message: str) -> CommandError:
    return CommandError(message, EXIT_USAGE)


def refused(message: str) -> CommandError:
    return CommandError(message, EXIT_REFUSED)


def failed(message: str) -> CommandError:
    return CommandError(message, EXIT_FAILED)


@dataclass
class Console:
    """The one output seam. Tests pass StringIO streams; ``main`` the process's."""

    stdout: TextIO = field(default_factory=lambda: sys.stdout)
    stderr: TextIO = field(default_factory=lambda: sys.stderr)
    stdin: TextIO = field(default_factory=lambda: sys.stdin)
    prefix: str = "trustpub"

    def out(self, text: str = "") -> None:
        """A line of the command's result, on standard output."""
        print(text, file=self.stdout, flush=True)

    def note(self, text: str) -> None:
        """A message for a person, on standard error."""
        print(f"{self.prefix}: {text}", file=self.stderr, flush=True)

    def warn(self, text: str) -> None:
        print(f"{self.prefix}: warning: {text}", file=self.stderr, flush=True)

    def error(self, text: str) -> None:
        print(f"{self.prefix}: error: {text}", file=self.stderr, flush=True)

    def raw_err(self, text: str = "") -> None:
        """A line on standard error without the prefix (indented detail, claim tables)."""
        print(text, file=self.stderr, flush=True)

    def table(
        self,
        headers: Sequence[str],
        rows: Sequence[Sequence[str]],
        *,
        as_json: bool = False,
        records: Sequence[dict[str, Any]] | None = None,
    ) -> None:
        """Rows under their headers in aligned columns, or ``records`` as a JSON array
        (``as_json``): the form a script should parse."""
        if as_json:
            self.out(json.dumps(list(records or ()), indent=2))
            return
        widths = [max(len(str(c)) for c in column) for column in zip(headers, *rows, strict=False)]
        for row in (headers, *rows):
            cells = [str(c).ljust(w) for c, w in zip(row, widths, strict=True)]
            self.out("  ".join(cells).rstrip())
