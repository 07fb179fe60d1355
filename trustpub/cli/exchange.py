"""``trustpub exchange``: trade a CI OIDC token for a registry token, outside the action.

For GitLab CI and other CI systems, and for local debugging. The OIDC token comes from
``--jwt``, from ``--from-env NAME``, from the GitHub Actions token-request variables, or
from ``$TRUSTPUB_ID_TOKEN`` (the variable name the GitLab example below declares).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO, TypeVar
from urllib.parse import quote

import httpx

from trustpub.config import audience_for
from trustpub.oidc.unverified import decode_unverified_claims

TOKENS_PATH = "/api/v1/trusted_publishing/tokens"
DEFAULT_ENV_VAR = "TRUSTPUB_ID_TOKEN"
ATTEMPTS = 3
OIDC_TIMEOUT = 10.0
EXCHANGE_TIMEOUT = 30.0

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


T = TypeVar("T")


class ExchangeFailed(Exception):
    """The command fails with this message (exit status 1)."""


class UsageError(Exception):
    """Bad arguments (exit status 2)."""


class _Transient(Exception):
    """A failure another attempt may fix (network error, 429, 5xx)."""


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "exchange",
        help="exchange a CI OIDC token for a registry token (GitLab CI, other CI, debugging)",
        description=(
            "Exchange a CI OIDC token for a short-lived registry token and print it (or write "
            "it to a file or to cargo's credentials). The OIDC token comes from --jwt, "
            "--from-env NAME, the GitHub Actions variables (ACTIONS_ID_TOKEN_REQUEST_URL/"
            f"_TOKEN), or ${DEFAULT_ENV_VAR}, in that order."
        ),
        epilog=GITLAB_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--url",
        default=None,
        metavar="URL",
        help="the registry's base URL (default $TRUSTPUB_URL)",
    )
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
    parser.add_argument(
        "--cargo-home", metavar="DIR", help="cargo home (default $CARGO_HOME or ~/.cargo)"
    )
    parser.add_argument(
        "--explain",
        action="store_true",
        help="print the OIDC token's claims (unverified, to stderr) and the reason of a refusal",
    )
    parser.set_defaults(handler=run)


@dataclass(frozen=True, slots=True)
class Issued:
    token: str
    expires_at: str | None
    crates: Mapping[str, Any]


def run(args: argparse.Namespace) -> int:
    with httpx.Client(follow_redirects=False) as client:
        return execute(args, os.environ, client, sys.stdin, sys.stdout, sys.stderr, time.sleep)


def execute(
    args: argparse.Namespace,
    env: Mapping[str, str],
    client: httpx.Client,
    stdin: TextIO,
    out: TextIO,
    err: TextIO,
    sleep: Callable[[float], None],
) -> int:
    """The command with its world passed in (tests give a MockTransport client)."""
    try:
        url = (args.url or env.get("TRUSTPUB_URL") or "").rstrip("/")
        if not re.match(r"^https?://[^/?#]+", url):
            raise UsageError("--url: expected the registry's base URL (https://HOST)")
        audience = args.audience or audience_for(url)
        source = token_source(args, env, client, stdin, audience, sleep, err)
        issued = exchange(client, url, source, args.explain, err, sleep)
        deliver(issued, args, env, out)
        crates = ", ".join(sorted(issued.crates)) or "no crates"
        expiry = f", valid until {issued.expires_at}" if issued.expires_at else ""
        where = (
            f" (written to {args.output})"
            if args.output
            else (
                f" (stored for cargo registry {args.cargo_registry})" if args.cargo_registry else ""
            )
        )
        print(f"trustpub exchange: token for {crates}{expiry}{where}", file=err)
        return 0
    except UsageError as exc:
        print(f"trustpub exchange: {exc}", file=err)
        return 2
    except ExchangeFailed as exc:
        print(f"trustpub exchange: {exc}", file=err)
        return 1


# -- the OIDC token --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TokenSource:
    """Where OIDC tokens come from; ``fresh`` when each call yields a new one."""

    describe: str
    get: Callable[[], str]
    fresh: bool


def token_source(
    args: argparse.Namespace,
    env: Mapping[str, str],
    client: httpx.Client,
    stdin: TextIO,
    audience: str,
    sleep: Callable[[float], None],
    err: TextIO,
) -> TokenSource:
    if args.jwt is not None:
        value = stdin.read().strip() if args.jwt == "-" else args.jwt.strip()
        if not value:
            raise UsageError("--jwt: empty token")
        return TokenSource("--jwt", lambda: value, fresh=False)
    if args.from_env is not None:
        return TokenSource(f"${args.from_env}", _from_env(env, args.from_env), fresh=False)
    request_url = env.get("ACTIONS_ID_TOKEN_REQUEST_URL")
    request_token = env.get("ACTIONS_ID_TOKEN_REQUEST_TOKEN")
    if request_url and request_token:
        return TokenSource(
            "GitHub Actions",
            lambda: request_github_token(client, request_url, request_token, audience, sleep, err),
            fresh=True,
        )
    if env.get(DEFAULT_ENV_VAR):
        return TokenSource(f"${DEFAULT_ENV_VAR}", _from_env(env, DEFAULT_ENV_VAR), fresh=False)
    raise UsageError(
        "no OIDC token: pass --jwt or --from-env NAME; on GitHub Actions give the job "
        "`permissions: id-token: write`; on GitLab CI declare `id_tokens: "
        f"{DEFAULT_ENV_VAR}: aud: {audience}` (see --help)"
    )


def _from_env(env: Mapping[str, str], name: str) -> Callable[[], str]:
    value = env.get(name, "").strip()
    if not value:
        raise UsageError(
            f"${name} is empty or not set (GitLab: declare it under id_tokens with "
            "aud: the registry URL without its scheme)"
        )
    return lambda: value


def request_github_token(
    client: httpx.Client,
    request_url: str,
    request_token: str,
    audience: str,
    sleep: Callable[[float], None],
    err: TextIO,
) -> str:
    """The Actions token-request protocol: GET URL&audience=AUD with the request token."""
    # The runner's URL already carries ?api-version=...: append, never replace, the query
    # (httpx's params= would drop it).
    separator = "&" if "?" in request_url else "?"
    url = f"{request_url}{separator}audience={quote(audience, safe='')}"

    def attempt() -> str:
        response = _send(
            client,
            "GET",
            url,
            headers={"Authorization": f"bearer {request_token}"},
            timeout=OIDC_TIMEOUT,
        )
        value = _json(response).get("value")
        if response.status_code != 200 or not isinstance(value, str) or not value:
            raise ExchangeFailed(
                f"the GitHub Actions OIDC token request was refused: HTTP {response.status_code}"
            )
        return value

    return _retrying("OIDC token request", attempt, sleep, err)


# -- the exchange ----------------------------------------------------------------------


def exchange(
    client: httpx.Client,
    url: str,
    source: TokenSource,
    explain: bool,
    err: TextIO,
    sleep: Callable[[float], None],
) -> Issued:
    explained = False

    def attempt() -> Issued:
        nonlocal explained
        jwt = source.get()
        if explain and not explained:
            explained = True
            print_claims(jwt, source.describe, err)
        try:
            response = _send(
                client, "POST", url + TOKENS_PATH, json={"jwt": jwt}, timeout=EXCHANGE_TIMEOUT
            )
        except _Transient as exc:
            # Only a fresh token can be retried: the registry may have seen this one,
            # and would refuse it as a replay.
            if not source.fresh:
                raise ExchangeFailed(
                    f"the exchange failed: {exc} (not retried: the registry may have seen "
                    "this OIDC token already)"
                ) from None
            raise
        body = _json(response)
        token = body.get("token")
        if response.status_code == 200 and isinstance(token, str) and token:
            expires_at = body.get("expires_at")
            crates = body.get("crates")
            return Issued(
                token,
                expires_at if isinstance(expires_at, str) else None,
                crates if isinstance(crates, dict) else {},
            )
        raise ExchangeFailed(refusal_message(url, response, body))

    return _retrying("token exchange", attempt, sleep, err)


def refusal_message(url: str, response: httpx.Response, body: Mapping[str, Any]) -> str:
    details = _error_details(body)
    if 300 <= response.status_code < 400:
        return (
            f"{url}{TOKENS_PATH} redirected (HTTP {response.status_code}); "
            "use the final URL as --url"
        )
    if not details:
        return (
            f"{url}{TOKENS_PATH} answered HTTP {response.status_code} without an error "
            "message: is --url the base URL of a trustpub registry?"
        )
    lines = [f"the registry refused the token (HTTP {response.status_code}):"]
    lines.extend(f"  - {d}" for d in details)
    return "\n".join(lines)


def _error_details(body: Mapping[str, Any]) -> list[str]:
    errors = body.get("errors")
    if isinstance(errors, list):
        return [
            e["detail"] for e in errors if isinstance(e, dict) and isinstance(e.get("detail"), str)
        ]
    message = body.get("message")
    return [message] if isinstance(message, str) else []


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


def print_claims(jwt: str, source: str, err: TextIO) -> None:
    claims = decode_unverified_claims(jwt)
    if claims is None:
        print(f"trustpub exchange: the OIDC token from {source} is not a JWT", file=err)
        return
    print(
        f"Claims of the OIDC token from {source}, decoded WITHOUT verifying its signature "
        "(a debugging aid; the registry verifies it):",
        file=err,
    )
    width = max((len(name) for name in claims), default=0)
    for name in sorted(claims):
        value = claims[name]
        shown = value if isinstance(value, str) else json.dumps(value)
        if name in _TIME_CLAIMS:
            shown += _utc_suffix(value)
        print(f"  {name.ljust(width)}  {shown}", file=err)
    job, caller = claims.get("job_workflow_ref"), claims.get("workflow_ref")
    if isinstance(job, str) and isinstance(caller, str) and job != caller:
        print(
            f"  note: a reusable workflow ({job}) called by {caller}; policies match the "
            "calling workflow's file",
            file=err,
        )


# -- HTTP ------------------------------------------------------------------------------


def _send(client: httpx.Client, method: str, url: str, **kwargs: Any) -> httpx.Response:
    try:
        response = client.request(method, url, **kwargs)
    except httpx.TimeoutException:
        raise _Transient(f"no answer within {kwargs.get('timeout')} s") from None
    except httpx.TransportError as exc:
        raise _Transient(f"network error: {type(exc).__name__}: {exc}") from None
    if response.status_code == 429 or response.status_code >= 500:
        details = "; ".join(_error_details(_json(response)))
        raise _Transient(f"HTTP {response.status_code}" + (f" ({details})" if details else ""))
    return response


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _retrying(
    what: str, attempt: Callable[[], T], sleep: Callable[[float], None], err: TextIO
) -> T:
    for number in range(1, ATTEMPTS + 1):
        try:
            return attempt()
        except _Transient as exc:
            if number == ATTEMPTS:
                raise ExchangeFailed(f"{what} failed after {ATTEMPTS} attempts: {exc}") from None
            delay = float(2 ** (number - 1))
            print(
                f"trustpub exchange: {what}: {exc}; retrying in {delay:.0f} s",
                file=err,
            )
            sleep(delay)
    raise AssertionError("unreachable")


# -- delivering the token --------------------------------------------------------------


def deliver(issued: Issued, args: argparse.Namespace, env: Mapping[str, str], out: TextIO) -> None:
    if args.output:
        write_private(Path(args.output), issued.token + "\n")
    elif args.cargo_registry:
        home = Path(args.cargo_home or env.get("CARGO_HOME") or Path.home() / ".cargo")
        store_cargo_token(home, args.cargo_registry, issued.token)
    else:
        # The one place the token is printed: stdout, on request, for a pipe or $(...).
        print(issued.token, file=out)


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only, also when it exists."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        # An existing file keeps its mode through O_CREAT: tighten it before writing.
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode("utf-8"))
    finally:
        os.close(fd)


_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def store_cargo_token(cargo_home: Path, registry: str, token: str) -> Path:
    """Set ``[registries.NAME] token`` in ``credentials.toml``, keeping every other entry."""
    if not _BARE_KEY.match(registry):
        raise UsageError(f"--cargo-registry: {registry!r} is not a cargo registry name")
    import tomllib

    path = cargo_home / "credentials.toml"
    data: dict[str, Any] = {}
    if path.exists():
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ExchangeFailed(f"cannot read {path}: {exc}") from None
    registries = data.setdefault("registries", {})
    if not isinstance(registries, dict):
        raise ExchangeFailed(f"{path}: `registries` is not a table")
    entry = registries.setdefault(registry, {})
    if not isinstance(entry, dict):
        raise ExchangeFailed(f"{path}: `registries.{registry}` is not a table")
    entry["token"] = token
    try:
        text = _toml(data)
    except TypeError as exc:
        raise ExchangeFailed(f"{path}: cannot rewrite it safely ({exc}); edit it by hand") from None
    cargo_home.mkdir(parents=True, exist_ok=True)
    write_private(path, text)
    return path


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.match(key) else json.dumps(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        # JSON string escapes are valid TOML basic-string escapes for these characters.
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list) and not any(isinstance(v, dict) for v in value):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"unsupported value of type {type(value).__name__}")


def _toml(data: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> str:
    """A minimal TOML writer for cargo's credentials file (tables, strings, arrays)."""
    lines: list[str] = []
    tables: list[tuple[str, Mapping[str, Any]]] = []
    for key, value in data.items():
        if isinstance(value, dict):
            tables.append((key, value))
        else:
            lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
    chunks = []
    if lines or (prefix and not tables):
        header = [f"[{'.'.join(_toml_key(k) for k in prefix)}]"] if prefix else []
        chunks.append("\n".join(header + lines) + "\n")
    for key, table in tables:
        chunks.append(_toml(table, (*prefix, key)))
    return "\n".join(chunks)
