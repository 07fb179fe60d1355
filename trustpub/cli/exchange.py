"""``trustpub exchange``: trade a CI OIDC token for a registry token, outside the action.

For GitLab CI and other CI systems, and for local debugging. The OIDC token comes from
``--jwt``, from ``--from-env NAME``, from the GitHub Actions token-request variables, or
from ``$TRUSTPUB_ID_TOKEN`` (the variable name the GitLab example below declares).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from trustpub import cargo
from trustpub.cli import add_command, remote
from trustpub.cli.console import Console, failed, usage_error
from trustpub.client import Client, IssuedToken, request_actions_token
from trustpub.config import audience_for
from trustpub.oidc.unverified import decode_unverified_claims

DEFAULT_ENV_VAR = "TRUSTPUB_ID_TOKEN"

GITLAB_EXAMPLE = """\
GitLab CI (.gitlab-ci.yml):

  publish:
    image: rust:latest
    rules:
      - if: $CI_COMMIT_TAG
    environment: release
    id_tokens:
      TRUSTPUB_ID_TOKEN:            # read by trustpub exchange by default
        aud: registry.example       # the registry URL without its scheme
    script:
      # The Rust image has no pip: install trustpub into a virtual environment.
      - apt-get update && apt-get install -y --no-install-recommends python3-venv
      - python3 -m venv /opt/trustpub && export PATH="/opt/trustpub/bin:$PATH"
      - pip install "trustpub @ git+https://<your-trustpub-repository>"
      - trustpub exchange --url https://registry.example --cargo-registry my-registry
      - cargo publish --registry my-registry

  with a policy on the registry such as:

  [[policy]]
  name = "release"
  provider = "gitlab"
  crates = ["my-crate"]
  project_path = "my-group/my-crate"
  workflow = ".gitlab-ci.yml"
  environment = "release"
"""


EXCHANGE = f"""exchange a CI OIDC token for a registry token (GitLab CI, other CI, debugging)

Exchange a CI OIDC token for a short-lived registry token and print it (or write it
to a file or to cargo's credentials). The OIDC token comes from --jwt, --from-env
NAME, the GitHub Actions variables (ACTIONS_ID_TOKEN_REQUEST_URL/_TOKEN), or
${DEFAULT_ENV_VAR}, in that order.
"""


def register(subparsers: Any) -> None:
    parser = add_command(
        subparsers,
        "exchange",
        EXCHANGE,
        epilog=GITLAB_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    remote.add_url_argument(parser)
    parser.add_argument(
        "--audience",
        metavar="AUD",
        help="audience to request from GitHub Actions (default: the URL without its scheme)",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--jwt", metavar="JWT", help="the OIDC token itself; '-' reads it from standard input"
    )
    source.add_argument(
        "--from-env",
        metavar="NAME",
        help=f"read the OIDC token from this variable (GitLab id_tokens; {DEFAULT_ENV_VAR})",
    )
    target = parser.add_mutually_exclusive_group()
    target.add_argument(
        "--output", metavar="FILE", help="write the token to FILE (mode 0600) instead of stdout"
    )
    target.add_argument(
        "--cargo-registry",
        metavar="NAME",
        help="store the token for cargo registry NAME in $CARGO_HOME/credentials.toml",
    )
    remote.add_cargo_home_argument(parser)
    parser.add_argument(
        "--explain",
        action="store_true",
        help="print the OIDC token's claims (unverified, to stderr) and the reason of a refusal",
    )
    parser.set_defaults(handler=remote.handler(execute))


def execute(args: argparse.Namespace, console: Console, world: remote.World) -> int:
    env = world.env
    url = remote.server_url(args.url, env)
    if args.cargo_registry:
        # Checked before the exchange: a token that cannot be stored is wasted.
        try:
            cargo.check_registry_name(args.cargo_registry)
        except ValueError as exc:
            raise usage_error(f"--cargo-registry: {exc}") from None
    audience = args.audience or audience_for(url)
    client = Client(url, world.http, sleep=world.sleep, notify=console.note)
    source = token_source(args, console, world, audience)
    jwt = explaining(source, console) if args.explain else source.get
    with remote.reporting_client_errors():
        issued = client.exchange(jwt, fresh=source.fresh)
    deliver(issued, args, env, console)
    crates = ", ".join(sorted(issued.crates)) or "no crates"
    expiry = f", valid until {issued.expires_at}" if issued.expires_at else ""
    where = ""
    if args.output:
        where = f" (written to {args.output})"
    elif args.cargo_registry:
        where = f" (stored for cargo registry {args.cargo_registry})"
    console.note(f"token for {crates}{expiry}{where}")
    return 0


# -- the OIDC token --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TokenSource:
    """Where OIDC tokens come from; ``fresh`` when each call yields a new one."""

    describe: str
    get: Callable[[], str]
    fresh: bool


def token_source(
    args: argparse.Namespace, console: Console, world: remote.World, audience: str
) -> TokenSource:
    env = world.env
    if args.jwt is not None:
        value = console.stdin.read().strip() if args.jwt == "-" else args.jwt.strip()
        if not value:
            raise usage_error("--jwt: empty token")
        return TokenSource("--jwt", lambda: value, fresh=False)
    if args.from_env is not None:
        return TokenSource(f"${args.from_env}", _from_env(env, args.from_env), fresh=False)
    request_url = env.get("ACTIONS_ID_TOKEN_REQUEST_URL")
    request_token = env.get("ACTIONS_ID_TOKEN_REQUEST_TOKEN")
    if request_url and request_token:

        def from_actions() -> str:
            with remote.reporting_client_errors():
                return request_actions_token(
                    world.http,
                    request_url,
                    request_token,
                    audience,
                    sleep=world.sleep,
                    notify=console.note,
                )

        return TokenSource("GitHub Actions", from_actions, fresh=True)
    if env.get(DEFAULT_ENV_VAR):
        return TokenSource(f"${DEFAULT_ENV_VAR}", _from_env(env, DEFAULT_ENV_VAR), fresh=False)
    raise usage_error(
        "no OIDC token: pass --jwt or --from-env NAME; on GitHub Actions give the job "
        "`permissions: id-token: write`; on GitLab CI declare `id_tokens: "
        f"{DEFAULT_ENV_VAR}: aud: {audience}` (see --help)"
    )


def _from_env(env: Mapping[str, str], name: str) -> Callable[[], str]:
    value = env.get(name, "").strip()
    if not value:
        raise usage_error(
            f"${name} is empty or not set (GitLab: declare it under id_tokens with "
            "aud: the registry URL without its scheme)"
        )
    return lambda: value


def explaining(source: TokenSource, console: Console) -> Callable[[], str]:
    """``source.get`` that prints the claims of the first token it yields."""
    explained = False

    def get() -> str:
        nonlocal explained
        jwt = source.get()
        if not explained:
            explained = True
            print_claims(jwt, source.describe, console)
        return jwt

    return get


_TIME_CLAIMS = frozenset({"exp", "iat", "nbf", "auth_time"})


def _utc_suffix(value: object) -> str:
    """`` (2026-02-01 10:30:59 UTC)`` for a NumericDate, or nothing for anything else."""
    # bool is an int to Python, not a time to a reader.
    if not isinstance(value, int | float) or isinstance(value, bool):
        return ""
    try:
        when = datetime.fromtimestamp(value, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return ""
    return f" ({when:%Y-%m-%d %H:%M:%S} UTC)"


def print_claims(jwt: str, source: str, console: Console) -> None:
    claims = decode_unverified_claims(jwt)
    if claims is None:
        console.note(f"the OIDC token from {source} is not a JWT")
        return
    console.raw_err(
        f"Claims of the OIDC token from {source}, decoded WITHOUT verifying its signature "
        "(a debugging aid; the registry verifies it):"
    )
    width = max((len(name) for name in claims), default=0)
    for name in sorted(claims):
        value = claims[name]
        shown = value if isinstance(value, str) else json.dumps(value)
        if name in _TIME_CLAIMS:
            shown += _utc_suffix(value)
        console.raw_err(f"  {name.ljust(width)}  {shown}")
    job, caller = claims.get("job_workflow_ref"), claims.get("workflow_ref")
    if isinstance(job, str) and isinstance(caller, str) and job != caller:
        console.raw_err(
            f"  note: a reusable workflow ({job}) called by {caller}; policies match the "
            "calling workflow's file"
        )


# -- delivering the token --------------------------------------------------------------


def deliver(
    issued: IssuedToken, args: argparse.Namespace, env: Mapping[str, str], console: Console
) -> None:
    try:
        if args.output:
            cargo.write_private(Path(args.output), issued.token + "\n")
        elif args.cargo_registry:
            home = cargo.cargo_home(args.cargo_home, env)
            cargo.store_token(home, args.cargo_registry, issued.token)
        else:
            # The one place the token is printed: stdout, on request, for a pipe or $(...).
            console.out(issued.token)
    except OSError as exc:
        raise failed(f"cannot write the token: {exc.strerror}: {exc.filename}") from None
    except cargo.CredentialsError as exc:
        raise failed(str(exc)) from None
