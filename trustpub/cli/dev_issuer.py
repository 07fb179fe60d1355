"""``trustpub dev-issuer``: a local OIDC issuer for tests, the demo and policy trials."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from trustpub.oidc.issuers import PROVIDER_KINDS, is_loopback_host

if TYPE_CHECKING:
    from trustpub.devissuer import DevIssuer

DEFAULT_LISTEN = "127.0.0.1:8090"


class UsageError(Exception):
    """A bad flag or file; the message is printed as is."""


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "dev-issuer",
        help="run a local OIDC issuer that mints CI-shaped tokens (development only)",
        description=(
            "Run a local OIDC issuer: discovery, JWKS, and the GitHub Actions token-request "
            "protocol, minting GitHub- or GitLab-shaped RS256 tokens from realistic default "
            "claims with overrides. For tests, demos and trying a policy before pushing; "
            "trustpub trusts it only when configured as a development issuer."
        ),
    )
    parser.add_argument(
        "--listen",
        default=DEFAULT_LISTEN,
        metavar="HOST:PORT",
        help=f"address to listen on (default {DEFAULT_LISTEN}; port 0 picks a free one)",
    )
    parser.add_argument(
        "--provider", choices=PROVIDER_KINDS, default="github", help="token shape (default github)"
    )
    parser.add_argument(
        "--key",
        metavar="FILE",
        help="PEM RSA private key; created (mode 0600) if missing. Default: a new key per run",
    )
    parser.add_argument("--kid", help="key id (default: the key's RFC 7638 thumbprint)")
    parser.add_argument(
        "--claims", metavar="FILE.json", help="JSON object of claim overrides (null removes one)"
    )
    parser.add_argument(
        "--claim",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override one claim with a string; NAME:=JSON for another type (repeatable)",
    )
    parser.add_argument(
        "--request-token",
        metavar="TOKEN",
        help="the secret clients must send as 'Authorization: bearer' (default: random)",
    )
    parser.add_argument(
        "--lifetime", type=int, default=300, metavar="SECONDS", help="token lifetime (300)"
    )
    parser.add_argument(
        "--url",
        metavar="URL",
        help="issuer URL placed in 'iss' (default http://HOST:PORT from --listen)",
    )
    parser.add_argument(
        "--allow-non-loopback",
        action="store_true",
        help="listen on a non-loopback address (anyone who can reach it may mint tokens)",
    )
    parser.add_argument(
        "--print-token",
        action="store_true",
        help="print one minted token to stdout and exit (needs --audience; no server)",
    )
    parser.add_argument("--audience", metavar="AUD", help="audience for --print-token")
    parser.set_defaults(handler=run)


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise UsageError(f"--listen: expected HOST:PORT, got {value!r}")
    return host, int(port)


def parse_claims(claims_file: str | None, claim_args: list[str]) -> dict[str, Any]:
    """Overrides from the JSON file, then from each ``--claim`` in order."""
    overrides: dict[str, Any] = {}
    if claims_file is not None:
        try:
            loaded = json.loads(Path(claims_file).read_text(encoding="utf-8"))
        except OSError as exc:
            raise UsageError(f"--claims {claims_file}: cannot read: {exc.strerror}") from None
        except ValueError as exc:
            raise UsageError(f"--claims {claims_file}: invalid JSON: {exc}") from None
        if not isinstance(loaded, dict):
            raise UsageError(f"--claims {claims_file}: expected a JSON object")
        overrides.update(loaded)
    for item in claim_args:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise UsageError(f"--claim: expected NAME=VALUE or NAME:=JSON, got {item!r}")
        if name.endswith(":"):
            try:
                overrides[name[:-1]] = json.loads(value)
            except ValueError as exc:
                raise UsageError(f"--claim {name[:-1]}: invalid JSON: {exc}") from None
        else:
            overrides[name] = value
    return overrides


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args, sys.stdout)
    except UsageError as exc:
        print(f"trustpub dev-issuer: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace, out: TextIO) -> int:
    from trustpub.devissuer import DevIssuer, generate_key, load_key, save_key
    from trustpub.devissuer.server import bind, serve_forever, url_for

    host, port = parse_listen(args.listen)
    # A dev issuer signs whatever it is asked to: reachable from elsewhere, it would
    # hand out tokens to anyone on the network. Loopback only unless explicitly told.
    if not is_loopback_host(host) and not args.allow_non_loopback:
        raise UsageError(
            f"refusing to listen on {host}, which is not a loopback address: anyone who "
            "can reach it could mint tokens. Use 127.0.0.1, or pass --allow-non-loopback."
        )
    if args.lifetime <= 0:
        raise UsageError("--lifetime must be positive")
    overrides = parse_claims(args.claims, args.claim)

    key_note = "a new key for this run"
    if args.key is None:
        key = generate_key()
    elif Path(args.key).exists():
        try:
            key = load_key(args.key)
        except (OSError, ValueError) as exc:
            raise UsageError(f"--key {args.key}: {exc}") from None
        key_note = f"key from {args.key}"
    else:
        key = generate_key()
        try:
            save_key(key, args.key)
        except OSError as exc:
            raise UsageError(f"--key {args.key}: cannot create: {exc.strerror}") from None
        key_note = f"new key saved to {args.key}"

    issuer_args: dict[str, Any] = {
        "key": key,
        "kid": args.kid,
        "provider": args.provider,
        "claims_overrides": overrides,
        "request_token": args.request_token,
        "lifetime": args.lifetime,
    }
    if args.print_token:
        if not args.audience:
            raise UsageError("--print-token needs --audience")
        issuer = DevIssuer(args.url or url_for(host, port), **issuer_args)
        print(issuer.mint(args.audience), file=out)
        return 0

    try:
        sock = bind(host, port)
    except OSError as exc:
        raise UsageError(f"cannot listen on {args.listen}: {exc.strerror}") from None
    issuer = DevIssuer(args.url or url_for(host, sock.getsockname()[1]), **issuer_args)
    out.write(banner(issuer, key_note))
    out.flush()
    try:
        serve_forever(issuer, sock)
    finally:
        sock.close()
    return 0


def banner(issuer: DevIssuer, key_note: str) -> str:
    """What to do with a running dev issuer, printed at start."""
    url = issuer.url
    quote = shlex.quote
    return f"""\
trustpub dev-issuer: issuer {url} ({issuer.provider}-shaped tokens, kid {issuer.kid}, {key_note})
DEVELOPMENT ONLY: whoever holds the request token can mint tokens from this issuer.

Trust it in trustpub (it accepts a plain-http loopback issuer only when marked development):
  TRUSTPUB_ISSUERS={quote(f"{issuer.provider}={url}+dev")} trustpub serve
  or in the configuration file:
    [[issuers]]
    url = "{url}"
    provider = "{issuer.provider}"
    development = true

Point the action (or anything speaking the Actions token-request protocol) at it:
  export ACTIONS_ID_TOKEN_REQUEST_URL={quote(issuer.token_request_url)}
  export ACTIONS_ID_TOKEN_REQUEST_TOKEN={quote(issuer.request_token)}

Mint one token with claim overrides:
  curl -s -H "Authorization: bearer $ACTIONS_ID_TOKEN_REQUEST_TOKEN" \\
    -d '{{"ref": "refs/tags/v1.0.0"}}' {quote(url + "/mint?audience=localhost:8080")}

"""
