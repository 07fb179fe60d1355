"""The documentation, checked against the program.

README.md, policies/README.md and action/README.md name commands, flags, configuration
keys, variables, endpoints and examples; a newcomer copies them. Each test here fails
when one of them stops being true. Offline and fast: no server is started. The Quick
start's shell blocks are run by tests/test_quickstart.py and are not parsed here; the
policy examples of policies/README.md are loaded by tests/policies/test_examples.py.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import importlib
import inspect
import io
import json
import re
import shlex
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from starlette.routing import Match, Route

from tests.conftest import SigningKey, github_claims
from trustpub.api.app import ROUTES
from trustpub.cli import build_parser, main
from trustpub.config import ENV_VARS, Settings, audience_for, load_settings
from trustpub.durations import parse_duration
from trustpub.errors import ConfigurationError
from trustpub.grants import Operation
from trustpub.oidc.issuers import DEFAULT_ISSUERS
from trustpub.oidc.keys import KeySets
from trustpub.policies import PatternError, RefPattern, parse_policy_file
from trustpub.registry import Registry
from trustpub.registry.auth import USER_TOKEN_PREFIX
from trustpub.tokens import format as token_format

ROOT = Path(__file__).resolve().parents[1]
DOCS = ("README.md", "policies/README.md", "action/README.md", "docs/operating.md")
QUICK_START = "## Quick start"  # its blocks are run by tests/test_quickstart.py


# -- reading Markdown ------------------------------------------------------------------


@dataclass(frozen=True)
class Section:
    """The text between two headings of one document."""

    doc: str
    heading: str
    code: tuple[tuple[int, str], ...]  # (line, text): fenced and indented code lines
    spans: tuple[tuple[int, str], ...]  # (line, text): inline `code` in the prose
    fences: tuple[tuple[int, str, str], ...]  # (line, language, body) of fenced blocks
    indented: tuple[tuple[int, str], ...]  # (line, body) of indented code blocks


def sections(doc: str) -> list[Section]:
    lines = (ROOT / doc).read_text().split("\n")
    result: list[Section] = []
    heading = ""
    code: list[tuple[int, str]] = []
    spans: list[tuple[int, str]] = []
    fences: list[tuple[int, str, str]] = []
    indented: list[tuple[int, str]] = []
    fence: tuple[int, str, list[str]] | None = None
    block: tuple[int, list[str]] | None = None

    def close() -> None:
        result.append(
            Section(doc, heading, tuple(code), tuple(spans), tuple(fences), tuple(indented))
        )
        for collected in (code, spans, fences, indented):
            collected.clear()

    for number, line in enumerate(lines, start=1):
        if fence is not None:
            if line.startswith("```"):
                fences.append((fence[0], fence[1], "\n".join(fence[2]) + "\n"))
                fence = None
            else:
                fence[2].append(line)
                code.append((number, line))
            continue
        if block is not None and not line.startswith("    ") and line.strip():
            indented.append((block[0], "\n".join(block[1]) + "\n"))
            block = None
        if line.startswith("```"):
            fence = (number, line[3:].strip(), [])
        elif line.startswith("#"):
            close()
            heading = line
        elif line.startswith("    "):
            code.append((number, line))
            if block is None:
                block = (number, [])
            block[1].append(line[4:])
        else:
            spans.extend((number, s) for s in re.findall(r"`([^`]+)`", line))
    if block is not None:
        indented.append((block[0], "\n".join(block[1]) + "\n"))
    close()
    return result


def joined(code: tuple[tuple[int, str], ...]) -> Iterator[tuple[int, str]]:
    """Code lines with their ``\\`` continuations joined, as the shell reads them."""
    pending: tuple[int, str] | None = None
    for number, line in code:
        if pending is not None:
            number, line = pending[0], pending[1] + " " + line.strip()
        if line.rstrip().endswith("\\"):
            pending = (number, line.rstrip()[:-1])
            continue
        pending = None
        yield number, line


# -- trustpub command lines ------------------------------------------------------------

ROOT_PARSER = build_parser()


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    # argparse has no public accessor for its subparsers; this one has been stable for
    # a decade.
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def parser_at(path: tuple[str, ...]) -> argparse.ArgumentParser:
    parser = ROOT_PARSER
    for name in path:
        parser = subcommands(parser)[name]
    return parser


def option_names(parser: argparse.ArgumentParser) -> set[str]:
    return {o for action in parser._actions for o in action.option_strings}


def subtree_options(path: tuple[str, ...]) -> set[str]:
    """Options of the parser at ``path``, of its ancestors and of every descendant."""
    names: set[str] = set()
    for depth in range(len(path) + 1):
        names |= option_names(parser_at(path[:depth]))
    todo = [parser_at(path)]
    while todo:
        parser = todo.pop()
        names |= option_names(parser)
        todo.extend(subcommands(parser).values())
    return names


COMMAND_NAMES = "|".join(subcommands(ROOT_PARSER))
TRUSTPUB_COMMAND = re.compile(rf"(?:^|(?<=[\s`(]))trustpub\s+(?=(?:{COMMAND_NAMES})(?:\s|$))")


def argvs(text: str) -> list[list[str]]:
    """Every ``trustpub COMMAND ...`` in a shell line, up to a pipe, redirection,
    ``)``, ``;``, ``&&`` or comment."""
    found = []
    for match in TRUSTPUB_COMMAND.finditer(text):
        lexer = shlex.shlex(text[match.end() :], posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        argv = []
        for token in lexer:
            if set(token) <= set("();<>|&"):
                break
            argv.append(token)
        found.append(argv)
    return found


@dataclass(frozen=True)
class Walked:
    path: tuple[str, ...]  # the subcommands, e.g. ("registry", "token", "create")
    flags: tuple[tuple[str, tuple[str, ...]], ...]  # each --flag with the path it is under


def walk(argv: list[str], start: tuple[str, ...] = ()) -> Walked:
    path = list(start)
    parser = parser_at(start)
    flags = []
    i = 0
    while i < len(argv):
        token = argv[i]
        if token.startswith("--"):
            name = token.split("=", 1)[0]
            flags.append((name, tuple(path)))
            action = parser._option_string_actions.get(name)
            if action is not None and action.nargs != 0 and "=" not in token:
                i += 1  # its value
        elif token in subcommands(parser):
            parser = subcommands(parser)[token]
            path.append(token)
        i += 1
    return Walked(tuple(path), tuple(flags))


@dataclass(frozen=True)
class DocCommand:
    where: str
    argv: list[str]
    section: Section


def doc_commands(*, quick_start_code: bool) -> list[DocCommand]:
    """Every trustpub command line in the docs: in code, and in inline `code`."""
    commands = []
    for doc in DOCS:
        for section in sections(doc):
            skip_code = section.heading == QUICK_START and not quick_start_code
            lines = [] if skip_code else list(joined(section.code))
            for number, text in [*lines, *section.spans]:
                for argv in argvs(text):
                    commands.append(DocCommand(f"{doc}:{number}", argv, section))
    return commands


COMMANDS = doc_commands(quick_start_code=False)


def test_the_docs_name_trustpub_commands_of_every_kind() -> None:
    """The parser above finds what it is meant to find (a vacuous pass would hide rot)."""
    paths = {walk(c.argv).path for c in COMMANDS}
    assert {("serve",), ("dev-issuer",), ("exchange",), ("policy", "check")} <= paths
    assert {("policy", "explain"), ("registry", "token", "create"), ("registry", "serve")} <= paths
    assert len(COMMANDS) >= 12


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: f"{c.where} {' '.join(c.argv)}")
def test_every_documented_flag_is_in_its_commands_help(command: DocCommand) -> None:
    walked = walk(command.argv)
    for flag, path in walked.flags:
        text = parser_at(path).format_help()
        assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", text), (
            f"{command.where}: `trustpub {' '.join(path)} --help` does not list {flag}"
        )


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: f"{c.where} {' '.join(c.argv)}")
def test_every_documented_command_line_parses(
    command: DocCommand, capsys: pytest.CaptureFixture[str]
) -> None:
    code: str | int | None = 0
    try:
        ROOT_PARSER.parse_args(command.argv)
    except SystemExit as exc:  # --help exits 0; anything else is a usage error
        code = exc.code
    assert code == 0, f"{command.where}: {capsys.readouterr().err}"


def loose_flags() -> list[object]:
    """Flags written in the prose on their own (`--expires-in 90d`)."""
    return [
        pytest.param(f"{s.doc}:{number}", span.split()[0], s, id=f"{s.doc}:{number} {span}")
        for doc in DOCS
        for s in sections(doc)
        for number, span in s.spans
        if span.startswith("--")
    ]


@pytest.mark.parametrize(("where", "flag", "section"), loose_flags())
def test_every_flag_in_the_prose_belongs_to_a_command_of_its_section(
    where: str, flag: str, section: Section
) -> None:
    mentioned = {
        walk(c.argv).path for c in doc_commands(quick_start_code=True) if c.section == section
    }
    assert mentioned, f"{where}: {flag} in a section that names no trustpub command"
    allowed = set().union(*(subtree_options(path) for path in mentioned))
    assert flag in allowed, f"{where}: {flag} is not an option of " + ", ".join(
        f"`trustpub {' '.join(p)}`" for p in sorted(mentioned)
    )


# -- the configuration table -----------------------------------------------------------


@dataclass(frozen=True)
class ConfigRow:
    line: int
    keys: tuple[str, ...]  # dotted: listen, issuers.url, key_sets.max_age
    variables: tuple[str, ...]
    defaults: tuple[str, ...]  # the default column's `code` values
    default_text: str


def config_section() -> Section:
    return next(s for s in sections("README.md") if s.heading == "## Configuration")


def config_rows() -> list[ConfigRow]:
    rows = []
    lines = (ROOT / "README.md").read_text().split("\n")
    start = lines.index("## Configuration")
    for number, line in enumerate(lines[start:], start=start + 1):
        if line.startswith("## ") and number > start + 1:
            break
        if not line.startswith("| `"):
            continue
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]
        names = re.findall(r"`([^`]+)`", cells[0])
        if names[0].startswith("["):
            table = names[0].strip("[]")
            keys = tuple(f"{table}.{name}" for name in names[1:])
        else:
            keys = (names[0],)
        variables = tuple(re.findall(r"\bTRUSTPUB_[A-Z_]+\b", cells[1]))
        defaults = tuple(re.findall(r"`([^`]+)`", cells[2]))
        rows.append(ConfigRow(number, keys, variables, defaults, cells[2]))
    return rows


def toml_for(key: str) -> str:
    """The key with a value of some kind: enough to tell a known key from an unknown one."""
    table, _, name = key.rpartition(".")
    if table == "issuers":
        return f'[[issuers]]\n{name} = "x"\n'
    if table:
        return f'[{table}]\n{name} = "x"\n'
    return f'{name} = "x"\n'


def test_the_configuration_table_is_found() -> None:
    keys = {k for row in config_rows() for k in row.keys}
    assert {"listen", "store", "issuers.url", "key_sets.max_age", "registry.enabled"} <= keys


@pytest.mark.parametrize("key", [k for row in config_rows() for k in row.keys])
def test_every_documented_configuration_key_is_accepted(key: str, tmp_path: Path) -> None:
    config = tmp_path / "trustpub.toml"
    config.write_text(toml_for(key))
    problem = ""
    try:
        load_settings(config, environ={})
    except ConfigurationError as exc:  # a bad value is fine here; an unknown key is not
        problem = exc.detail
    assert "unknown key" not in problem, f"README.md documents `{key}`: {problem}"


def test_every_top_level_configuration_key_is_documented(tmp_path: Path) -> None:
    config = tmp_path / "trustpub.toml"
    config.write_text("not_a_key = 1\n")
    with pytest.raises(ConfigurationError) as exc:
        load_settings(config, environ={})
    known = re.search(r"\(known: (.*)\)", exc.value.detail)
    assert known is not None
    documented = {k.split(".")[0] for row in config_rows() for k in row.keys}
    assert set(known.group(1).split(", ")) == documented


@pytest.mark.parametrize("row", config_rows(), ids=lambda r: r.keys[0])
def test_every_documented_variable_is_read_for_its_key(row: ConfigRow) -> None:
    for variable in row.variables:
        assert variable in ENV_VARS, f"README.md:{row.line}: {variable} is not read"
        assert ENV_VARS[variable] == row.keys[0].split(".")[0]


def test_every_variable_read_is_documented() -> None:
    documented = {v for row in config_rows() for v in row.variables}
    assert set(ENV_VARS) == documented
    # The file itself: named in the section's prose, and read.
    assert any("$TRUSTPUB_CONFIG" in span for _, span in config_section().spans)


def test_trustpub_config_names_the_file(tmp_path: Path) -> None:
    config = tmp_path / "trustpub.toml"
    config.write_text('listen = "127.0.0.1:9999"\n')
    assert load_settings(environ={"TRUSTPUB_CONFIG": str(config)}).port == 9999


def _actual_defaults(s: Settings) -> dict[str, object]:
    return {
        "listen": f"{s.host}:{s.port}",
        "public_url": s.public_url,
        "audience": s.audience,
        "policy_dir": str(s.policy_dir),
        "store": s.store_url,
        "data_dir": str(s.data_dir),
        "max_token_ttl": s.max_token_ttl,
        "jwt_leeway": s.jwt_leeway,
        "max_jwt_lifetime": s.max_jwt_lifetime,
        "introspection_credentials": s.introspection_credentials,
        "log_level": s.log_level,
        "policy_reload_interval": s.policy_reload_interval,
        "issuers.url": tuple(i.url for i in s.issuers),
        "issuers.provider": tuple(i.provider for i in s.issuers),
        "issuers.development": tuple(i.development for i in s.issuers),
        "key_sets.max_age": s.key_sets.max_age,
        "key_sets.refresh_cooldown": s.key_sets.refresh_cooldown,
        "key_sets.max_stale": s.key_sets.max_stale,
        "registry.enabled": s.registry_enabled,
        "registry.auth_required": s.registry_auth_required,
        "registry.invitation_ttl": s.registry_invitation_ttl,
        "registry.require_metadata": s.registry_require_metadata,
        "registry.categories": () if s.registry_categories is None else "set",
        "registry.webhook_secrets_key_file": () if s.registry_webhook_keys is None else "set",
        "registry.database": s.registry_database or (),  # none: the SQLite file
        # The default store is the data directory's `registry/`, written DATA_DIR there.
        "registry.storage": (
            "file://DATA_DIR/registry"
            if s.registry_storage.local_root(Path("DATA_DIR/registry")) == Path("DATA_DIR/registry")
            else s.registry_storage.url
        ),
        "registry.downloads": s.registry_storage.downloads,
        **{
            f"registry.s3.{name}": getattr(s.registry_storage.s3, name) or ()
            for name in ("endpoint_url", "region", "access_key_id", "secret_access_key")
        },
        "registry.s3.addressing_style": s.registry_storage.s3.addressing_style,
        **{
            f"rate_limits.{name}": limit.describe() if limit is not None else "off"
            for name, limit in (
                ("exchange_per_client", s.rate_limits.exchange_per_client),
                ("exchange_per_repository", s.rate_limits.exchange_per_repository),
                ("failed_auth_per_client", s.rate_limits.failed_auth_per_client),
            )
        },
        **{f"server.{f.name}": getattr(s.server, f.name) for f in dataclasses.fields(s.server)},
        "trusted_proxies": s.trusted_proxies,
        "forwarded_header": s.forwarded_header,
        **{
            f"secret_scanning.{f.name}": getattr(s.secret_scanning, f.name)
            for f in dataclasses.fields(s.secret_scanning)
        },
        **{
            f"notifications.{name}": "none" if value is None else value
            for name, value in (
                ("smtp_url", s.notifications.smtp_url),
                ("starttls", s.notifications.starttls),
                ("smtp_username", s.notifications.smtp_username),
                ("smtp_password_file", None),
                ("from_address", s.notifications.from_address),
                ("webhooks_allow_private", s.notifications.webhooks.allow_private),
                ("webhooks_development", s.notifications.webhooks.development),
                ("max_attempts", s.notifications.max_attempts),
                ("retry_base", s.notifications.retry_base),
                ("retry_max", s.notifications.retry_max),
                ("poll_interval", s.notifications.poll_interval),
            )
        },
        **{
            f"trusted_publishing_configs.{f.name}": getattr(s.owner_configs, f.name)
            for f in dataclasses.fields(s.owner_configs)
        },
    }


@pytest.mark.parametrize("row", config_rows(), ids=lambda r: r.keys[0])
def test_every_documented_default_is_the_default(row: ConfigRow) -> None:
    settings = load_settings(environ={})
    actual = _actual_defaults(settings)
    if len(row.defaults) != len(row.keys):  # written in words: each case on its own
        if row.keys[0] == "audience":
            assert row.default_text == "public URL without scheme"
            assert actual["audience"] == audience_for(settings.public_url)
        elif row.keys[0] == "issuers.url":
            assert row.default_text == "GitHub and gitlab.com"
            assert actual["issuers.provider"] == ("github", "gitlab")
            assert actual["issuers.url"][1] == "https://gitlab.com"  # type: ignore[index]
            assert actual["issuers.development"] == (False, False)
        else:
            assert row.default_text == "none"
            assert actual[row.keys[0]] == ()
        return
    for key, written in zip(row.keys, row.defaults, strict=True):
        value = actual[key]
        if isinstance(value, bool):
            assert written == str(value).lower(), f"README.md:{row.line}: {key}"
        elif isinstance(value, int):
            seconds = int(written) if written.isdigit() else parse_duration(written)
            assert seconds == value, f"README.md:{row.line}: {key}"
        elif isinstance(value, float):
            assert float(written) == value, f"README.md:{row.line}: {key}"
        else:
            assert written.replace("PORT", str(settings.port)) == value, f"README.md:{row.line}"


# -- examples --------------------------------------------------------------------------


def test_the_configuration_example_loads_and_keeps_the_default_issuers(tmp_path: Path) -> None:
    """It says "beside the defaults": an [[issuers]] list replaces them, so the example
    must name them again, or copying it would silently drop gitlab.com."""
    examples = [body for _, lang, body in config_section().fences if lang == "toml"]
    assert len(examples) == 1
    config = tmp_path / "trustpub.toml"
    config.write_text(examples[0])
    settings = load_settings(config, environ={})
    assert set(DEFAULT_ISSUERS) < set(settings.issuers)
    assert settings.introspection_credentials[0].startswith("sha256:")


def readme_toml() -> list[tuple[str, str]]:
    """Every TOML example of README.md: fenced ``toml`` blocks and the indented snippets
    of cargo configuration."""
    found = []
    for section in sections("README.md"):
        for line, lang, body in section.fences:
            if lang == "toml":
                found.append((f"README.md:{line}", body))
        for line, body in section.indented:
            if body.startswith("["):
                found.append((f"README.md:{line}", body))
    return found


@pytest.mark.parametrize(("where", "body"), readme_toml(), ids=lambda v: v[:24])
def test_every_toml_example_in_the_readme_parses(where: str, body: str) -> None:
    tomllib.loads(body)


def test_the_readme_has_toml_examples_of_each_kind() -> None:
    bodies = [body for _, body in readme_toml()]
    assert any("[[issuers]]" in b for b in bodies)
    assert any("[registries.trustpub]" in b for b in bodies)
    assert any("[dependencies]" in b for b in bodies)


def test_the_python_example_imports_what_exists() -> None:
    blocks = [body for s in sections("README.md") for _, lang, body in s.fences if lang == "python"]
    assert blocks
    for block in blocks:
        tree = compile(
            block, "README.md", "exec", flags=ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
        )
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                module = importlib.import_module(node.module)
                for alias in node.names:
                    assert hasattr(module, alias.name), f"{node.module}.{alias.name}"
    from trustpub.tokens.service import TokenService

    assert inspect.iscoroutinefunction(TokenService.introspect)


# -- documented commands, run ----------------------------------------------------------


@pytest.fixture
def clean_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory of its own, and no TRUSTPUB_* variable from the caller."""
    monkeypatch.chdir(tmp_path)
    for variable in [*ENV_VARS, "TRUSTPUB_CONFIG"]:
        monkeypatch.delenv(variable, raising=False)
    return tmp_path


def test_the_registry_commands_of_the_readme_run(
    clean_environment: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    section = next(s for s in sections("README.md") if s.heading == "### Users and API tokens")
    # `--config trustpub.toml`, as the README writes it.
    (clean_environment / "trustpub.toml").write_text('data_dir = "data"\n')
    commands = [argv for _, line in joined(section.code) for argv in argvs(line)]
    assert [walk(argv).path for argv in commands] == [
        ("registry", "user", "add"),
        ("registry", "token", "create"),
    ]
    for argv in commands:
        assert main(argv) == 0, capsys.readouterr().err

    # The prose's options of `token create` (`--crate 'mylib*'`, `--expires-in 90d`) ...
    create_options = option_names(parser_at(("registry", "token", "create")))
    extra = [
        word
        for _, span in section.spans
        if span.split()[0] in create_options
        for word in shlex.split(span)
    ]
    assert "--crate" in extra
    assert "--expires-in" in extra
    assert main([*commands[1], *extra]) == 0, capsys.readouterr().err
    # ... and its commands (`user list`, `token list --user alice`, `token revoke ID`,
    # `--data-dir DIR`), run on the registry the commands above created.
    registry_commands = subcommands(parser_at(("registry",)))
    fragments = [shlex.split(s) for _, s in section.spans if s.split()[0] in registry_commands]
    assert len(fragments) == 3
    capsys.readouterr()
    for fragment in fragments:
        argv = ["registry", "--config", "trustpub.toml", *fragment[:-1]]
        argv.append("1" if fragment[-1] == "ID" else fragment[-1])  # the first token's id
        assert main(argv) == 0, f"{fragment}: {capsys.readouterr().err}"
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert ["LOGIN", "EMAIL", "CREATED"] in rows
    assert any(row[0] == "alice" for row in rows)
    assert any(row[4:7] == ["mylib*", "active", "until"] for row in rows)
    data_dir = [s.split() for _, s in section.spans if s.startswith("--data-dir ")]
    assert data_dir == [["--data-dir", "DIR"]]
    assert main(["registry", "--data-dir", "data", "user", "list", "--json"]) == 0
    assert [u["login"] for u in json.loads(capsys.readouterr().out)] == ["alice"]


POLICY_FOR_THE_CLAIMS = """\
[[policy]]
name = "octo-lib"
provider = "github"
crates = ["octo-lib"]
repository = "octo-org/octo-lib"
repository_owner_id = "131804563"
workflow = "release.yml"
"""


def test_the_policy_commands_of_the_docs_run(
    clean_environment: Path,
    signing_key: SigningKey,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`trustpub policy check|explain` as README.md and policies/README.md write them, in
    a directory with the files they name: policies/, trustpub.toml, claims.json and
    token.txt (the claims of a release job the policy trusts)."""
    (clean_environment / "policies").mkdir()
    (clean_environment / "policies" / "octo.toml").write_text(POLICY_FOR_THE_CLAIMS)
    (clean_environment / "trustpub.toml").write_text('policy_dir = "policies"\n')
    claims = github_claims()
    (clean_environment / "claims.json").write_text(json.dumps(claims))
    (clean_environment / "token.txt").write_text(signing_key.sign(claims) + "\n")
    commands = [c for c in COMMANDS if walk(c.argv).path[:1] == ("policy",) and len(c.argv) > 1]
    assert len(commands) >= 6
    for command in commands:
        line = dict(joined(command.section.code)).get(int(command.where.split(":")[1]), "")
        stdin = re.search(r"<\s*(\S+)", line)
        if stdin:
            monkeypatch.setattr("sys.stdin", io.StringIO(Path(stdin.group(1)).read_text()))
        # --issuer names GitHub Enterprise Server only: the policy for the public GitHub
        # issuer is then refused (1), as it should be; everything else succeeds.
        expected = 1 if "--issuer" in command.argv else 0
        code = main(command.argv)
        output = capsys.readouterr()
        assert code == expected, f"{command.where}: {output.out}{output.err}"
        if "explain" in command.argv:
            assert "verdict: GRANTED" in output.out


# -- action/README.md ------------------------------------------------------------------


def action_settings() -> dict[str, dict[str, int]]:
    """DEFAULT_SETTINGS of action/lib/auth.js: attempts and timeouts of each request."""
    source = (ROOT / "action" / "lib" / "auth.js").read_text()
    found = re.findall(r"(\w+): \{ attempts: (\d+), timeoutMs: (\d+) \}", source)
    return {name: {"attempts": int(a), "seconds": int(ms) // 1000} for name, a, ms in found}


def test_the_actions_retries_and_timeouts_are_documented_as_coded() -> None:
    settings = action_settings()
    assert set(settings) == {"oidc", "exchange", "revoke"}
    text = " ".join((ROOT / "action" / "README.md").read_text().split())
    oidc, exchange, revoke = settings["oidc"], settings["exchange"], settings["revoke"]
    assert (
        f"Requests the token for the audience ({oidc['seconds']} s timeout, up to "
        f"{oidc['attempts']} attempts" in text
    )
    assert (
        f"Posts it to `{{url}}/api/v1/trusted_publishing/tokens` ({exchange['seconds']} s "
        f"timeout, up to {exchange['attempts']} attempts" in text
    )
    assert (
        f"`DELETE {{url}}/api/v1/trusted_publishing/tokens` with the token "
        f"({revoke['seconds']} s timeout, up to {revoke['attempts']} attempts)" in text
    )


def action_yml_names(block: str) -> dict[str, bool]:
    """The inputs or outputs of action.yml, each with whether it is required."""
    text = (ROOT / "action" / "action.yml").read_text()
    body = re.search(rf"^{block}:\n((?:  .*\n)+)", text, flags=re.MULTILINE)
    assert body is not None
    names: dict[str, bool] = {}
    for line in body.group(1).split("\n"):
        if re.fullmatch(r"  [\w-]+:", line):
            current = line.strip(" :")
            names[current] = False
        elif line.strip() == "required: true":
            names[current] = True
    return names


def action_readme_table(first_column: str) -> dict[str, str]:
    rows: dict[str, str] = {}
    in_table = False
    for line in (ROOT / "action" / "README.md").read_text().split("\n"):
        if line.startswith(f"| {first_column} |"):
            in_table = True
        elif in_table and line.startswith("| `"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[cells[0].strip("`")] = cells[1]
        elif in_table and not line.startswith("|"):
            break
    return rows


def test_the_actions_inputs_and_outputs_are_documented_as_declared() -> None:
    inputs = action_readme_table("input")
    assert {name: cell.startswith("yes") for name, cell in inputs.items()} == action_yml_names(
        "inputs"
    )
    assert set(action_readme_table("output")) == set(action_yml_names("outputs"))


def test_the_actions_policy_example_loads() -> None:
    blocks = [
        body for s in sections("action/README.md") for _, lang, body in s.fences if lang == "toml"
    ]
    assert len(blocks) == 1
    policies, problems = parse_policy_file("README.md", blocks[0], DEFAULT_ISSUERS)
    assert problems == []
    assert len(policies) == 1


# -- HTTP endpoints --------------------------------------------------------------------

ENDPOINT = re.compile(r"(GET|POST|PUT|PATCH|DELETE) (?:\{url\})?(/\S*)")
CURL = re.compile(r"curl .*?-X (GET|POST|PUT|PATCH|DELETE) .*?https?://[^/\s]+(/[^\s'\"]*)")


def documented_endpoints() -> list[tuple[str, str, str]]:
    """(where, method, path) of every endpoint the docs name, in prose or in a curl -X."""
    found = []
    for doc in DOCS:
        for section in sections(doc):
            for number, span in section.spans:
                if match := ENDPOINT.match(span):
                    found.append((f"{doc}:{number}", match.group(1), match.group(2)))
            for number, line in joined(section.code):
                if match := CURL.search(line):
                    found.append((f"{doc}:{number}", match.group(1), match.group(2)))
    return found


def test_every_documented_endpoint_is_served(tmp_path: Path) -> None:
    from trustpub.registry.configs import ConfigsAPI, GitHubLookup, OwnerConfigSettings

    registry = Registry(tmp_path, "http://localhost:8080")
    configs = OwnerConfigSettings()
    api = ConfigsAPI(registry, DEFAULT_ISSUERS, configs, GitHubLookup(configs))
    routes = [*ROUTES, *registry.routes, *api.routes]
    endpoints = documented_endpoints()
    assert ("README.md", "PATCH", "/api/v1/crates/mylib") in {
        (where.split(":")[0], method, path) for where, method, path in endpoints
    }
    for where, method, path in endpoints:
        scope = {"type": "http", "method": method, "path": path, "root_path": ""}
        assert any(route.matches(scope)[0] is Match.FULL for route in routes), (
            f"{where}: {method} {path} is not served"
        )


def test_the_http_api_table_lists_every_service_endpoint() -> None:
    section = next(s for s in sections("README.md") if s.heading == "## HTTP API")
    table = {match.groups() for _, span in section.spans if (match := ENDPOINT.fullmatch(span))}
    served = {
        (method, route.path)
        for route in ROUTES
        if isinstance(route, Route)
        for method in route.methods or ()
        if method != "HEAD"
    }
    assert table == served


# -- policies/README.md: the fields table and the ref patterns -------------------------

MINIMAL_POLICIES = {
    "github": {
        "name": '"p"',
        "provider": '"github"',
        "crates": '["octo-lib"]',
        "repository": '"octo-org/octo-lib"',
        "repository_owner_id": '"131804563"',
        "workflow": '"release.yml"',
    },
    "gitlab": {
        "name": '"p"',
        "provider": '"gitlab"',
        "crates": '["octo-lib"]',
        "project_path": '"octo-group/octo-lib"',
        "workflow": '".gitlab-ci.yml"',
    },
}


@dataclass(frozen=True)
class FieldRow:
    field: str  # job_workflow for [policy.job_workflow]
    providers: tuple[str, ...]
    required: bool
    meaning: str


def field_rows() -> list[FieldRow]:
    text = (ROOT / "policies" / "README.md").read_text()
    rows = []
    for line in text[text.index("## Fields") : text.index("### Ref patterns")].split("\n"):
        cells = [c.strip() for c in line.strip("|").split(" | ")]
        if line.startswith("| `") and cells[1] in ("both", "github", "gitlab"):
            name = cells[0].strip("`").removeprefix("[policy.").removesuffix("]")
            providers = ("github", "gitlab") if cells[1] == "both" else (cells[1],)
            rows.append(FieldRow(name, providers, cells[2] == "yes", cells[3]))
    return rows


def policy_toml(fields: dict[str, str]) -> str:
    lines = ["[[policy]]"] + [f"{k} = {v}" for k, v in fields.items() if k != "job_workflow"]
    if "job_workflow" in fields:
        lines += ["[policy.job_workflow]", fields["job_workflow"]]
    return "\n".join(lines) + "\n"


def policy_problems(fields: dict[str, str]) -> dict[str, str]:
    issuers = (*DEFAULT_ISSUERS,)
    _, problems = parse_policy_file("p.toml", policy_toml(fields), issuers)
    return {p.field or "": p.message for p in problems}


def test_the_fields_table_is_found() -> None:
    names = {row.field for row in field_rows()}
    assert {"name", "crates", "namespace_id", "job_workflow", "token_ttl"} <= names


@pytest.mark.parametrize("provider", ["github", "gitlab"])
def test_the_required_fields_are_exactly_those_documented(provider: str) -> None:
    minimal = MINIMAL_POLICIES[provider]
    documented = {r.field for r in field_rows() if r.required and provider in r.providers}
    assert documented == set(minimal)
    assert policy_problems(minimal) == {}
    for field in documented:
        fields = {k: v for k, v in minimal.items() if k != field}
        if field == "provider":
            continue  # without it the policy cannot be read at all; covered by the loader
        assert field in policy_problems(fields), f"{provider}: {field} is documented required"


@pytest.mark.parametrize("row", field_rows(), ids=lambda r: r.field)
def test_every_documented_field_is_known_to_its_providers_only(row: FieldRow) -> None:
    value = 'repository = "octo-org/shared"\nworkflow = "publish.yml"'
    for provider, minimal in MINIMAL_POLICIES.items():
        fields = {**minimal}
        fields.setdefault(row.field, value if row.field == "job_workflow" else '"x"')
        problem = policy_problems(fields).get(row.field, "")
        if provider in row.providers:
            assert not problem.startswith("unknown key"), f"{provider}: {row.field}: {problem}"
        else:
            assert problem.startswith("unknown key"), f"{provider}: {row.field}: {problem}"


def test_the_documented_token_ttls_operations_and_defaults_hold() -> None:
    rows = {row.field: row for row in field_rows()}
    minimal = MINIMAL_POLICIES["github"]
    (policy,), _ = parse_policy_file("p.toml", policy_toml(minimal), DEFAULT_ISSUERS)
    assert "default 30 minutes" in rows["token_ttl"].meaning
    assert policy.token_ttl == 30 * 60
    ttls = re.findall(r"`([^`]+)`", rows["token_ttl"].meaning)
    assert len(ttls) >= 4
    for ttl in ttls:  # written as TOML values: 900, "90s", ...
        assert policy_problems({**minimal, "token_ttl": ttl}) == {}, ttl
    operations = re.findall(r"`([^`]+)`", rows["operations"].meaning)
    assert set(operations) == {op.value for op in Operation}
    assert "`publish-update` (the default)" in rows["operations"].meaning
    assert policy.operations == {Operation.PUBLISH_UPDATE}


def ref_pattern_rows() -> list[tuple[str, list[str], list[str]]]:
    text = (ROOT / "policies" / "README.md").read_text()
    section = text[text.index("### Ref patterns") : text.index("### Several policies")]
    rows = []
    for line in section.split("\n"):
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("| `") and len(cells) == 3:
            pattern, matches, misses = (re.findall(r"`([^`]+)`", c) for c in cells)
            rows.append((pattern[0], matches, misses))
    return rows


@pytest.mark.parametrize(("pattern", "matches", "misses"), ref_pattern_rows())
def test_every_ref_pattern_example_matches_as_documented(
    pattern: str, matches: list[str], misses: list[str]
) -> None:
    compiled = RefPattern.compile(pattern)
    assert all(compiled.matches(ref) for ref in matches)
    assert not any(compiled.matches(ref) for ref in misses)


def test_the_characters_documented_as_refused_are_refused() -> None:
    text = (ROOT / "policies" / "README.md").read_text()
    assert "(`?` and `[` are refused)" in text
    assert "start with `refs/`" in text
    assert len(ref_pattern_rows()) >= 3
    for pattern in ("refs/tags/v?", "refs/tags/v[0-9]*", "tags/v*"):
        with pytest.raises(PatternError):
            RefPattern.compile(pattern)


# -- files and modules the docs name ---------------------------------------------------

PATH_SPAN = re.compile(r"(?:scripts/|\.ci/|tests/)[\w./-]*|[\w/.-]+\.md|[a-z]+/|[a-z]+\.py")


def test_every_file_the_docs_name_exists() -> None:
    named = []
    for doc in DOCS:
        base = (ROOT / doc).parent
        for section in sections(doc):
            for number, span in section.spans:
                if PATH_SPAN.fullmatch(span) and span != "refs/":  # refs/: a ref prefix
                    named.append((f"{doc}:{number}", base, span))
            for number, line in joined(section.code):
                named += [
                    (f"{doc}:{number}", ROOT, m) for m in re.findall(r"(?:scripts|\.ci)/\w+", line)
                ]
    assert len(named) >= 20
    for where, base, path in named:
        # A folder or module of the package (`oidc/`, `grants.py`), else a path in the
        # repository, relative to the document or to the root.
        candidates = [ROOT / "trustpub" / path, base / path, ROOT / path]
        assert any(c.exists() for c in candidates), f"{where}: {path} does not exist"
        if path.startswith(("scripts/", ".ci/")):
            assert (ROOT / path).stat().st_mode & 0o111, f"{where}: {path} is not executable"


def test_every_module_in_how_it_works_exists() -> None:
    section = next(s for s in sections("README.md") if s.heading == "## How it works")
    modules = {m for _, line in section.code for m in re.findall(r"\btrustpub\.\w+", line)}
    assert len(modules) >= 5
    for module in modules:
        importlib.import_module(module)


def test_the_token_formats_and_limits_are_documented_as_coded() -> None:
    text = " ".join((ROOT / "README.md").read_text().split())
    assert (
        f"Tokens look like `{token_format.PREFIX}` + {token_format.BODY_LENGTH} base62 "
        f"characters + a {token_format.CHECKSUM_LENGTH}-character checksum" in text
    )
    assert f"API tokens of registry users (`{USER_TOKEN_PREFIX}…`)" in text
    timeout = inspect.signature(KeySets).parameters["timeout"].default
    assert f"with a {timeout:g} s timeout" in text
    assert f"{Settings().jwt_leeway} s leeway" in text
