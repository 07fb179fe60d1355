"""``trustpub registry``: manage the companion registry's users and API tokens, or run
the registry on its own against a separate trustpub service."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from trustpub.errors import ConfigurationError, TrustpubError

CREDENTIAL_ENV = "TRUSTPUB_REGISTRY_CREDENTIAL"


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "registry",
        help="manage the companion Cargo registry (users, API tokens) or run it alone",
        description=(
            "Manage the companion registry's users and API tokens. The registry lives in "
            "DATA_DIR/registry, where DATA_DIR comes from --data-dir, or from the "
            "configuration (--config, $TRUSTPUB_CONFIG, TRUSTPUB_DATA_DIR)."
        ),
    )
    parser.add_argument("--config", metavar="FILE", help="TOML configuration file")
    parser.add_argument("--data-dir", metavar="DIR", help="data directory (overrides config)")
    parser.set_defaults(handler=lambda args: _usage(parser))
    commands = parser.add_subparsers(dest="registry_command", metavar="COMMAND")

    user = commands.add_parser("user", help="registry users")
    user.set_defaults(handler=lambda args: _usage(user))
    user_commands = user.add_subparsers(metavar="ACTION")
    add = user_commands.add_parser("add", help="add a user")
    add.add_argument("login")
    add.set_defaults(handler=user_add)
    user_commands.add_parser("list", help="list users").set_defaults(handler=user_list)

    token = commands.add_parser("token", help="registry API tokens")
    token.set_defaults(handler=lambda args: _usage(token))
    token_commands = token.add_subparsers(metavar="ACTION")
    create = token_commands.add_parser(
        "create",
        help="create an API token and print it (once)",
        description="Create an API token for USER. It is printed once and stored hashed.",
    )
    create.add_argument("--user", required=True, metavar="LOGIN")
    create.add_argument("--name", default="cli", help="a label for the token")
    create.add_argument(
        "--scope",
        action="append",
        required=True,
        metavar="SCOPE",
        help="endpoint scope (repeatable): publish-new, publish-update, yank, "
        "change-owners, trusted-publishing",
    )
    create.add_argument(
        "--crate",
        action="append",
        default=[],
        metavar="PATTERN",
        help="limit the token to crates matching a name or a `prefix*` (repeatable)",
    )
    create.add_argument("--expires-in", metavar="DURATION", help="e.g. 90d, 12h (default: never)")
    create.set_defaults(handler=token_create)
    listing = token_commands.add_parser("list", help="list API tokens (never their values)")
    listing.add_argument("--user", metavar="LOGIN")
    listing.set_defaults(handler=token_list)
    revoke = token_commands.add_parser("revoke", help="revoke an API token by id")
    revoke.add_argument("id", type=int)
    revoke.set_defaults(handler=token_revoke)

    serve = commands.add_parser(
        "serve",
        help="run the registry alone, validating trustpub tokens remotely",
        description=(
            "Serve the registry on its own. trustpub tokens are checked through the "
            "introspection endpoint of the trustpub service at --trustpub-url, with a "
            f"registry credential from --credential-file or ${CREDENTIAL_ENV}."
        ),
    )
    serve.add_argument("--trustpub-url", metavar="URL", help="the trustpub service")
    serve.add_argument(
        "--credential",
        metavar="SECRET",
        help=f"introspection credential (visible to other local users: prefer ${CREDENTIAL_ENV})",
    )
    serve.add_argument("--credential-file", metavar="FILE", help="file holding the credential")
    serve.add_argument("--listen", default="127.0.0.1:8081", metavar="HOST:PORT")
    serve.add_argument("--public-url", metavar="URL", help="URL cargo uses to reach this server")
    serve.set_defaults(handler=serve_registry)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def _directory(args: argparse.Namespace) -> Path:
    if args.data_dir:
        return Path(args.data_dir) / "registry"
    from trustpub.config import load_settings

    return load_settings(args.config).data_dir / "registry"


def _fail(message: str) -> int:
    print(f"trustpub registry: {message}", file=sys.stderr)
    return 1


def _with_db(args: argparse.Namespace, action: Any) -> int:
    from trustpub.registry.db import RegistryDB, StorageUnavailable

    try:
        db = RegistryDB(_directory(args) / "registry.db")
        db.open()
    except ConfigurationError as exc:
        return _fail(f"configuration error: {exc.detail}")
    except StorageUnavailable as exc:
        return _fail(exc.reason)
    try:
        result: int = action(db)
        return result
    except TrustpubError as exc:
        return _fail(exc.detail)
    except StorageUnavailable as exc:
        return _fail(exc.reason)
    finally:
        db.close()


def user_add(args: argparse.Namespace) -> int:
    import re

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", args.login):
        return _fail(f"invalid login {args.login!r}: letters, digits, `.`, `_` and `-`, at most 64")

    def action(db: Any) -> int:
        from trustpub.registry import changes

        user = changes.add_user(db, args.login)
        print(f"added user {user.login}")
        return 0

    return _with_db(args, action)


def user_list(args: argparse.Namespace) -> int:
    def action(db: Any) -> int:
        for user in db.users():
            print(user.login)
        return 0

    return _with_db(args, action)


def token_create(args: argparse.Namespace) -> int:
    import time

    from trustpub.config import parse_duration
    from trustpub.registry.actors import SCOPES, check_crate_pattern
    from trustpub.registry.auth import generate_user_token, user_token_hash

    unknown = sorted(set(args.scope) - set(SCOPES))
    if unknown:
        return _fail(f"unknown scope(s) {', '.join(unknown)} (known: {', '.join(SCOPES)})")
    try:
        for pattern in args.crate:
            check_crate_pattern(pattern)
        expires_at = None
        if args.expires_in:
            expires_at = int(time.time()) + parse_duration(args.expires_in, "--expires-in")
    except ValueError as exc:
        return _fail(str(exc))
    except ConfigurationError as exc:
        return _fail(exc.detail)
    token = generate_user_token()

    def action(db: Any) -> int:
        from trustpub.registry import changes

        record = changes.add_token(
            db, args.user, args.name, user_token_hash(token), args.scope, args.crate, expires_at
        )
        print(f"created token {record.id} for {record.user_login}", file=sys.stderr)
        # The only place the token is ever shown: stdout, so scripts can capture it.
        print(token)
        return 0

    return _with_db(args, action)


def token_list(args: argparse.Namespace) -> int:
    from trustpub.registry.views import rfc3339

    def action(db: Any) -> int:
        for t in db.tokens(args.user):
            state = "revoked" if t.revoked_at else "active"
            if t.expires_at and not t.revoked_at:
                state += f" until {rfc3339(t.expires_at)}"
            crates = ",".join(t.crates) or "*"
            print(
                f"{t.id}\t{t.user_login}\t{t.name}\t{','.join(t.scopes)}\tcrates={crates}\t{state}"
            )
        return 0

    return _with_db(args, action)


def token_revoke(args: argparse.Namespace) -> int:
    def action(db: Any) -> int:
        if not db.revoke_token(args.id):
            return _fail(f"no active token with id {args.id}")
        print(f"revoked token {args.id}")
        return 0

    return _with_db(args, action)


def registry_credential(args: argparse.Namespace) -> str | None:
    """The introspection credential: the command line (``--credential-file``, then
    ``--credential``) wins over the environment, as everywhere else."""
    if args.credential_file:
        return Path(args.credential_file).read_text().strip()
    return args.credential or os.environ.get(CREDENTIAL_ENV) or None


def serve_registry(args: argparse.Namespace) -> int:
    import uvicorn

    from trustpub.registry import create_registry_app

    try:
        credential = registry_credential(args)
    except OSError as exc:
        return _fail(f"cannot read the credential file: {exc.strerror}")
    if args.trustpub_url and not credential:
        return _fail(f"--trustpub-url needs a credential (--credential-file or ${CREDENTIAL_ENV})")
    try:
        directory = _directory(args)
        host, sep, port_text = args.listen.rpartition(":")
        if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ConfigurationError(f"--listen: expected HOST:PORT, got {args.listen!r}")
        port = int(port_text)
    except ConfigurationError as exc:
        return _fail(f"configuration error: {exc.detail}")
    public_url = (args.public_url or f"http://{host}:{port}").rstrip("/")
    app = create_registry_app(
        directory, public_url, trustpub_url=args.trustpub_url, credential=credential
    )
    print(
        f"trustpub registry: serving sparse+{public_url}/index/ from {directory}"
        + (f", trustpub tokens via {args.trustpub_url}" if args.trustpub_url else ""),
        file=sys.stderr,
    )
    uvicorn.run(app, host=host, port=port, log_config=None, access_log=False, server_header=False)
    return 0
