"""``trustpub dev-issuer``: a local OIDC issuer for tests, the demo and policy trials."""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from trustpub.cli import add_command
from trustpub.cli.console import Console, failed, usage_error
from trustpub.config import issuer_spec, parse_host_port
from trustpub.oidc.issuers import PROVIDER_KINDS, is_loopback_host

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import rsa

    from trustpub.devissuer import DevIssuer

DEFAULT_LISTEN = "127.0.0.1:8090"


DEV_ISSUER = """run a local OIDC issuer that mints CI-shaped tokens (development only)

Run a local OIDC issuer: discovery, JWKS, and the GitHub Actions token-request protocol,
minting GitHub- or GitLab-shaped RS256 tokens from realistic default claims with
overrides. For tests, demos and trying a policy before pushing; trustpub trusts it only
when configured as a development issuer.
"""


def register(subparsers: Any) -> None:
    parser = add_command(subparsers, "dev-issuer", DEV_ISSUER)
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
        help=(
            "PEM RSA private key; the server creates it (mode 0600) if missing. Default for "
            "the server: a new key per run, kept in memory. --print-token needs the FILE of "
            "the running dev issuer whose key trustpub fetched"
        ),
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
        help=(
            "print one minted token to stdout and exit, without a server. Needs --audience "
            "and --key FILE, the key file of the running dev issuer (with --url or --listen "
            "of that issuer): trustpub accepts only tokens signed with a key that issuer "
            "serves. --throwaway-key signs with a new key instead"
        ),
    )
    parser.add_argument(
        "--throwaway-key",
        action="store_true",
        help=(
            "with --print-token and no --key: sign with a new key that no issuer serves, "
            "for looking at a token; trustpub refuses it (Invalid JWT key ID)"
        ),
    )
    parser.add_argument(
        "--audience",
        metavar="AUD",
        help=(
            "trustpub's audience (its public URL without the scheme, e.g. localhost:8080): "
            "the token's audience with --print-token; for the server, the audience of "
            "/token and /mint requests that name none, and the one its start banner shows"
        ),
    )
    parser.set_defaults(handler=run)


def parse_claims(claims_file: str | None, claim_args: list[str]) -> dict[str, Any]:
    """Overrides from the JSON file, then from each ``--claim`` in order."""
    overrides: dict[str, Any] = {}
    if claims_file is not None:
        try:
            loaded = json.loads(Path(claims_file).read_text(encoding="utf-8"))
        except OSError as exc:
            raise usage_error(f"--claims {claims_file}: cannot read: {exc.strerror}") from None
        except ValueError as exc:
            raise usage_error(f"--claims {claims_file}: invalid JSON: {exc}") from None
        if not isinstance(loaded, dict):
            raise usage_error(f"--claims {claims_file}: expected a JSON object")
        overrides.update(loaded)
    for item in claim_args:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise usage_error(f"--claim: expected NAME=VALUE or NAME:=JSON, got {item!r}")
        if name.endswith(":"):
            try:
                overrides[name[:-1]] = json.loads(value)
            except ValueError as exc:
                raise usage_error(f"--claim {name[:-1]}: invalid JSON: {exc}") from None
        else:
            overrides[name] = value
    return overrides


def run(args: argparse.Namespace, console: Console) -> int:
    from trustpub.devissuer import DevIssuer
    from trustpub.devissuer.server import bind, serve_forever, url_for

    host, port = parse_host_port(args.listen, "--listen", allow_port_zero=True)
    # A dev issuer signs whatever it is asked to: reachable from elsewhere, it would
    # hand out tokens to anyone on the network. Loopback only unless explicitly told.
    if not is_loopback_host(host) and not args.allow_non_loopback:
        raise usage_error(
            f"refusing to listen on {host}, which is not a loopback address: anyone who "
            "can reach it could mint tokens. Use 127.0.0.1, or pass --allow-non-loopback."
        )
    if args.lifetime <= 0:
        raise usage_error("--lifetime must be positive")
    overrides = parse_claims(args.claims, args.claim)

    if args.throwaway_key and not args.print_token:
        raise usage_error("--throwaway-key applies to --print-token only")
    if args.throwaway_key and args.key is not None:
        raise usage_error("--throwaway-key and --key exclude each other")
    if args.print_token:
        if not args.audience:
            raise usage_error("--print-token needs --audience (trustpub's audience)")
        # A token signed with a key no running issuer serves is refused by trustpub with
        # a bare "Invalid JWT key ID": say so here, where the fix is known, instead.
        if args.key is None and not args.throwaway_key:
            raise usage_error(
                "--print-token needs --key FILE, the key file of the running dev issuer "
                "(start it with --key FILE too): a token signed with any other key is "
                "refused by trustpub (Invalid JWT key ID). Pass --throwaway-key to sign "
                "with a new key anyway."
            )
        if args.key is not None and not Path(args.key).exists():
            raise usage_error(
                f"--key {args.key}: no such file. --print-token signs with the key file of "
                "the running dev issuer: pass the --key FILE it was started with."
            )
    key, key_note = resolve_key(args.key)

    issuer_args: dict[str, Any] = {
        "key": key,
        "kid": args.kid,
        "provider": args.provider,
        "claims_overrides": overrides,
        "request_token": args.request_token,
        "lifetime": args.lifetime,
        "audience": args.audience,
    }
    if args.print_token:
        issuer = DevIssuer(args.url or url_for(host, port), **issuer_args)
        console.out(issuer.mint(args.audience))
        return 0

    try:
        sock = bind(host, port)
    except OSError as exc:
        raise failed(f"cannot listen on {args.listen}: {exc.strerror}") from None
    issuer = DevIssuer(args.url or url_for(host, sock.getsockname()[1]), **issuer_args)
    console.out(banner(issuer, key_note, args.key).rstrip("\n"))
    try:
        serve_forever(issuer, sock)
    finally:
        sock.close()
    return 0


def resolve_key(path: str | None) -> tuple[rsa.RSAPrivateKey, str]:
    """The signing key and how it was obtained: from ``path``, created there, or new."""
    from trustpub.devissuer import generate_key, load_key, save_key

    if path is None:
        return generate_key(), "a new key for this run"
    if Path(path).exists():
        try:
            return load_key(path), f"key from {path}"
        except (OSError, ValueError) as exc:
            raise usage_error(f"--key {path}: {exc}") from None
    key = generate_key()
    try:
        save_key(key, path)
    except OSError as exc:
        raise usage_error(f"--key {path}: cannot create: {exc.strerror}") from None
    return key, f"new key saved to {path}"


AUDIENCE_PLACEHOLDER = "<your trustpub audience>"
URL_PLACEHOLDER = "<your trustpub URL>"


def trustpub_url_for(audience: str | None) -> str:
    """trustpub's URL from its audience (the URL without its scheme), or a placeholder."""
    if not audience:
        return URL_PLACEHOLDER
    host = urlsplit(f"//{audience}").hostname or ""
    # The audience drops the scheme; a loopback trustpub is plain http, any other https.
    return f"{'http' if is_loopback_host(host) else 'https'}://{audience}"


def banner(issuer: DevIssuer, key_note: str, key_file: str | None = None) -> str:
    """What to do with a running dev issuer, printed at start.

    ``key_file`` is the ``--key`` the issuer was started with, if any: the banner then
    shows the ``--print-token`` command that signs with the same key.
    """
    from trustpub.devissuer import key_thumbprint

    url = issuer.url
    quote = shlex.quote
    audience = issuer.audience or AUDIENCE_PLACEHOLDER
    exchange = f"trustpub exchange --url {quote(trustpub_url_for(issuer.audience))} --jwt -"
    mint_url = f"{url}/mint?audience={audience}&format=raw"
    # GitHub's ref is a full ref; GitLab's is bare (its ref_type says tag or branch).
    example_ref = "refs/tags/v1.0.0" if issuer.provider == "github" else "v1.0.0"
    if key_file is None:
        offline_mint = """\
  (trustpub dev-issuer --print-token signs with a key file: restart this issuer with
  --key FILE to use it; this run's key exists only in memory)"""
    else:
        extra = [] if issuer.provider == "github" else ["--provider", issuer.provider]
        if issuer.kid != key_thumbprint(issuer.key):
            extra += ["--kid", issuer.kid]
        key_path = str(Path(key_file).resolve())
        first = shlex.join(
            ["trustpub", "dev-issuer", "--print-token", *extra, "--key", key_path, "--url", url]
        )
        offline_mint = f"""\
  {first} \\
    --audience {quote(audience)} --claim ref={example_ref} \\
    | {exchange} --explain"""
    placeholders = (
        ""
        if issuer.audience
        else f"""
Replace {AUDIENCE_PLACEHOLDER} with trustpub's audience, its public URL without the
scheme (localhost:8080 for a local trustpub), and {URL_PLACEHOLDER} with that URL; or
restart this issuer with --audience AUD to have them filled in.
"""
    )
    return f"""\
trustpub dev-issuer: issuer {url} ({issuer.provider}-shaped tokens, kid {issuer.kid}, {key_note})
DEVELOPMENT ONLY: whoever holds the request token can mint tokens from this issuer.

Trust it in trustpub (it accepts a plain-http loopback issuer only when marked development):
  TRUSTPUB_ISSUERS={quote(issuer_spec(issuer.trustpub_issuer()))} trustpub serve
  or in the configuration file:
    [[issuers]]
    url = "{url}"
    provider = "{issuer.provider}"
    development = true

Point the action (or anything speaking the Actions token-request protocol) at it:
  export ACTIONS_ID_TOKEN_REQUEST_URL={quote(issuer.token_request_url)}
  export ACTIONS_ID_TOKEN_REQUEST_TOKEN={quote(issuer.request_token)}

Get one token with claim overrides from this server and exchange it (format=raw answers
the JWT alone; without it, JSON):
  curl -s -H "Authorization: bearer $ACTIONS_ID_TOKEN_REQUEST_TOKEN" \\
    -d '{{"ref": "{example_ref}"}}' {quote(mint_url)} \\
    | {exchange} --explain
or without this server, signing with the same key file:
{offline_mint}
{placeholders}
"""
