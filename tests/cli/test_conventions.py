"""What every command has in common: help, version, exit statuses, error prefixes,
suggestions for typos, tables with headers."""

from __future__ import annotations

import argparse
import io
import json

import pytest

from trustpub import __version__
from trustpub.cli import build_parser, main
from trustpub.cli.console import Console


def parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                found += parsers(sub)
    return found


def test_every_option_and_argument_has_help() -> None:
    missing = [
        f"{p.prog} {a.option_strings or a.dest}"
        for p in parsers(build_parser())
        for a in p._actions
        if not isinstance(a, argparse._SubParsersAction) and not a.help
    ]
    assert missing == []


@pytest.mark.parametrize("flag", ["-V", "--version"])
def test_version(flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([flag])
    assert exc.value.code == 0
    assert capsys.readouterr().out == f"trustpub {__version__}\n"


@pytest.mark.parametrize(
    ("argv", "suggestion"),
    [
        (["exchang"], "did you mean 'exchange'?"),
        (["registry", "tokens"], "did you mean 'token'?"),
        (["registry", "token", "lst"], "did you mean 'list'?"),
        (["dev-issuer", "--provider", "gitlb"], "did you mean 'gitlab'?"),
    ],
)
def test_a_mistyped_command_gets_a_suggestion(
    argv: list[str], suggestion: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert suggestion in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "usage", "suggestion"),
    [
        (["exchange", "--cargo-registy", "r"], "trustpub exchange", "'--cargo-registry'"),
        (["registry", "token", "list", "--jsn"], "trustpub registry token list", "'--json'"),
    ],
)
def test_a_mistyped_option_gets_a_suggestion_from_its_own_command(
    argv: list[str], usage: str, suggestion: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"usage: {usage} ")
    assert f"{usage}: error: unrecognized arguments: " in err
    assert f"did you mean {suggestion}?" in err


def test_no_suggestion_for_something_unlike_any_command(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        main(["zzzzzz"])
    assert "did you mean" not in capsys.readouterr().err


@pytest.mark.parametrize("argv", [[], ["registry"], ["registry", "token"], ["policy"]])
def test_a_command_without_its_subcommand_shows_help_and_exits_2(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert "usage: trustpub" in capsys.readouterr().err


def test_configuration_errors_are_reported_once_with_the_commands_prefix(
    capsys: pytest.CaptureFixture[str], tmp_path: object
) -> None:
    assert main(["policy", "check", "--config", "/nonexistent/trustpub.toml"]) == 2
    captured = capsys.readouterr()
    assert captured.err == ("trustpub policy: error: /nonexistent/trustpub.toml: file not found\n")
    assert captured.out == ""


def test_the_help_documents_the_exit_statuses(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "Exit status: 0 done, 1 refused" in text
    assert "2 usage or configuration error, 3 failed" in text


def test_a_table_has_headers_and_aligned_columns_or_is_json() -> None:
    out = io.StringIO()
    console = Console(out, io.StringIO(), io.StringIO())
    console.table(("ID", "NAME"), [("1", "a-long-name"), ("22", "b")])
    assert out.getvalue() == "ID  NAME\n1   a-long-name\n22  b\n"
    out.seek(0)
    out.truncate()
    console.table(("ID",), [("1",)], as_json=True, records=[{"id": 1}])
    assert json.loads(out.getvalue()) == [{"id": 1}]


def test_the_readme_documents_the_same_exit_statuses() -> None:
    from pathlib import Path

    from trustpub.cli.console import EXIT_FAILED, EXIT_OK, EXIT_REFUSED, EXIT_USAGE

    readme = " ".join((Path(__file__).parents[2] / "README.md").read_text().split())
    assert f"Every command exits {EXIT_OK} when done, {EXIT_REFUSED} when refused" in readme
    assert f"{EXIT_USAGE} for a usage or configuration error" in readme
    assert f"and {EXIT_FAILED} when it failed to do its job" in readme
