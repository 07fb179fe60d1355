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
    from trustpub.registry.db.webhook_keys import WebhookKeys

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

AUDIT = """show the audit trail, newest first

Show the registry's audit trail (Trusted Publishing publishes, trustpub-only changes,
owner changes, API tokens, webhooks, Trusted Publishing configs), newest first, with
the state of each event's notifications. --crate limits it to one crate's events.
"""

WEBHOOKS = """webhook secrets: their encryption keys

Webhook signing secrets are stored encrypted with the keys of [registry]
webhook_secrets_key_file or $TRUSTPUB_WEBHOOK_SECRETS_KEYS (else a key file the
registry keeps in DATA_DIR/registry). The first key encrypts, every key decrypts.
"""

REKEY = """encrypt every webhook secret again with the current key

Encrypt every webhook secret again with the first configured key, in one transaction.
Run it after putting a new key first; then the old keys can be removed. Exits 1 if
some secret no configured key decrypts (those are left as they are, and listed).
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
    add.add_argument(
        "--email", metavar="ADDR", help="where the user is told of their crates' events"
    )
    add.set_defaults(handler=user_add)
    set_email = user_commands.add_parser("set-email", help="set or clear a user's email")
    set_email.add_argument("login", help="the user's login")
    which = set_email.add_mutually_exclusive_group(required=True)
    which.add_argument("email", nargs="?", metavar="ADDR", help="the new address")
    which.add_argument("--clear", action="store_true", help="remove the address")
    set_email.set_defaults(handler=user_set_email)
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
        "change-owners, trusted-publishing, read (read-only: a private registry's "
        "consumers), manage-tokens (the user's tokens over HTTP)",
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

    audit = add_command(commands, "audit", AUDIT)
    audit.add_argument("--crate", metavar="NAME", help="only this crate's events")
    audit.add_argument(
        "--limit", type=int, default=100, metavar="N", help="at most N events (default 100)"
    )
    _json_flag(audit)
    audit.set_defaults(handler=audit_list)
    register_config(commands)
    register_index(commands)
    register_files(commands)

    hooks = add_command(commands, "webhooks", WEBHOOKS)
    hooks.set_defaults(handler=help_handler(hooks))
    hook_commands = hooks.add_subparsers(metavar="ACTION")
    rekey = add_command(hook_commands, "rekey", REKEY)
    rekey.set_defaults(handler=webhooks_rekey)
    new_key = hook_commands.add_parser("new-key", help="print a new webhook secrets key")
    new_key.set_defaults(handler=webhooks_new_key)

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
    serve.add_argument(
        "--auth-required",
        action="store_true",
        help="a private registry: every read needs a token (cargo's auth-required)",
    )
    serve.add_argument(
        "--login-url",
        metavar="URL",
        help="with --auth-required: where users learn how to get a token (shown by cargo)",
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


def _webhook_keys(args: argparse.Namespace) -> WebhookKeys | Path:
    """The configured webhook secrets keys, else the registry directory's key file."""
    from trustpub.config import load_settings
    from trustpub.registry.db.webhook_keys import KEY_FILE

    configured = load_settings(args.config).registry_webhook_keys
    return configured if configured is not None else _directory(args) / KEY_FILE


def webhooks_rekey(args: argparse.Namespace, console: Console) -> int:
    def action(db: RegistryDB) -> int:
        done, unreadable = db.reseal_webhook_secrets()
        console.out(f"encrypted {done} webhook secret(s) with key {db.webhook_keys.current}")
        if unreadable:
            raise refused(
                f"{len(unreadable)} webhook secret(s) no configured key decrypts "
                f"(webhook ids: {', '.join(map(str, unreadable))}); add the key they were "
                "encrypted with, or have their owners create them again"
            )
        return 0

    return _with_db(args, action)


def webhooks_new_key(args: argparse.Namespace, console: Console) -> int:
    from trustpub.registry.db.webhook_keys import generate_key

    console.out(generate_key())
    return 0


def _with_db(args: argparse.Namespace, action: Callable[[RegistryDB], int]) -> int:
    """Run ``action`` on the open registry database; its refusals exit 1, a database
    that cannot be used exits 3."""
    from trustpub.registry.db import RegistryDB, StorageUnavailable

    db = RegistryDB(_database(args), webhook_keys=_webhook_keys(args))
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


def _email(value: str, where: str) -> str:
    from trustpub.notify.addresses import check_email

    try:
        return check_email(value)
    except ValueError as exc:
        raise usage_error(f"{where}: {exc}") from None


def user_add(args: argparse.Namespace, console: Console) -> int:
    from trustpub.logins import LOGIN_RULE, is_login

    if not is_login(args.login):
        raise usage_error(f"invalid login {args.login!r}: {LOGIN_RULE}")
    email = _email(args.email, "--email") if args.email is not None else None

    def action(db: RegistryDB) -> int:
        from trustpub.registry import changes

        user = changes.add_user(db, args.login, email)
        console.out(f"added user {user.login}" + (f" <{email}>" if email else ""))
        return 0

    return _with_db(args, action)


def user_set_email(args: argparse.Namespace, console: Console) -> int:
    email = None if args.clear else _email(args.email, "ADDR")

    def action(db: RegistryDB) -> int:
        from trustpub.registry import changes
        from trustpub.registry.errors import RegistryRefused

        try:
            user = changes.set_email(db, args.login, email)
        except RegistryRefused as exc:
            if exc.status_code == 404:
                raise refused(f"no registry user `{args.login}`") from None
            raise
        console.out(
            f"set the email of {user.login} to {email}"
            if email
            else f"cleared the email of {user.login}"
        )
        return 0

    return _with_db(args, action)


def audit_list(args: argparse.Namespace, console: Console) -> int:
    import json

    from trustpub.registry.views import audit_json

    if not 1 <= args.limit <= 10_000:
        raise usage_error("--limit: expected 1 to 10000")

    def action(db: RegistryDB) -> int:
        crate_id = None
        if args.crate is not None:
            found = db.crate(args.crate)
            if found is None:
                raise refused(f"crate `{args.crate}` does not exist")
            crate_id = found.id
        events, _ = db.audit(crate_id, args.limit, 0)
        records = [audit_json(e, sent) for e, sent in events]
        rows = [
            (
                str(r["id"]),
                str(r["created_at"]),
                str(r["kind"]),
                str(r["crate"] or "-"),
                str(r["actor"] or "-"),
                str(r["client"] or "-"),
                json.dumps(r["details"], sort_keys=True),
                ", ".join(f"{d['recipient']}: {d['state']}" for d in r["deliveries"]) or "-",
            )
            for r in records
        ]
        console.table(
            ("ID", "WHEN", "KIND", "CRATE", "ACTOR", "CLIENT", "DETAILS", "NOTIFIED"),
            rows,
            as_json=args.json,
            records=records,
        )
        return 0

    return _with_db(args, action)


def user_list(args: argparse.Namespace, console: Console) -> int:
    from trustpub.web import rfc3339

    def action(db: RegistryDB) -> int:
        users = db.users()
        console.table(
            ("LOGIN", "EMAIL", "CREATED"),
            [(u.login, u.email or "-", rfc3339(u.created_at)) for u in users],
            as_json=args.json,
            records=[
                {"login": u.login, "email": u.email, "created_at": rfc3339(u.created_at)}
                for u in users
            ],
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
    from trustpub.config import load_settings

    if args.login_url and not args.auth_required:
        raise usage_error("--login-url only applies with --auth-required")
    settings = load_settings(args.config)
    try:
        app = create_registry_app(
            directory,
            public_url,
            trustpub_url=args.trustpub_url,
            credential=credential,
            notifications=settings.notifications,
            categories=settings.registry_categories,
            auth_required=args.auth_required,
            login_url=args.login_url,
            require_metadata=settings.registry_require_metadata,
            webhook_keys=settings.registry_webhook_keys,
            # The same database and storage as the other registry commands: the
            # configured ones, unless --data-dir names a directory of its own.
            database=None if args.data_dir else settings.registry_database,
            storage=None if args.data_dir else settings.registry_storage,
        )
    except ValueError as exc:
        raise usage_error(f"--{exc}".replace("login_url", "login-url", 1)) from None
    console.note(
        f"serving sparse+{public_url}/index/ from {directory}"
        + (f", trustpub tokens via {args.trustpub_url}" if args.trustpub_url else "")
    )
    uvicorn.run(app, host=host, port=port, log_config=None, access_log=False, server_header=False)
    return 0


# -- owner-managed Trusted Publishing configs -------------------------------------------------

CONFIG = """owner-managed Trusted Publishing configs (as the configs API manages them)

List, add and remove the registry's Trusted Publishing configs: the ones crate owners
create through /api/v1/trusted_publishing/{github,gitlab}_configs. A config for a
crate that does not exist yet is a pending publisher: the first matching exchange
may create the crate, owned by --user.
"""

CONFIG_ADD = """add a config (validated as policy files are)

Add a config for --crate, recorded as created by --user (for a pending publisher,
the new crate's owner). GitHub configs need --repository-owner-id: the CLI does not
ask GitHub's API (the configs API does).
"""


def register_config(commands: Any) -> None:
    config = add_command(commands, "config", CONFIG)
    config.set_defaults(handler=help_handler(config))
    actions = config.add_subparsers(metavar="ACTION")
    listing = actions.add_parser("list", help="list configs (pending ones included)")
    listing.add_argument("--crate", metavar="NAME", help="only the configs of this crate")
    _json_flag(listing)
    listing.set_defaults(handler=config_list)
    add = add_command(actions, "add", CONFIG_ADD)
    add.add_argument(
        "--crate", required=True, metavar="NAME", help="the crate (it may not exist yet)"
    )
    add.add_argument("--user", required=True, metavar="LOGIN", help="recorded as its creator")
    add.add_argument(
        "--provider", required=True, choices=("github", "gitlab"), help="the CI provider"
    )
    add.add_argument(
        "--repository",
        required=True,
        metavar="PATH",
        help="GitHub owner/name, or GitLab namespace/project (subgroups allowed)",
    )
    add.add_argument(
        "--workflow",
        required=True,
        metavar="FILE",
        help="GitHub workflow file name, or GitLab CI config path",
    )
    add.add_argument("--environment", metavar="NAME", help="the deployment environment")
    add.add_argument("--repository-owner-id", metavar="ID", help="GitHub: the owner's id")
    add.add_argument("--namespace-id", metavar="ID", help="GitLab: pin the namespace id now")
    add.add_argument("--issuer", metavar="URL", help="default: the provider's canonical issuer")
    add.add_argument(
        "--ref",
        action="append",
        default=[],
        metavar="PATTERN",
        dest="refs",
        help="accepted ref pattern, as a policy's refs (repeatable)",
    )
    add.add_argument(
        "--operation",
        action="append",
        default=[],
        metavar="OP",
        dest="operations",
        help="granted operation (repeatable; default publish-update)",
    )
    add.add_argument(
        "--token-ttl", metavar="DURATION", help="lifetime of the minted tokens (e.g. 15m)"
    )
    add.set_defaults(handler=config_add)
    remove = actions.add_parser("remove", help="remove a config by id")
    remove.add_argument("id", type=int, help="the config's id, as 'config list' shows it")
    remove.set_defaults(handler=config_remove)


def config_list(args: argparse.Namespace, console: Console) -> int:
    from trustpub.registry.configs import config_json

    def action(db: RegistryDB) -> int:
        _, rows = db.live_configs()
        if args.crate:
            from trustpub.registry.names import canonical_name

            rows = [r for r in rows if canonical_name(r.crate_name) == canonical_name(args.crate)]
        table = [
            (
                str(r.id),
                r.provider,
                r.crate_name,
                f"{r.repository_owner}/{r.repository_name}",
                r.workflow,
                r.environment or "-",
                r.owner_id or "-",
                "pending" if r.pending else "active",
            )
            for r in rows
        ]
        console.table(
            (
                "ID",
                "PROVIDER",
                "CRATE",
                "REPOSITORY",
                "WORKFLOW",
                "ENVIRONMENT",
                "OWNER ID",
                "STATE",
            ),
            table,
            as_json=args.json,
            records=[{"provider": r.provider, **config_json(r)} for r in rows],
        )
        return 0

    return _with_db(args, action)


def config_add(args: argparse.Namespace, console: Console) -> int:
    from trustpub.config import load_settings
    from trustpub.oidc.issuers import CANONICAL_ISSUERS
    from trustpub.registry.configs import config_problems
    from trustpub.registry.db.configs import NewConfig

    settings = load_settings(args.config)
    owner, _, name = args.repository.rpartition("/")
    extensions: dict[str, object] = {}
    if args.refs:
        extensions["refs"] = args.refs
    if args.operations:
        extensions["operations"] = args.operations
    if args.token_ttl:
        extensions["token_ttl"] = args.token_ttl
    owner_id = args.repository_owner_id if args.provider == "github" else args.namespace_id
    new = NewConfig(
        provider=args.provider,
        crate_name=args.crate,
        issuer=args.issuer or CANONICAL_ISSUERS[args.provider],
        repository_owner=owner,
        owner_id=owner_id,
        repository_name=name,
        workflow=args.workflow,
        environment=args.environment,
        extensions=extensions,
    )
    if args.provider == "github" and not owner_id:
        raise usage_error("--repository-owner-id is required for a GitHub config")

    def action(db: RegistryDB) -> int:
        from trustpub.registry.db import configs as stored
        from trustpub.registry.db import queries
        from trustpub.registry.names import check_crate_name

        user = next((u for u in db.users() if u.login.lower() == args.user.lower()), None)
        if user is None:
            raise refused(f"no registry user `{args.user}`")
        crate = db.crate(args.crate)
        if crate is None:
            check_crate_name(args.crate)
        problems = config_problems(
            new if crate is None else _renamed_config(new, crate.name),
            user.login if crate is None else None,
            settings.issuers,
        )
        if problems:
            raise refused("invalid config:\n" + "\n".join(f"  {p}" for p in problems))

        def check(conn: queries.Connection) -> int | None:
            found = queries.crate(conn, args.crate)
            return found.id if found is not None else None

        try:
            row = db.create_config(
                new if crate is None else _renamed_config(new, crate.name),
                user.id,
                check,
                pending_ttl=settings.owner_configs.pending_ttl,
            )
        except stored.DuplicateConfig as exc:
            raise refused(f"an identical config exists (id {exc.existing.id})") from None
        except stored.PendingTaken:
            raise refused(f"another user holds a pending config for `{args.crate}`") from None
        # The audit trail has it, with no actor: the operator's command line.
        state = "pending publisher" if row.pending else "config"
        console.out(f"added {state} {row.id} for crate {row.crate_name}")
        return 0

    return _with_db(args, action)


def _renamed_config(new: Any, crate_name: str) -> Any:
    from dataclasses import replace

    return replace(new, crate_name=crate_name)


def config_remove(args: argparse.Namespace, console: Console) -> int:
    def action(db: RegistryDB) -> int:
        from trustpub.registry.db import queries
        from trustpub.registry.db.configs import ConfigRow

        def check(conn: queries.Connection, row: ConfigRow | None) -> None:
            if row is None:
                raise refused(f"no config with id {args.id}")

        row = db.delete_config(args.id, check)
        # The audit trail has it, with no actor: the operator's command line.
        console.out(f"removed config {row.id} ({row.provider}) of crate {row.crate_name}")
        return 0

    return _with_db(args, action)


# -- the sparse index as static files ---------------------------------------------------------

INDEX_EXPORT = """write the sparse index to a directory or the object store, for static serving

Write every crate's index file and config.json to DIR (or, with --object-store, to
the registry's S3 bucket under index/), and remove the files there that no crate has:
nginx, a CDN or the bucket then serves the index itself (cargo: index =
"sparse+https://STATIC/"); config.json keeps downloads and the API at the registry.
--watch keeps writing the changes (checked every --interval seconds) until stopped.
Files are written atomically (a temporary file renamed into place). The index of a
registry that requires authentication is refused unless --allow-private: the
exported files are readable by whoever can read the target.
"""


def register_index(commands: Any) -> None:
    index = commands.add_parser("index", help="the sparse index (static export)")
    index.set_defaults(handler=help_handler(index))
    actions = index.add_subparsers(metavar="ACTION")
    export = add_command(actions, "export", INDEX_EXPORT)
    export.add_argument("directory", nargs="?", metavar="DIR", help="the export directory")
    export.add_argument(
        "--object-store",
        action="store_true",
        help="write to the registry's S3 bucket (under index/) instead of a directory",
    )
    export.add_argument(
        "--watch", action="store_true", help="keep writing the changes until stopped"
    )
    export.add_argument(
        "--interval",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="with --watch: how often to check for changes (default 1)",
    )
    export.add_argument(
        "--public-url",
        metavar="URL",
        help="the registry's URL for config.json (default: the configuration's public_url)",
    )
    export.add_argument(
        "--allow-private",
        action="store_true",
        help="export a registry that requires authentication (the target must be "
        "access-controlled: the files are readable by whoever can read it)",
    )
    export.set_defaults(handler=index_export)


def index_export(args: argparse.Namespace, console: Console) -> int:
    import signal
    import threading

    from trustpub.config import load_settings
    from trustpub.registry.export import (
        DirectoryTarget,
        Exporter,
        IndexTarget,
        ObjectStoreTarget,
    )
    from trustpub.registry.index import config_json

    if (args.directory is None) == (not args.object_store):
        raise usage_error("give either DIR or --object-store")
    if args.interval <= 0:
        raise usage_error("--interval: expected a positive number of seconds")
    settings = load_settings(args.config)
    if settings.registry_auth_required and not args.allow_private:
        raise refused(
            "the registry requires authentication, and an exported index is readable by "
            "whoever can read the target; pass --allow-private if it is access-controlled"
        )
    public_url = args.public_url or settings.public_url
    if not public_url.startswith(("http://", "https://")):
        raise usage_error("--public-url: expected an http(s) URL")
    config = config_json(public_url, settings.registry_auth_required)

    def action(db: RegistryDB) -> int:
        target: IndexTarget
        if args.object_store:
            from trustpub.registry.storage import open_storage
            from trustpub.registry.storage.s3 import S3Storage

            store = open_storage(settings.registry_storage, _directory(args))
            if not isinstance(store, S3Storage):
                raise usage_error("--object-store: the registry's storage is not s3://")
            store.open()
            target = ObjectStoreTarget(store)
            where = target.location
        else:
            target = DirectoryTarget(args.directory)
            where = str(target.root)
            root = target.root
            # A resync removes every file that is not the index's: never in a directory
            # that holds something else.
            if root.is_dir() and any(root.iterdir()) and not (root / "config.json").is_file():
                raise usage_error(
                    f"{where} is not empty and holds no exported index (config.json); "
                    "give an empty or new directory"
                )
        exporter = Exporter(db, target, config)
        synced = exporter.resync()
        console.note(
            f"exported {synced.written} index file(s) and config.json to {where}"
            + (f", removed {synced.removed}" if synced.removed else "")
        )
        if not args.watch:
            return 0
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        console.note(f"watching for changes every {args.interval:g} s (stop: Ctrl-C)")
        exporter.watch(args.interval, stop)
        return 0

    return _with_db(args, action)


FILES_CHECK = """compare the .crate files with the versions: orphans and missing files

List the .crate files no version names (orphans: harmless, swept at every start) and
the versions whose file is missing (downloads fail: restore the file from a copy; its
SHA-256 is the index's cksum). --remove-orphans removes the
orphans, holding the database's writer lock meanwhile (publishes wait). Exit status 0
when every version has its file and no orphan is left, 1 otherwise.
"""


def register_files(commands: Any) -> None:
    files = commands.add_parser("files", help="the .crate files (consistency check)")
    files.set_defaults(handler=help_handler(files))
    actions = files.add_subparsers(metavar="ACTION")
    check = add_command(actions, "check", FILES_CHECK)
    check.add_argument(
        "--remove-orphans", action="store_true", help="remove the files no version names"
    )
    _json_flag(check)
    check.set_defaults(handler=files_check)


def files_check(args: argparse.Namespace, console: Console) -> int:
    from trustpub.config import load_settings
    from trustpub.registry.consistency import check_files
    from trustpub.registry.storage import crate_key, open_storage

    store = open_storage(load_settings(args.config).registry_storage, _directory(args))

    def action(db: RegistryDB) -> int:
        store.open()
        found = check_files(db, store, remove_orphans=args.remove_orphans)
        removed = set(found.removed)
        rows = [("orphan", key, "removed" if key in removed else "") for key in found.orphans] + [
            ("missing", crate_key(name, num), f"{name} {num}") for name, num in found.missing
        ]
        console.table(
            ("STATE", "FILE", "NOTE"),
            rows,
            as_json=args.json,
            records=[{"state": r[0], "file": r[1], "note": r[2]} for r in rows],
        )
        console.note(
            f"{len(found.orphans)} orphan file(s)"
            + (f" ({len(found.removed)} removed)" if found.removed else "")
            + f", {len(found.missing)} version(s) without their file"
        )
        return 0 if found.consistent else 1

    return _with_db(args, action)
