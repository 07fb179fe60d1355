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
import sys
from collections.abc import Mapping, Sequence
from typing import Any, TextIO
from urllib.parse import urlsplit

import jwt

from trustpub.config import load_settings
from trustpub.durations import parse_duration
from trustpub.errors import ConfigurationError, InvalidJWT, PolicyLoadError
from trustpub.oidc.issuers import DEFAULT_ISSUERS, PROVIDER_KINDS, Issuer
from trustpub.policies import (
    DEFAULT_POLICY_DIR,
    Policy,
    PolicySet,
    load_policies,
)
from trustpub.providers import PROVIDERS, FieldCheck, UnverifiedClaims, build_grant, evaluate
from trustpub.text import fold

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2

UNVERIFIED_NOTE = (
    "NOTE: these claims were decoded WITHOUT verifying any signature, audience or expiry.\n"
    "This is a debugging aid: it shows how the policies would judge these claims if the\n"
    "token were genuine; it proves nothing about the token itself."
)


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "policy",
        help="check policy files, or explain how a token's claims would be matched",
        description="Work with trust-policy files.",
    )
    parser.set_defaults(handler=lambda args: _help(parser))
    commands = parser.add_subparsers(dest="policy_command", metavar="SUBCOMMAND")

    check = commands.add_parser(
        "check",
        help="validate a policy directory",
        description=(
            "Load every *.toml file directly in DIR as the service would, print every "
            "problem (file: policy: field: message), and exit 1 if there is any."
        ),
    )
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

    explain = commands.add_parser(
        "explain",
        help="show, field by field, how the policies judge a claim set (unverified)",
        description=(
            "Decode a JWT's claims WITHOUT verification (or read them from a JSON file) "
            "and show which fields of each candidate policy match, and the verdict the "
            "exchange would give. Exit 0 if it would grant, 1 if it would refuse, 2 if "
            "the input or the policies cannot be read."
        ),
    )
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
            "a configured issuer, e.g. github=https://ghe.example.com/_services/token; "
            "repeat for several; when given, they replace the defaults "
            f"({', '.join(i.url for i in DEFAULT_ISSUERS)})"
        ),
    )


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return EXIT_USAGE


def resolve(args: argparse.Namespace) -> tuple[tuple[Issuer, ...], str, int]:
    """Issuers, policy directory and maximum token lifetime: from the command line,
    else from the service's configuration (``--config`` or ``$TRUSTPUB_CONFIG``, and
    ``TRUSTPUB_*`` variables, exactly as ``trustpub serve`` reads them)."""
    settings = load_settings(args.config)
    issuers = parse_issuers(args.issuer) if args.issuer else settings.issuers
    directory = args.directory if args.directory is not None else str(settings.policy_dir)
    max_ttl = args.max_ttl if args.max_ttl is not None else settings.max_token_ttl
    return issuers, directory, max_ttl


def parse_issuers(values: Sequence[str]) -> tuple[Issuer, ...]:
    """``KIND=URL`` options as issuers; none given means the defaults."""
    if not values:
        return DEFAULT_ISSUERS
    issuers: list[Issuer] = []
    for value in values:
        kind, sep, url = value.partition("=")
        if not sep or kind not in PROVIDER_KINDS:
            raise ConfigurationError(
                f"--issuer {value!r}: expected KIND=URL with KIND one of "
                f"{', '.join(PROVIDER_KINDS)}"
            )
        # Plain http is only ever accepted for a loopback issuer; Issuer enforces that.
        development = urlsplit(url).scheme == "http"
        for known in PROVIDER_KINDS:
            if kind == known:
                issuers.append(Issuer(url, known, development=development))
    return tuple(issuers)


def _plural(count: int, word: str, plural: str) -> str:
    return f"{count} {word if count == 1 else plural}"


# -- check ----------------------------------------------------------------------------


def run_check(args: argparse.Namespace) -> int:
    out: TextIO = sys.stdout
    try:
        issuers, directory, max_ttl = resolve(args)
        policies = load_policies(directory, issuers)
    except PolicyLoadError as exc:
        for problem in exc.problems:
            print(problem, file=out)
        print(f"{_plural(len(exc.problems), 'problem', 'problems')} found", file=out)
        return EXIT_REFUSED
    except ConfigurationError as exc:
        print(f"error: {exc.detail}", file=sys.stderr)
        return EXIT_USAGE
    for warning in check_warnings(policies, max_ttl):
        print(f"warning: {warning}", file=out)
    print(
        f"{_plural(len(policies), 'policy', 'policies')} in "
        f"{_plural(len(policies.files), 'file', 'files')} OK",
        file=out,
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


def _read_claims(args: argparse.Namespace) -> Mapping[str, object]:
    """The claims, unverified. Raises ValueError with a message that never holds the JWT."""
    if args.claims is not None:
        try:
            with open(args.claims, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot read claims from {args.claims}: {exc}") from None
    else:
        token = sys.stdin.read().strip() if args.jwt == "-" else args.jwt.strip()
        try:
            # Deliberately unverified: this command explains matching, it does not
            # authenticate. Every check is switched off explicitly so the intent is plain.
            data = jwt.decode(
                token,
                key="",
                algorithms=["RS256"],
                options={
                    "verify_signature": False,
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "verify_aud": False,
                    "verify_iss": False,
                    "verify_sub": False,
                    "verify_jti": False,
                    "require": [],
                },
            )
        except jwt.PyJWTError:
            # Never echo the token, not even in part.
            raise ValueError("cannot decode the JWT (is it a complete JWT?)") from None
    if not isinstance(data, dict):
        raise ValueError("the claims must be a JSON object")
    return data


def run_explain(args: argparse.Namespace) -> int:
    out: TextIO = sys.stdout
    try:
        issuers, directory, max_ttl = resolve(args)
        policies = load_policies(directory, issuers)
        claims = _read_claims(args)
    except PolicyLoadError as exc:
        print("error: the policies do not load:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_USAGE
    except (ConfigurationError, ValueError) as exc:
        message = exc.detail if isinstance(exc, ConfigurationError) else str(exc)
        print(f"error: {message}", file=sys.stderr)
        return EXIT_USAGE

    print(UNVERIFIED_NOTE, file=out)
    print(file=out)
    iss = claims.get("iss")
    issuer = next((i for i in issuers if i.url == iss), None)
    if issuer is None:
        shown = iss if isinstance(iss, str) else repr(iss)
        return _verdict_refused(out, f"Unsupported JWT issuer: {shown}")
    print(f"{'issuer:':<13}{issuer.url} ({issuer.provider})", file=out)
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
        print(f"{label + ':':<13}{value or '(none)'}", file=out)
    print(file=out)

    result = evaluate(policies, facts, issuer, args.namespace_pin)
    if result.candidates:
        count = _plural(len(result.candidates), "policy names", "policies name")
        print(f"{count} this repository:", file=out)
        for report in result.reports:
            print(file=out)
            state = "MATCH" if report.ok else "no match"
            print(f"policy {report.policy.id}: {state}", file=out)
            _print_table(out, report.checks)
    elif not (facts.event and PROVIDERS[issuer.provider].refused_event(facts)):
        _print_neighbours(out, policies, issuer, facts.repository)
    print(file=out)
    if result.refusal is not None:
        return _verdict_refused(out, result.refusal)
    grant = build_grant(result.matched, facts, max_ttl=max_ttl)
    print("verdict: GRANTED (if the token is genuine)", file=out)
    for crate, operations in grant.crates.items():
        print(f"  crate {crate}: {', '.join(sorted(operations))}", file=out)
    print(f"  token lifetime: {grant.ttl_seconds} s", file=out)
    print(f"  policies: {', '.join(grant.policies)}", file=out)
    if issuer.provider == "gitlab" and args.namespace_pin is None:
        unpinned = [p for p in result.matched if p.namespace_id is None]
        if unpinned:
            print(
                f"  note: namespace id {facts.owner_id} would be pinned for this project "
                "on the first successful exchange",
                file=out,
            )
    return EXIT_OK


def _verdict_refused(out: TextIO, detail: str) -> int:
    print(f"verdict: REFUSED: {detail}", file=out)
    return EXIT_REFUSED


def _print_table(out: TextIO, checks: Sequence[FieldCheck]) -> None:
    rows = [("field", "expected", "got", "result")]
    rows += [(c.field, c.expected, c.got, "ok" if c.ok else "MISMATCH") for c in checks]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        cells = [row[i].ljust(widths[i]) for i in range(3)]
        print(f"  {'  '.join(cells)}  {row[3]}", file=out)


def _owner_of(repository: str) -> str:
    """GitHub owner or GitLab namespace: everything before the last `/`."""
    return fold(repository.rpartition("/")[0])


def _print_neighbours(out: TextIO, policies: PolicySet, issuer: Issuer, repository: str) -> None:
    print(f"No policy for issuer {issuer.url} names repository `{repository}`.", file=out)
    owner = _owner_of(repository)
    same_owner: list[Policy] = [
        p for p in policies if p.issuer == issuer.url and _owner_of(p.repository) == owner
    ]
    if same_owner:
        print(f"Policies for other repositories of `{owner}` with this issuer:", file=out)
        for policy in same_owner:
            print(f"  {policy.id}: {policy.repository}", file=out)
    others = [p for p in policies if p.issuer != issuer.url and p.key[1] == fold(repository)]
    for policy in others:
        print(
            f"Policy {policy.id} names this repository but is bound to issuer "
            f"{policy.issuer}, not {issuer.url}.",
            file=out,
        )
