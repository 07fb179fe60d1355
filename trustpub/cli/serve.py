"""``trustpub serve``: run the service (trustpub.server: processes and connection limits)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import tempfile
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from trustpub.cli.console import Console, usage_error
from trustpub.errors import ConfigurationError

if TYPE_CHECKING:
    from trustpub.config import Settings


def redact_url(url: str) -> str:
    """A store URL fit to print: SQLite as given, anything else without credentials.

    SQLite URLs and plain paths carry no secret, and rebuilding ``sqlite:///data/x.db``
    from its parts would print ``sqlite:/data/x.db``, which reads as an absolute path
    when the file is ``./data/x.db``.
    """
    if "://" not in url or url.lower().startswith("sqlite://"):
        return url
    # Redis (or anything else): host, port and path only. The password, and the query,
    # whose options may carry credentials too, stay out of terminals and logs.
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    try:
        port = parts.port
    except ValueError:  # not a number: the store refuses the URL later, with its reason
        port = None
    if port is not None:
        netloc += f":{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def plural(count: int, singular: str, plural_form: str) -> str:
    return f"{count} {singular if count == 1 else plural_form}"


def start_banner(settings: Settings, policy_count: int) -> str:
    """The line ``trustpub serve`` logs once its port is bound."""
    files = settings.registry_storage.url
    return (
        f"serving {settings.public_url} (audience {settings.audience!r}, "
        f"{plural(policy_count, 'policy', 'policies')} from {settings.policy_dir}, "
        f"store {redact_url(settings.store_url)}"
        + (f", crate files {redact_url(files)}" if files and settings.registry_enabled else "")
        + ")"
    )


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "serve",
        help="run the token exchange service",
        description=(
            "Run the service. Configuration comes from --config (or $TRUSTPUB_CONFIG) and "
            "TRUSTPUB_* variables; with none, it serves on 127.0.0.1:8080 with the SQLite "
            "store in ./data and the policies in ./policies."
        ),
    )
    parser.add_argument("--config", metavar="FILE", help="TOML configuration file")
    parser.add_argument("--listen", metavar="HOST:PORT", help="address to listen on")
    parser.add_argument("--store", metavar="URL", help="sqlite:///PATH or redis://HOST:PORT/DB")
    parser.add_argument("--policy-dir", metavar="DIR", help="directory of policy files")
    parser.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="worker processes, 1 to 64 (default: server.workers, 1)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, console: Console) -> int:
    from trustpub.config import load_settings
    from trustpub.logs import configure
    from trustpub.policies import load_policies
    from trustpub.policies.live import load_or_last_good, policy_snapshot
    from trustpub.server import serve
    from trustpub.store import check_store

    # Command-line values travel as environment overrides, so that worker processes
    # build exactly the same settings.
    overrides = {
        "TRUSTPUB_CONFIG": args.config,
        "TRUSTPUB_LISTEN": args.listen,
        "TRUSTPUB_STORE": args.store,
        "TRUSTPUB_POLICY_DIR": args.policy_dir,
        "TRUSTPUB_WORKERS": None if args.workers is None else str(args.workers),
    }
    os.environ.update({k: v for k, v in overrides.items() if v is not None})
    try:
        settings = load_settings()
        policies, broken = load_or_last_good(
            lambda: load_policies(settings.policy_dir, settings.issuers),
            policy_snapshot(settings.data_dir, settings.policy_dir, settings.issuers),
        )
        asyncio.run(check_store(settings.store_url))  # e.g. a Redis without persistence
    except ConfigurationError as exc:  # policy problems too: PolicyLoadError is one
        raise usage_error(f"cannot start: {exc.detail}") from None
    configure(settings.log_level)
    if broken is not None:
        logging.getLogger("trustpub.policies").error(
            "policy files are broken; serving the last good set",
            extra={"fields": {"problems": [str(p) for p in broken.problems]}},
        )
    if settings.server.workers > 1:
        # Workers add up their metrics in one directory (trustpub.metrics), set before
        # any of them starts.
        from trustpub.metrics import MULTIPROC_ENV, setup_multiprocess

        setup_multiprocess(
            os.environ.get(MULTIPROC_ENV) or tempfile.mkdtemp(prefix="trustpub-metrics-")
        )
    return serve(settings, settings.server.workers, start_banner(settings, len(policies)))
