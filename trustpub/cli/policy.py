"""``trustpub policy``: check a policy directory, explain how claims would be judged.

    trustpub policy check [DIR] [--issuer KIND=URL ...] [--max-ttl TTL]
    trustpub policy explain (--claims FILE | --jwt JWT) [DIR] [--issuer KIND=URL ...]

``explain`` decodes claims WITHOUT verifying a signature: it is a debugging aid that
shows, field by field, why policies accept or refuse a claim set, using the very rules
the exchange uses. It never prints the JWT.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from typing import Any

from trustpub.cli import add_command, help_handler
from trustpub.cli.console import EXIT_OK, EXIT_REFUSED, Console, usage_error
from trustpub.config import load_settings, parse_issuer_specs
from trustpub.durations import parse_duration
from trustpub.errors import InvalidJWT, PolicyLoadError
from trustpub.oidc.issuers import DEFAULT_ISSUERS, Issuer
from trustpub.oidc.unverified import decode_unverified_claims
from trustpub.policies import (
    DEFAULT_POLICY_DIR,
    Policy,
    PolicySet,
    load_policies,
)
from trustpub.providers import PROVIDERS, FieldCheck, UnverifiedClaims, build_grant, evaluate
from trustpub.text import fold

UNVERIFIED_NOTE = (
    "NOTE: these claims were decoded WITHOUT verifying any signature, audience or expiry.\n"
    "This is a debugging aid: it shows how the policies would judge these claims if the\n"
    "token were genuine; it proves nothing about the token itself."
)


POLICY = """check policy files, or explain how a token's claims would be matched

Work with trust-policy files.
"""

CHECK = """validate a policy directory

Load every *.toml file directly in DIR as the service would, print every problem
(file: policy: field: message), and exit 1 if there is any.
"""

EXPLAIN = """show, field by field, how the policies judge a claim set (unverified)

Decode a JWT's claims WITHOUT verification (or read them from a JSON file) and show
which fields of each candidate policy match, and the verdict the exchange would give.
Exit 0 if it would grant, 1 if it would refuse, 2 if the input or the policies cannot
be read.
"""


def register(subparsers: Any) -> None:
    parser = add_command(subparsers, "policy", POLICY)
    parser.set_defaults(handler=help_handler(parser))
    commands = parser.add_subparsers(dest="policy_command", metavar="COMMAND")

    check = add_command(commands, "check", CHECK)
    _common_arguments(check)
    check.add_argument(
        "--max-ttl",
        type=duration,
        metavar="TTL",
        help=(
            "the server's maximum token lifetime, in seconds or as a duration (6h), like "
            "max_token_ttl: warn about policies asking for more"
        ),
    )
    check.set_defaults(handler=run_check)

    explain = add_command(commands, "explain", EXPLAIN)
    source = explain.add_mutually_exclusive_group(required=True)
    source.add_argument("--claims", metavar="FILE", help="a JSON file holding the claims")
    source.add_argument(
        "--jwt", metavar="JWT", help="the JWT itself, or - to read it from standard input"
    )
    _common_arguments(explain)
    explain.add_argument(
        "--namespace-pin",
        metavar="ID",
        help="GitLab: act as if this namespace id were already pinned for the project",
    )
    explain.add_argument(
        "--max-ttl",
        type=duration,
        metavar="TTL",
        help="the server's maximum token lifetime, like --max-ttl of check (default: the "
        "configuration's)",
    )
    configs = explain.add_mutually_exclusive_group()
    configs.add_argument(
        "--owner-configs",
        action="store_true",
        help="also match the owner-managed configs of the registry in the configuration's "
        "data directory",
    )
    configs.add_argument(
        "--data-dir",
        metavar="DIR",
        help="also match the owner-managed configs of the registry in DIR/registry",
    )
    explain.set_defaults(handler=run_explain)


def duration(value: str) -> int:
    """``--max-ttl``: seconds (``3600``) or a duration (``"6h"``), as ``max_token_ttl``
    takes them in the configuration."""
    try:
        return parse_duration(int(value) if value.isdigit() else value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "directory",
        nargs="?",
        default=None,
        metavar="DIR",
        help=f"policy directory (default: the configuration's, else {DEFAULT_POLICY_DIR})",
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        help=(
            "the service's configuration file: its issuers, policy directory and maximum "
            "token lifetime are used"
        ),
    )
    parser.add_argument(
        "--issuer",
        action="append",
        default=[],
        metavar="KIND=URL",
        help=(
            "a configured issuer, e.g. github=https://ghe.example.com/_services/token "
            "(+dev after the URL of a local development issuer, as in TRUSTPUB_ISSUERS); "
            "repeat for several; when given, they replace the defaults "
            f"({', '.join(i.url for i in DEFAULT_ISSUERS)})"
        ),
    )


def resolve(args: argparse.Namespace) -> tuple[tuple[Issuer, ...], str, int]:
    """Issuers, policy directory and maximum token lifetime: from the command line,
    else from the service's configuration (``--config`` or ``$TRUSTPUB_CONFIG``, and
    ``TRUSTPUB_*`` variables, exactly as ``trustpub serve`` reads them)."""
    settings = load_settings(args.config)
    issuers = parse_issuers(args.issuer) if args.issuer else settings.issuers
    directory = args.directory if args.directory is not None else str(settings.policy_dir)
    max_ttl = args.max_ttl if args.max_ttl is not None else settings.max_token_ttl
    return issuers, directory, max_ttl


def with_owner_configs(
    args: argparse.Namespace, policies: PolicySet, issuers: Sequence[Issuer], out: Console
) -> PolicySet:
    """The file policies and the registry's configs, as the exchange matches them."""
    from pathlib import Path

    from trustpub.registry.configs import OwnerConfigs
    from trustpub.registry.db import RegistryDB, StorageUnavailable

    data_dir = Path(args.data_dir) if args.data_dir else load_settings(args.config).data_dir
    path = data_dir / "registry" / "registry.db"
    if not path.is_file():
        # A registry not created yet has no configs; said, so a mistyped path shows.
        out.warn(f"no registry database at {path}: no owner configs to match")
        return policies
    db = RegistryDB(path)
    try:
        db.open()
        _, rows = db.live_configs()
    except StorageUnavailable as exc:
        raise usage_error(f"cannot read the owner configs: {exc.reason}") from None
    finally:
        db.close()
    return OwnerConfigs(db, issuers).build(policies, rows)


def parse_issuers(values: Sequence[str]) -> tuple[Issuer, ...]:
    """``--issuer KIND=URL[+dev]`` options as issuers; none given means the defaults."""
    return parse_issuer_specs(values, "--issuer") if values else DEFAULT_ISSUERS


def _plural(count: int, word: str, plural: str) -> str:
    return f"{count} {word if count == 1 else plural}"


# -- check ----------------------------------------------------------------------------


def run_check(args: argparse.Namespace, console: Console) -> int:
    issuers, directory, max_ttl = resolve(args)
    try:
        policies = load_policies(directory, issuers)
    except PolicyLoadError as exc:
        # The problems are this command's result: on stdout, one a line.
        for problem in exc.problems:
            console.out(str(problem))
        console.out(f"{_plural(len(exc.problems), 'problem', 'problems')} found")
        return EXIT_REFUSED
    for warning in check_warnings(policies, max_ttl):
        console.out(f"warning: {warning}")
    console.out(
        f"{_plural(len(policies), 'policy', 'policies')} in "
        f"{_plural(len(policies.files), 'file', 'files')} OK"
    )
    return EXIT_OK


def check_warnings(policies: PolicySet, max_ttl: int | None) -> list[str]:
    """Valid but probably unintended: these do not fail the check."""
    warnings: list[str] = []
    for policy in policies:
        if max_ttl is not None and policy.token_ttl > max_ttl:
            warnings.append(
                f"{policy.file}: policy {policy.name}: token_ttl: {policy.token_ttl} s "
                f"exceeds the server maximum {max_ttl} s; tokens will live {max_ttl} s"
            )
    return warnings


# -- explain --------------------------------------------------------------------------


def _read_claims(args: argparse.Namespace, console: Console) -> Mapping[str, object]:
    """The claims, unverified. A usage error's message never holds the JWT."""
    if args.claims is not None:
        try:
            with open(args.claims, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, ValueError) as exc:
            raise usage_error(f"cannot read claims from {args.claims}: {exc}") from None
    else:
        token = console.stdin.read().strip() if args.jwt == "-" else args.jwt.strip()
        # Deliberately unverified: this command explains matching, it does not
        # authenticate.
        data = decode_unverified_claims(token)
        if data is None:
            # Never echo the token, not even in part.
            raise usage_error("cannot decode the JWT (is it a complete JWT?)")
    if not isinstance(data, dict):
        raise usage_error("the claims must be a JSON object")
    return data


def run_explain(args: argparse.Namespace, out: Console) -> int:
    issuers, directory, max_ttl = resolve(args)
    policies = load_policies(directory, issuers)
    if args.data_dir or args.owner_configs:
        policies = with_owner_configs(args, policies, issuers, out)
    claims = _read_claims(args, out)

    out.out(UNVERIFIED_NOTE)
    out.out()
    iss = claims.get("iss")
    issuer = next((i for i in issuers if i.url == iss), None)
    if issuer is None:
        shown = iss if isinstance(iss, str) else repr(iss)
        return _verdict_refused(out, f"Unsupported JWT issuer: {shown}")
    out.out(f"{'issuer:':<13}{issuer.url} ({issuer.provider})")
    try:
        facts = PROVIDERS[issuer.provider].read_facts(UnverifiedClaims(claims), issuer)
    except InvalidJWT as exc:
        return _verdict_refused(out, exc.detail)
    for label, value in (
        ("repository", facts.repository),
        ("owner id", facts.owner_id),
        ("workflow", facts.workflow),
        ("ref", facts.ref),
        ("environment", facts.environment),
        ("event", facts.event),
    ):
        out.out(f"{label + ':':<13}{value or '(none)'}")
    out.out()

    result = evaluate(policies, facts, issuer, args.namespace_pin)
    if result.candidates:
        count = _plural(len(result.candidates), "policy names", "policies name")
        out.out(f"{count} this repository:")
        for report in result.reports:
            out.out()
            state = "MATCH" if report.ok else "no match"
            out.out(f"policy {report.policy.id}: {state}")
            _print_table(out, report.checks)
    elif not (facts.event and PROVIDERS[issuer.provider].refused_event(facts)):
        _print_neighbours(out, policies, issuer, facts.repository)
    out.out()
    if result.refusal is not None:
        return _verdict_refused(out, result.refusal)
    grant = build_grant(result.matched, facts, max_ttl=max_ttl)
    out.out("verdict: GRANTED (if the token is genuine)")
    for crate, operations in grant.crates.items():
        out.out(f"  crate {crate}: {', '.join(sorted(operations))}")
    out.out(f"  token lifetime: {grant.ttl_seconds} s")
    out.out(f"  policies: {', '.join(grant.policies)}")
    if issuer.provider == "gitlab" and args.namespace_pin is None:
        unpinned = [p for p in result.matched if p.namespace_id is None]
        if unpinned:
            out.out(
                f"  note: namespace id {facts.owner_id} would be pinned for this project "
                "on the first successful exchange"
            )
    return EXIT_OK


def _verdict_refused(out: Console, detail: str) -> int:
    out.out(f"verdict: REFUSED: {detail}")
    return EXIT_REFUSED


def _print_table(out: Console, checks: Sequence[FieldCheck]) -> None:
    rows = [("field", "expected", "got", "result")]
    rows += [(c.field, c.expected, c.got, "ok" if c.ok else "MISMATCH") for c in checks]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        cells = [row[i].ljust(widths[i]) for i in range(3)]
        out.out(f"  {'  '.join(cells)}  {row[3]}")


def _owner_of(repository: str) -> str:
    """GitHub owner or GitLab namespace: everything before the last `/`."""
    return fold(repository.rpartition("/")[0])


def _print_neighbours(out: Console, policies: PolicySet, issuer: Issuer, repository: str) -> None:
    out.out(f"No policy for issuer {issuer.url} names repository `{repository}`.")
    owner = _owner_of(repository)
    same_owner: list[Policy] = [
        p for p in policies if p.issuer == issuer.url and _owner_of(p.repository) == owner
    ]
    if same_owner:
        out.out(f"Policies for other repositories of `{owner}` with this issuer:")
        for policy in same_owner:
            out.out(f"  {policy.id}: {policy.repository}")
    others = [p for p in policies if p.issuer != issuer.url and p.key[1] == fold(repository)]
    for policy in others:
        out.out(
            f"Policy {policy.id} names this repository but is bound to issuer "
            f"{policy.issuer}, not {issuer.url}."
        )
