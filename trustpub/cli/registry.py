"""``trustpub registry``: manage the companion registry's users and API tokens, or run
the registry on its own against a separate trustpub service."""

from __future__ import annotations

import argparse
import difflib
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trustpub.cli import add_command, help_handler
from trustpub.cli.console import Console, failed, refused, usage_error
from trustpub.errors import TrustpubError

if TYPE_CHECKING:
    from trustpub.registry.db import RegistryDB

CREDENTIAL_ENV = "TRUSTPUB_REGISTRY_CREDENTIAL"


REGISTRY = """manage the companion Cargo registry (users, API tokens) or run it alone

Manage the companion registry's users and API tokens. The registry lives in
DATA_DIR/registry, where DATA_DIR comes from --data-dir, or from the configuration
(--config, $TRUSTPUB_CONFIG, TRUSTPUB_DATA_DIR).
"""

CREATE = """create an API token and print it (once)

Create an API token for the registry user --user LOGIN. It is printed once and
stored hashed.
"""

SERVE = f"""run the registry alone, validating trustpub tokens remotely

Serve the registry on its own. trustpub tokens are checked through the introspection
endpoint of the trustpub service at --trustpub-url, with a registry credential from
--credential-file or ${CREDENTIAL_ENV}.
"""


def register(subparsers: Any) -> None:
    parser = add_command(subparsers, "registry", REGISTRY)
    parser.add_argument("--config", metavar="FILE", help="TOML configuration file")
    parser.add_argument("--data-dir", metavar="DIR", help="data directory (overrides config)")
    parser.set_defaults(handler=help_handler(parser))
    commands = parser.add_subparsers(dest="registry_command", metavar="COMMAND")

    user = commands.add_parser("user", help="registry users")
    user.set_defaults(handler=help_handler(user))
    user_commands = user.add_subparsers(metavar="ACTION")
    add = user_commands.add_parser("add", help="add a user")
    add.add_argument("login", help="the user's login, as trust policies name owners")
    add.set_defaults(handler=user_add)
    listing = user_commands.add_parser("list", help="list users")
    _json_flag(listing)
    listing.set_defaults(handler=user_list)

    token = commands.add_parser("token", help="registry API tokens")
    token.set_defaults(handler=help_handler(token))
    token_commands = token.add_subparsers(metavar="ACTION")
    create = add_command(token_commands, "create", CREATE)
    create.add_argument("--user", required=True, metavar="LOGIN", help="the token's owner")
    create.add_argument("--name", default="cli", help="a label for the token (default cli)")
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
    token_listing = token_commands.add_parser("list", help="list API tokens (never their values)")
    token_listing.add_argument("--user", metavar="LOGIN", help="only the tokens of this user")
    _json_flag(token_listing)
    token_listing.set_defaults(handler=token_list)
    revoke = token_commands.add_parser("revoke", help="revoke an API token by id")
    revoke.add_argument("id", type=int, help="the token's id, as 'token list' shows it")
    revoke.set_defaults(handler=token_revoke)

    serve = add_command(commands, "serve", SERVE)
    serve.add_argument(
        "--trustpub-url",
        metavar="URL",
        help="the trustpub service's base URL (without it, trustpub tokens are refused)",
    )
    serve.add_argument(
        "--credential",
        metavar="SECRET",
        help=f"introspection credential (visible to other local users: prefer ${CREDENTIAL_ENV})",
    )
    serve.add_argument("--credential-file", metavar="FILE", help="file holding the credential")
    serve.add_argument(
        "--listen",
        default="127.0.0.1:8081",
        metavar="HOST:PORT",
        help="address to listen on (default 127.0.0.1:8081)",
    )
    serve.add_argument(
        "--public-url",
        metavar="URL",
        help="URL cargo uses to reach this server (default http://HOST:PORT of --listen)",
    )
    serve.set_defaults(handler=serve_registry)


def _json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print a JSON array instead of a table")


def _directory(args: argparse.Namespace) -> Path:
    if args.data_dir:
        return Path(args.data_dir) / "registry"
    from trustpub.config import load_settings

    return load_settings(args.config).data_dir / "registry"


def _database(args: argparse.Namespace) -> str | Path:
    """The configured ``[registry] database`` URL, else the SQLite file of the data
    directory (``--data-dir`` always names a SQLite file)."""
    if args.data_dir:
        return Path(args.data_dir) / "registry" / "registry.db"
    from trustpub.config import load_settings

    settings = load_settings(args.config)
    return settings.registry_database or settings.data_dir / "registry" / "registry.db"


def _with_db(args: argparse.Namespace, action: Callable[[RegistryDB], int]) -> int:
    """Run ``action`` on the open registry database; its refusals exit 1, a database
    that cannot be used exits 3."""
    from trustpub.registry.db import RegistryDB, StorageUnavailable

    db = RegistryDB(_database(args))
    try:
        db.open()
    except StorageUnavailable as exc:
        raise failed(exc.reason) from None
    try:
        return action(db)
    except TrustpubError as exc:
        raise refused(exc.detail) from None
    except StorageUnavailable as exc:
        raise failed(exc.reason) from None
    finally:
        db.close()


def user_add(args: argparse.Namespace, console: Console) -> int:
    from trustpub.logins import LOGIN_RULE, is_login

    if not is_login(args.login):
        raise usage_error(f"invalid login {args.login!r}: {LOGIN_RULE}")

    def action(db: RegistryDB) -> int:
        from trustpub.registry import changes

        user = changes.add_user(db, args.login)
        console.out(f"added user {user.login}")
        return 0

    return _with_db(args, action)


def user_list(args: argparse.Namespace, console: Console) -> int:
    from trustpub.web import rfc3339

    def action(db: RegistryDB) -> int:
        users = db.users()
        console.table(
            ("LOGIN", "CREATED"),
            [(u.login, rfc3339(u.created_at)) for u in users],
            as_json=args.json,
            records=[{"login": u.login, "created_at": rfc3339(u.created_at)} for u in users],
        )
        return 0

    return _with_db(args, action)


def token_create(args: argparse.Namespace, console: Console) -> int:
    import time

    from trustpub.config import parse_duration
    from trustpub.registry.actors import SCOPES, check_crate_pattern
    from trustpub.registry.auth import generate_user_token, user_token_hash

    # Checked here, not by argparse: the registry package is too slow to import for
    # every command's start.
    for scope in args.scope:
        if scope not in SCOPES:
            close = difflib.get_close_matches(scope, SCOPES, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise usage_error(
                f"--scope: unknown scope {scope!r} (known: {', '.join(SCOPES)}){hint}"
            )
    try:
        for pattern in args.crate:
            check_crate_pattern(pattern)
    except ValueError as exc:
        raise usage_error(f"--crate: {exc}") from None
    expires_at = None
    if args.expires_in:
        expires_at = int(time.time()) + parse_duration(args.expires_in, "--expires-in")
    token = generate_user_token()

    def action(db: RegistryDB) -> int:
        from trustpub.registry import changes

        record = changes.add_token(
            db, args.user, args.name, user_token_hash(token), args.scope, args.crate, expires_at
        )
        console.note(f"created token {record.id} for {record.user_login}")
        # The only place the token is ever shown: stdout, so scripts can capture it.
        console.out(token)
        return 0

    return _with_db(args, action)


def token_list(args: argparse.Namespace, console: Console) -> int:
    from trustpub.web import rfc3339

    def optional_time(value: int | None) -> str | None:
        return rfc3339(value) if value is not None else None

    def action(db: RegistryDB) -> int:
        tokens = db.tokens(args.user)
        rows = []
        for t in tokens:
            state = "revoked" if t.revoked_at else "active"
            if t.expires_at and not t.revoked_at:
                state += f" until {rfc3339(t.expires_at)}"
            rows.append(
                (
                    str(t.id),
                    t.user_login,
                    t.name,
                    ",".join(t.scopes),
                    ",".join(t.crates) or "*",
                    state,
                )
            )
        records = [
            {
                "id": t.id,
                "user": t.user_login,
                "name": t.name,
                "scopes": list(t.scopes),
                "crates": list(t.crates),
                "created_at": rfc3339(t.created_at),
                "expires_at": optional_time(t.expires_at),
                "revoked_at": optional_time(t.revoked_at),
                "last_used_at": optional_time(t.last_used_at),
            }
            for t in tokens
        ]
        console.table(
            ("ID", "USER", "NAME", "SCOPES", "CRATES", "STATE"),
            rows,
            as_json=args.json,
            records=records,
        )
        return 0

    return _with_db(args, action)


def token_revoke(args: argparse.Namespace, console: Console) -> int:
    def action(db: RegistryDB) -> int:
        if not db.revoke_token(args.id):
            raise refused(f"no active token with id {args.id}")
        console.out(f"revoked token {args.id}")
        return 0

    return _with_db(args, action)


def registry_credential(args: argparse.Namespace) -> str | None:
    """The introspection credential: the command line (``--credential-file``, then
    ``--credential``) wins over the environment, as everywhere else."""
    if args.credential_file:
        return Path(args.credential_file).read_text().strip()
    return args.credential or os.environ.get(CREDENTIAL_ENV) or None


def serve_registry(args: argparse.Namespace, console: Console) -> int:
    import uvicorn

    from trustpub.config import parse_host_port
    from trustpub.registry import create_registry_app

    try:
        credential = registry_credential(args)
    except OSError as exc:
        raise usage_error(f"--credential-file: cannot read it: {exc.strerror}") from None
    if args.trustpub_url and not credential:
        raise usage_error(
            f"--trustpub-url needs a credential (--credential-file or ${CREDENTIAL_ENV})"
        )
    directory = _directory(args)
    host, port = parse_host_port(args.listen, "--listen")
    public_url = (args.public_url or f"http://{host}:{port}").rstrip("/")
    app = create_registry_app(
        directory, public_url, trustpub_url=args.trustpub_url, credential=credential
    )
    console.note(
        f"serving sparse+{public_url}/index/ from {directory}"
        + (f", trustpub tokens via {args.trustpub_url}" if args.trustpub_url else "")
    )
    uvicorn.run(app, host=host, port=port, log_config=None, access_log=False, server_header=False)
    return 0
