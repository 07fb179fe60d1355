"""Server configuration: one TOML file plus ``TRUSTPUB_*`` environment overrides.

Built once at start-up and passed in; nothing reads the environment at import time.
With no file and no variables, the service runs on localhost with the embedded SQLite
store and the policies in ``./policies``.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from trustpub import durations
from trustpub.errors import ConfigurationError
from trustpub.notify.settings import NotificationSettings, parse_notifications
from trustpub.oidc.issuers import DEFAULT_ISSUERS, PROVIDER_KINDS, Issuer, check_key_url
from trustpub.ratelimit import RateLimits, parse_limit
from trustpub.registry.categories import Categories, load_categories
from trustpub.registry.configs import OwnerConfigSettings
from trustpub.registry.db.webhook_keys import WebhookKeyError, WebhookKeys
from trustpub.registry.storage.settings import StorageSettings, parse_storage

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DEFAULT_STORE = "sqlite:///data/trustpub.db"
LOG_LEVELS = ("debug", "info", "warning", "error")
ALL_INTERFACES = ("0.0.0.0", "::")  # noqa: S104 (compared, never bound)
WEBHOOK_KEYS_ENV = "TRUSTPUB_WEBHOOK_SECRETS_KEYS"


def _parse_categories(value: object, source: str) -> Categories:
    """``[registry] categories``: the path of a category file, read now, so a file that
    cannot be used stops the start (trustpub.registry.categories)."""
    if not isinstance(value, str) or not value:
        raise ConfigurationError(f"{source}: registry.categories: expected the path of a TOML file")
    try:
        return load_categories(value)
    except ConfigurationError as exc:
        raise ConfigurationError(f"{source}: registry.categories: {exc.detail}") from None


def _parse_registry_access(registry: dict[str, Any], source: str) -> dict[str, Any]:
    """``[registry] login_url`` (an http(s) URL cargo shows in its 401 message, ASCII
    without quotes) and ``invitation_ttl`` (a duration, 1 hour to 1 year)."""
    changes: dict[str, Any] = {}
    if "login_url" in registry:
        url = registry["login_url"]
        if (
            not isinstance(url, str)
            or not url.startswith(("https://", "http://"))
            or not url.isascii()
            or not url.isprintable()
            or any(c in url for c in '"\\ ')
        ):
            raise ConfigurationError(
                f"{source}: registry.login_url: expected an http(s) URL (ASCII, no spaces "
                "or quotes)"
            )
        changes["registry_login_url"] = url
    if "invitation_ttl" in registry:
        ttl = parse_duration(registry["invitation_ttl"], f"{source}: registry.invitation_ttl")
        if not 3600 <= ttl <= 366 * 24 * 3600:
            raise ConfigurationError(
                f"{source}: registry.invitation_ttl: expected 1h to 366d, got {ttl} seconds"
            )
        changes["registry_invitation_ttl"] = ttl
    return changes


def parse_duration(value: object, where: str) -> int:
    """Seconds from an int or a string such as ``90``, ``"90s"``, ``"45m"``, ``"2h"``."""
    try:
        return durations.parse_duration(value)
    except ValueError as exc:
        raise ConfigurationError(f"{where}: {exc}") from None


@dataclass(frozen=True, slots=True)
class KeySetSettings:
    max_age: int = 3600
    refresh_cooldown: int = 60
    max_stale: int = 86400


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """How ``trustpub serve`` runs: processes and connection limits (``[server]``).

    Timeouts in seconds; connection and request limits are per worker process. See
    trustpub/server/ for what each bounds and why.
    """

    workers: int = 1
    head_timeout: int = 10
    body_timeout: int = 15
    keep_alive_timeout: int = 5
    shutdown_timeout: int = 8
    max_connections: int = 1024
    max_requests: int = 256
    # The HTTP/1.1 parser: "httptools" (C, llhttp) or "h11" (pure Python); the same
    # limits on either (trustpub/server/protocol.py).
    http: str = "httptools"


FORWARDED_HEADERS = ("x-forwarded-for", "forwarded")


@dataclass(frozen=True, slots=True)
class SecretScanningSettings:
    """GitHub's leaked-token reports (``[secret_scanning]``, trustpub.api.secret_scanning)."""

    enabled: bool = True
    key_url: str = "https://api.github.com/meta/public_keys/secret_scanning"
    # Plain http for a loopback key_url (a local key server), as for an issuer.
    development: bool = False
    refresh_cooldown: int = 60


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the service needs to start. Build with ``load_settings``."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    public_url: str = f"http://localhost:{DEFAULT_PORT}"
    audience: str = f"localhost:{DEFAULT_PORT}"
    issuers: tuple[Issuer, ...] = DEFAULT_ISSUERS
    policy_dir: Path = Path("policies")
    store_url: str = DEFAULT_STORE
    data_dir: Path = Path("data")
    max_token_ttl: int = 6 * 3600
    jwt_leeway: int = 60
    max_jwt_lifetime: int = 32 * 24 * 3600  # trustpub.oidc.verify.DEFAULT_MAX_LIFETIME
    introspection_credentials: tuple[str, ...] = ()
    log_level: str = "info"
    policy_reload_interval: float = 2.0
    key_sets: KeySetSettings = field(default_factory=KeySetSettings)
    registry_enabled: bool = True
    # [registry] auth_required, login_url, invitation_ttl, require_metadata
    # (trustpub.registry.Registry)
    registry_auth_required: bool = False
    registry_require_metadata: bool = True
    registry_login_url: str | None = None
    registry_invitation_ttl: int = 30 * 24 * 3600
    # [registry] database: a postgresql:// URL; None: the SQLite file under data_dir.
    registry_database: str | None = None
    # [registry] storage, downloads and [registry.s3]: where the .crate files live.
    registry_storage: StorageSettings = field(default_factory=StorageSettings)
    # [registry] categories: a TOML file of categories; None: the list trustpub ships.
    registry_categories: Categories | None = None
    # [registry] webhook_secrets_key_file or $TRUSTPUB_WEBHOOK_SECRETS_KEYS: the keys
    # that encrypt webhook secrets; None: a key file the registry keeps in its directory.
    registry_webhook_keys: WebhookKeys | None = field(default=None, repr=False)
    rate_limits: RateLimits = field(default_factory=RateLimits)
    server: ServerSettings = field(default_factory=ServerSettings)
    # Peers (addresses or CIDRs) whose forwarding header names the client; none by default.
    trusted_proxies: tuple[str, ...] = ()
    forwarded_header: str = "x-forwarded-for"
    secret_scanning: SecretScanningSettings = field(default_factory=SecretScanningSettings)
    notifications: NotificationSettings = field(default_factory=NotificationSettings)
    owner_configs: OwnerConfigSettings = field(default_factory=OwnerConfigSettings)

    def issuer(self, url: str) -> Issuer | None:
        for issuer in self.issuers:
            if issuer.url == url:
                return issuer
        return None


_TOP_KEYS = {
    "listen",
    "public_url",
    "audience",
    "issuers",
    "policy_dir",
    "store",
    "data_dir",
    "max_token_ttl",
    "jwt_leeway",
    "max_jwt_lifetime",
    "introspection_credentials",
    "log_level",
    "policy_reload_interval",
    "key_sets",
    "registry",
    "rate_limits",
    "server",
    "trusted_proxies",
    "forwarded_header",
    "secret_scanning",
    "notifications",
    "trusted_publishing_configs",
}

ENV_VARS = {
    "TRUSTPUB_LISTEN": "listen",
    "TRUSTPUB_PUBLIC_URL": "public_url",
    "TRUSTPUB_AUDIENCE": "audience",
    "TRUSTPUB_POLICY_DIR": "policy_dir",
    "TRUSTPUB_STORE": "store",
    "TRUSTPUB_DATA_DIR": "data_dir",
    "TRUSTPUB_MAX_TOKEN_TTL": "max_token_ttl",
    "TRUSTPUB_MAX_JWT_LIFETIME": "max_jwt_lifetime",
    "TRUSTPUB_LOG_LEVEL": "log_level",
    "TRUSTPUB_INTROSPECTION_CREDENTIALS": "introspection_credentials",
    "TRUSTPUB_ISSUERS": "issuers",
    "TRUSTPUB_REGISTRY": "registry",
    "TRUSTPUB_WORKERS": "server",
    "TRUSTPUB_TRUSTED_PROXIES": "trusted_proxies",
}


def load_settings(
    path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Read the TOML file at ``path`` (or ``$TRUSTPUB_CONFIG``), then apply overrides."""
    env = dict(os.environ if environ is None else environ)
    raw: dict[str, Any] = {}
    config_path = path if path is not None else env.get("TRUSTPUB_CONFIG") or None
    source = "configuration"
    if config_path is not None:
        source = str(config_path)
        try:
            with open(config_path, "rb") as fh:
                raw = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigurationError(f"{source}: file not found") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigurationError(f"{source}: invalid TOML: {exc}") from None
        except OSError as exc:
            raise ConfigurationError(f"{source}: cannot read: {exc.strerror}") from None
    unknown = sorted(set(raw) - _TOP_KEYS)
    if unknown:
        raise ConfigurationError(
            f"{source}: unknown key(s): {', '.join(unknown)} "
            f"(known: {', '.join(sorted(_TOP_KEYS))})"
        )
    for var, key in ENV_VARS.items():
        if var in env:
            value = _from_env(var, key, env[var])
            if isinstance(value, dict) and isinstance(raw.get(key), dict):
                value = {**raw[key], **value}  # one key of a table: keep the file's others
            raw[key] = value
    settings = _build(raw, source)
    if settings.registry_webhook_keys is None and env.get(WEBHOOK_KEYS_ENV):
        # The file, when both are given, wins (as smtp_password_file does).
        try:
            keys = WebhookKeys.parse(env[WEBHOOK_KEYS_ENV].split(","), WEBHOOK_KEYS_ENV)
        except WebhookKeyError as exc:
            raise ConfigurationError(str(exc)) from None
        settings = replace(settings, registry_webhook_keys=keys)
    return settings


def _parse_webhook_keys_file(value: object, source: str) -> WebhookKeys:
    """``[registry] webhook_secrets_key_file``: read now, so a key file that cannot be
    used stops the start (trustpub.registry.db.webhook_keys)."""
    where = f"{source}: registry.webhook_secrets_key_file"
    if not isinstance(value, str) or not value:
        raise ConfigurationError(f"{where}: expected the path of a key file")
    try:
        return WebhookKeys.load(Path(value))
    except WebhookKeyError as exc:
        raise ConfigurationError(f"{where}: {exc}") from None


def _from_env(var: str, key: str, value: str) -> Any:
    if key == "introspection_credentials":
        return [v.strip() for v in value.split(",") if v.strip()]
    if key == "issuers":
        return parse_issuer_specs([v for v in value.split(",") if v.strip()], var)
    if key == "trusted_proxies":
        return [v.strip() for v in value.split(",") if v.strip()]
    if key == "server":  # TRUSTPUB_WORKERS
        if not (value.isascii() and value.strip().isdigit()):
            raise ConfigurationError(f"{var}: expected a number of worker processes")
        return {"workers": int(value)}
    if key in ("max_token_ttl", "max_jwt_lifetime") and value.strip().isdigit():
        return int(value)
    if key == "registry":
        if value.lower() not in ("on", "off", "true", "false", "1", "0"):
            raise ConfigurationError(f"{var}: expected on or off, got {value!r}")
        return {"enabled": value.lower() in ("on", "true", "1")}
    return value


def _expect(raw: Mapping[str, Any], key: str, kind: type, source: str) -> Any:
    value = raw[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ConfigurationError(
            f"{source}: {key}: expected {kind.__name__}, got {type(value).__name__}"
        )
    if isinstance(value, str) and not value.strip():
        raise ConfigurationError(f"{source}: {key}: must not be empty")
    return value


def parse_host_port(value: str, where: str, *, allow_port_zero: bool = False) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8080`` for IPv6) as ``(host, port)``; the one parser for
    every listen address. Port 0 (any free port) only where ``allow_port_zero``."""
    host, sep, port = value.rpartition(":")
    host = host.strip("[]")
    lowest = 0 if allow_port_zero else 1
    if not sep or not host or not port.isdigit() or not lowest <= int(port) < 65536:
        raise ConfigurationError(f"{where}: expected HOST:PORT, got {value!r}")
    return host, int(port)


ISSUER_SPEC_FORM = "KIND=URL, with +dev after the URL of a local development issuer"


def parse_issuer_spec(value: str, where: str) -> Issuer:
    """One issuer written as ``KIND=URL`` (``github=https://ghe.example/_services/token``);
    a ``+dev`` suffix marks a development issuer, the only kind allowed plain http, and
    only on a loopback address. The one form of ``TRUSTPUB_ISSUERS`` and ``--issuer``."""
    kind, sep, url = value.strip().partition("=")
    if not sep or not kind or not url:
        raise ConfigurationError(f"{where}: expected {ISSUER_SPEC_FORM}, got {value!r}")
    provider = next((k for k in PROVIDER_KINDS if k == kind.strip()), None)
    if provider is None:
        raise ConfigurationError(
            f"{where}: unknown provider {kind.strip()!r} in {value!r} "
            f"(expected one of: {', '.join(PROVIDER_KINDS)})"
        )
    development = url.endswith("+dev")
    try:
        return Issuer(url.removesuffix("+dev"), provider, development)
    except ConfigurationError as exc:
        hint = "" if development or not url.startswith("http:") else "; in KIND=URL form: URL+dev"
        raise ConfigurationError(f"{where}: {exc.detail}{hint}") from None


def parse_issuer_specs(values: Sequence[str], where: str) -> tuple[Issuer, ...]:
    """Several ``KIND=URL[+dev]`` specs; an empty list is refused, not read as "none"."""
    if not values:
        raise ConfigurationError(f"{where}: expected {ISSUER_SPEC_FORM}, got nothing")
    issuers = tuple(parse_issuer_spec(v, where) for v in values)
    _refuse_duplicates(issuers, where)
    return issuers


def issuer_spec(issuer: Issuer) -> str:
    """``issuer`` written as ``parse_issuer_spec`` reads it."""
    return f"{issuer.provider}={issuer.url}{'+dev' if issuer.development else ''}"


def audience_for(public_url: str) -> str:
    """The audience the crates.io action derives: the URL without its scheme."""
    return re.sub(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", "", public_url).rstrip("/")


def _build(raw: Mapping[str, Any], source: str) -> Settings:
    s = Settings()
    host, port = s.host, s.port
    if "listen" in raw:
        host, port = parse_host_port(_expect(raw, "listen", str, source), f"{source}: listen")
    public_url = f"http://{'localhost' if host == DEFAULT_HOST else host}:{port}"
    if host in ALL_INTERFACES and "public_url" not in raw:
        # A wildcard address is no URL a client can use: the audience would silently
        # become "0.0.0.0:PORT", which no real token carries.
        raise ConfigurationError(
            f"{source}: listen: {host} listens on all interfaces; set public_url "
            "(TRUSTPUB_PUBLIC_URL) to the URL clients use, the token audience is derived from it"
        )
    if "public_url" in raw:
        public_url = _expect(raw, "public_url", str, source).rstrip("/")
        parts = urlsplit(public_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigurationError(
                f"{source}: public_url: expected an http(s) URL, got {public_url!r}"
            )
    audience = audience_for(public_url)
    if "audience" in raw:
        audience = _expect(raw, "audience", str, source)
    issuers = s.issuers
    if "issuers" in raw:
        # From TRUSTPUB_ISSUERS already parsed; from the file, a list of tables.
        value = raw["issuers"]
        issuers = value if isinstance(value, tuple) else _parse_issuers(value, source)
    changes: dict[str, Any] = {
        "host": host,
        "port": port,
        "public_url": public_url,
        "audience": audience,
        "issuers": issuers,
    }
    if "policy_dir" in raw:
        changes["policy_dir"] = Path(_expect(raw, "policy_dir", str, source))
    if "store" in raw:
        changes["store_url"] = _expect(raw, "store", str, source)
    if "data_dir" in raw:
        changes["data_dir"] = Path(_expect(raw, "data_dir", str, source))
    if "max_token_ttl" in raw:
        changes["max_token_ttl"] = parse_duration(raw["max_token_ttl"], f"{source}: max_token_ttl")
    if "max_jwt_lifetime" in raw:
        changes["max_jwt_lifetime"] = parse_duration(
            raw["max_jwt_lifetime"], f"{source}: max_jwt_lifetime"
        )
    if "jwt_leeway" in raw:
        leeway = _expect(raw, "jwt_leeway", int, source)
        if not 0 <= leeway <= 300:
            raise ConfigurationError(f"{source}: jwt_leeway: expected 0..300 seconds")
        changes["jwt_leeway"] = leeway
    if "policy_reload_interval" in raw:
        interval = raw["policy_reload_interval"]
        if isinstance(interval, bool) or not isinstance(interval, int | float) or interval < 0:
            raise ConfigurationError(
                f"{source}: policy_reload_interval: expected seconds >= 0 (0 disables)"
            )
        changes["policy_reload_interval"] = float(interval)
    if "log_level" in raw:
        level = _expect(raw, "log_level", str, source).lower()
        if level not in LOG_LEVELS:
            raise ConfigurationError(
                f"{source}: log_level: expected one of {', '.join(LOG_LEVELS)}, got {level!r}"
            )
        changes["log_level"] = level
    if "introspection_credentials" in raw:
        creds = _expect(raw, "introspection_credentials", list, source)
        if not all(isinstance(c, str) and _credential_ok(c) for c in creds):
            raise ConfigurationError(
                f"{source}: introspection_credentials: expected strings of 16 characters "
                "or more, or sha256:<64 hex digits> (the SHA-256 of the credential)"
            )
        changes["introspection_credentials"] = tuple(creds)
    if "key_sets" in raw:
        changes["key_sets"] = _parse_key_sets(_expect(raw, "key_sets", dict, source), source)
    if "registry" in raw:
        registry = _expect(raw, "registry", dict, source)
        known = {
            "enabled",
            "auth_required",
            "require_metadata",
            "login_url",
            "invitation_ttl",
            "database",
            "storage",
            "downloads",
            "s3",
            "categories",
            "webhook_secrets_key_file",
        }
        extra = sorted(set(registry) - known)
        if extra:
            raise ConfigurationError(f"{source}: registry: unknown key(s): {', '.join(extra)}")
        for key in ("enabled", "auth_required", "require_metadata"):
            if key in registry:
                if not isinstance(registry[key], bool):
                    raise ConfigurationError(f"{source}: registry.{key}: expected true or false")
                changes[f"registry_{key}"] = registry[key]
        changes.update(_parse_registry_access(registry, source))
        if "database" in registry:
            changes["registry_database"] = _parse_database(registry["database"], source)
        changes["registry_storage"] = parse_storage(registry, source)
        if "categories" in registry:
            changes["registry_categories"] = _parse_categories(registry["categories"], source)
        if "webhook_secrets_key_file" in registry:
            changes["registry_webhook_keys"] = _parse_webhook_keys_file(
                registry["webhook_secrets_key_file"], source
            )
    if "rate_limits" in raw:
        changes["rate_limits"] = _parse_rate_limits(
            _expect(raw, "rate_limits", dict, source), source
        )
    if "server" in raw:
        changes["server"] = _parse_server(_expect(raw, "server", dict, source), source)
    if "trusted_proxies" in raw:
        changes["trusted_proxies"] = _parse_trusted_proxies(raw["trusted_proxies"], source)
    if "forwarded_header" in raw:
        header = _expect(raw, "forwarded_header", str, source).lower()
        if header not in FORWARDED_HEADERS:
            raise ConfigurationError(
                f"{source}: forwarded_header: expected one of {', '.join(FORWARDED_HEADERS)}, "
                f"got {header[:40]!r}"
            )
        changes["forwarded_header"] = header
    if "secret_scanning" in raw:
        changes["secret_scanning"] = _parse_secret_scanning(
            _expect(raw, "secret_scanning", dict, source), f"{source}: secret_scanning"
        )
    if "notifications" in raw:
        changes["notifications"] = parse_notifications(
            _expect(raw, "notifications", dict, source), source
        )
    if "trusted_publishing_configs" in raw:
        changes["owner_configs"] = _parse_owner_configs(
            _expect(raw, "trusted_publishing_configs", dict, source), source
        )
    return replace(s, **changes)


def _parse_secret_scanning(value: Mapping[str, Any], where: str) -> SecretScanningSettings:
    known = {f.name for f in dataclasses.fields(SecretScanningSettings)}
    extra = sorted(set(value) - known)
    if extra:
        raise ConfigurationError(f"{where}: unknown key(s): {', '.join(extra)}")
    changes: dict[str, Any] = {}
    for key in ("enabled", "development"):
        if key in value:
            if not isinstance(value[key], bool):
                raise ConfigurationError(f"{where}.{key}: expected true or false")
            changes[key] = value[key]
    if "refresh_cooldown" in value:
        changes["refresh_cooldown"] = parse_duration(
            value["refresh_cooldown"], f"{where}.refresh_cooldown"
        )
    result = replace(SecretScanningSettings(), **changes)
    if "key_url" in value:
        if not isinstance(value["key_url"], str):
            raise ConfigurationError(f"{where}.key_url: expected a URL")
        result = replace(result, key_url=value["key_url"])
    try:
        check_key_url(result.key_url, result.development)
    except ConfigurationError as exc:
        raise ConfigurationError(f"{where}.key_url: {exc.detail}") from None
    return result


def _parse_owner_configs(value: Mapping[str, Any], source: str) -> OwnerConfigSettings:
    where = f"{source}: trusted_publishing_configs"
    known = {"github_api_url", "github_api_urls", "github_api_token", "pending_ttl"}
    extra = sorted(set(value) - known)
    if extra:
        raise ConfigurationError(f"{where}: unknown key(s): {', '.join(extra)}")
    changes: dict[str, Any] = {}

    def api_url(key: str, url: object) -> str:
        if not isinstance(url, str) or (
            (url and urlsplit(url).scheme not in ("http", "https")) or url != url.strip()
        ):
            raise ConfigurationError(f'{where}: {key}: expected an http(s) URL or ""')
        return url.rstrip("/")

    if "github_api_url" in value:
        changes["github_api_url"] = api_url("github_api_url", value["github_api_url"])
    if "github_api_urls" in value:
        table = value["github_api_urls"]
        if not isinstance(table, dict):
            raise ConfigurationError(f"{where}: github_api_urls: expected a table")
        changes["github_api_urls"] = tuple(
            (issuer, api_url(f"github_api_urls.{issuer}", url)) for issuer, url in table.items()
        )
    if "github_api_token" in value:
        token = value["github_api_token"]
        if not isinstance(token, str) or not token:
            raise ConfigurationError(f"{where}: github_api_token: expected a non-empty string")
        changes["github_api_token"] = token
    if "pending_ttl" in value:
        changes["pending_ttl"] = parse_duration(value["pending_ttl"], f"{where}.pending_ttl")
    return replace(OwnerConfigSettings(), **changes)


def _parse_database(value: object, source: str) -> str:
    """``[registry] database``: a PostgreSQL URL (the SQLite default has no setting)."""
    if not isinstance(value, str) or urlsplit(value).scheme not in ("postgresql", "postgres"):
        raise ConfigurationError(
            f"{source}: registry.database: expected postgresql://USER@HOST:PORT/DB "
            "(leave it out for the SQLite file under data_dir)"
        )
    return value


def _parse_rate_limits(value: Mapping[str, Any], source: str) -> RateLimits:
    names = {
        "exchange_per_client": "exchange-client",
        "exchange_per_repository": "exchange-repository",
        "failed_auth_per_client": "failed-auth-client",
    }
    extra = sorted(set(value) - set(names))
    if extra:
        raise ConfigurationError(f"{source}: rate_limits: unknown key(s): {', '.join(extra)}")
    changes: dict[str, Any] = {}
    for key, item in value.items():
        try:
            changes[key] = parse_limit(names[key], item)
        except ValueError as exc:
            raise ConfigurationError(f"{source}: rate_limits.{key}: {exc}") from None
    return replace(RateLimits(), **changes)


_HASHED_CREDENTIAL = re.compile(r"sha256:[0-9a-f]{64}")


def _credential_ok(value: str) -> bool:
    if value.startswith("sha256:"):
        return _HASHED_CREDENTIAL.fullmatch(value) is not None
    return len(value) >= 16


def _parse_issuers(value: object, source: str) -> tuple[Issuer, ...]:
    if not isinstance(value, list) or not value:
        raise ConfigurationError(f"{source}: issuers: expected a non-empty list of tables")
    issuers: list[Issuer] = []
    for i, item in enumerate(value):
        where = f"{source}: issuers[{i}]"
        if not isinstance(item, dict):
            raise ConfigurationError(f"{where}: expected a table")
        extra = sorted(set(item) - {"url", "provider", "development"})
        if extra:
            raise ConfigurationError(f"{where}: unknown key(s): {', '.join(extra)}")
        url, provider = item.get("url"), item.get("provider")
        if not isinstance(url, str) or not url:
            raise ConfigurationError(f"{where}: url: expected the exact issuer URL")
        if provider not in PROVIDER_KINDS:
            raise ConfigurationError(
                f"{where}: provider: expected one of {', '.join(PROVIDER_KINDS)}, got {provider!r}"
            )
        development = item.get("development", False)
        if not isinstance(development, bool):
            raise ConfigurationError(f"{where}: development: expected true or false")
        try:
            issuers.append(Issuer(url, provider, development))
        except ConfigurationError as exc:
            raise ConfigurationError(f"{where}: {exc.detail}") from None
    _refuse_duplicates(issuers, f"{source}: issuers")
    return tuple(issuers)


def _refuse_duplicates(issuers: Sequence[Issuer], where: str) -> None:
    urls = [i.url for i in issuers]
    duplicates = sorted({u for u in urls if urls.count(u) > 1})
    if duplicates:
        raise ConfigurationError(f"{where}: listed twice: {', '.join(duplicates)}")


def _parse_key_sets(value: Mapping[str, Any], source: str) -> KeySetSettings:
    extra = sorted(set(value) - {"max_age", "refresh_cooldown", "max_stale"})
    if extra:
        raise ConfigurationError(f"{source}: key_sets: unknown key(s): {', '.join(extra)}")
    changes = {
        k: parse_duration(v, f"{source}: key_sets.{k}")
        for k, v in value.items()
        if k in ("max_age", "refresh_cooldown", "max_stale")
    }
    result = replace(KeySetSettings(), **changes)
    if result.max_stale < result.max_age:
        raise ConfigurationError(
            f"{source}: key_sets: max_stale ({result.max_stale} s) must be at least "
            f"max_age ({result.max_age} s)"
        )
    return result


# (key, lowest, highest): a value outside is a mistake, not a tuning choice.
_SERVER_LIMITS = {
    "workers": (1, 64),
    "head_timeout": (1, 300),
    "body_timeout": (1, 3600),
    "keep_alive_timeout": (1, 3600),
    "shutdown_timeout": (1, 3600),
    "max_connections": (16, 1_000_000),
    "max_requests": (1, 1_000_000),
}


_HTTP_PARSERS = ("httptools", "h11")


def _parse_server(value: Mapping[str, Any], source: str) -> ServerSettings:
    extra = sorted(set(value) - set(_SERVER_LIMITS) - {"http"})
    if extra:
        raise ConfigurationError(f"{source}: server: unknown key(s): {', '.join(extra)}")
    changes: dict[str, Any] = {}
    for key, item in value.items():
        if key == "http":
            if item not in _HTTP_PARSERS:
                raise ConfigurationError(
                    f"{source}: server.http: expected one of {', '.join(_HTTP_PARSERS)}"
                )
            changes[key] = item
            continue
        low, high = _SERVER_LIMITS[key]
        if key.endswith("_timeout"):
            number = parse_duration(item, f"{source}: server.{key}")
        elif isinstance(item, int) and not isinstance(item, bool):
            number = item
        else:
            raise ConfigurationError(f"{source}: server.{key}: expected an integer")
        if not low <= number <= high:
            raise ConfigurationError(f"{source}: server.{key}: expected {low}..{high}")
        changes[key] = number
    return replace(ServerSettings(), **changes)


def _parse_trusted_proxies(value: object, source: str) -> tuple[str, ...]:
    from trustpub.web import parse_networks

    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigurationError(
            f"{source}: trusted_proxies: expected a list of addresses or CIDRs"
        )
    try:
        parse_networks(value)
    except ValueError as exc:
        raise ConfigurationError(f"{source}: trusted_proxies: {exc}") from None
    return tuple(value)
