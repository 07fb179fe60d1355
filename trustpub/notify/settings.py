"""``[notifications]``: how owners are told (SMTP mail, webhooks) and how deliveries
are retried. Parsed here, held by ``trustpub.config.Settings.notifications``."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from trustpub.errors import ConfigurationError
from trustpub.notify.addresses import WebhookRules, check_email

SMTP_PASSWORD_ENV = "TRUSTPUB_SMTP_PASSWORD"  # noqa: S105 - a variable name


@dataclass(frozen=True, slots=True)
class NotificationSettings:
    smtp_url: str | None = None
    """``smtp://host[:port]`` (port 25 by default) or ``smtps://host[:port]`` (465);
    None: no mail is sent (deliveries by mail end as failed, saying so)."""
    starttls: bool = False
    smtp_username: str | None = None
    smtp_password: str | None = field(default=None, repr=False)
    from_address: str = "trustpub@localhost"
    webhooks: WebhookRules = field(default_factory=WebhookRules)
    max_attempts: int = 8
    retry_base: int = 30
    """Seconds before the first retry; doubled for each next one, up to ``retry_max``."""
    retry_max: int = 3600
    poll_interval: float = 2.0
    lease: int = 300
    """A delivery held this long by a worker that died is taken over by another."""
    timeout: float = 10.0


_KEYS = {
    "smtp_url",
    "starttls",
    "smtp_username",
    "smtp_password_file",
    "from_address",
    "webhooks_allow_private",
    "webhooks_development",
    "max_attempts",
    "retry_base",
    "retry_max",
    "poll_interval",
}


def parse_notifications(
    value: Mapping[str, Any], source: str, environ: Mapping[str, str] | None = None
) -> NotificationSettings:
    """The ``[notifications]`` table. The SMTP password comes from
    ``smtp_password_file`` or ``$TRUSTPUB_SMTP_PASSWORD``, never the file itself."""
    where = f"{source}: notifications"
    extra = sorted(set(value) - _KEYS)
    if extra:
        raise ConfigurationError(f"{where}: unknown key(s): {', '.join(extra)}")
    changes: dict[str, Any] = {}
    if "smtp_url" in value:
        url = _text(value, "smtp_url", where)
        parts = urlsplit(url)
        if (
            parts.scheme not in ("smtp", "smtps")
            or not parts.hostname
            or parts.path not in ("", "/")
        ):
            raise ConfigurationError(
                f"{where}.smtp_url: expected smtp://HOST[:PORT] or smtps://HOST[:PORT], got {url!r}"
            )
        if parts.username or parts.password:
            raise ConfigurationError(
                f"{where}.smtp_url: put the user in smtp_username and the password in "
                f"smtp_password_file or ${SMTP_PASSWORD_ENV}, not in the URL"
            )
        try:
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError:
            raise ConfigurationError(f"{where}.smtp_url: invalid port in {url!r}") from None
        changes["smtp_url"] = url
    for key in ("starttls",):
        if key in value:
            changes[key] = _flag(value, key, where)
    if "smtp_username" in value:
        changes["smtp_username"] = _text(value, "smtp_username", where)
    if "smtp_password_file" in value:
        path = Path(_text(value, "smtp_password_file", where))
        try:
            changes["smtp_password"] = path.read_text().strip()
        except OSError as exc:
            raise ConfigurationError(
                f"{where}.smtp_password_file: cannot read {path}: {exc.strerror}"
            ) from None
    else:
        env = os.environ if environ is None else environ
        if env.get(SMTP_PASSWORD_ENV):
            changes["smtp_password"] = env[SMTP_PASSWORD_ENV]
    if "from_address" in value:
        try:
            changes["from_address"] = check_email(_text(value, "from_address", where))
        except ValueError as exc:
            raise ConfigurationError(f"{where}.from_address: {exc}") from None
    rules: dict[str, bool] = {}
    if "webhooks_allow_private" in value:
        rules["allow_private"] = _flag(value, "webhooks_allow_private", where)
    if "webhooks_development" in value:
        rules["development"] = _flag(value, "webhooks_development", where)
    changes["webhooks"] = WebhookRules(**rules)
    for key, low, high in (
        ("max_attempts", 1, 100),
        ("retry_base", 0, 86400),
        ("retry_max", 0, 7 * 86400),
    ):
        if key in value:
            number = value[key]
            if isinstance(number, bool) or not isinstance(number, int) or not low <= number <= high:
                raise ConfigurationError(f"{where}.{key}: expected an integer from {low} to {high}")
            changes[key] = number
    if "poll_interval" in value:
        interval = value["poll_interval"]
        if isinstance(interval, bool) or not isinstance(interval, int | float):
            raise ConfigurationError(f"{where}.poll_interval: expected seconds")
        if not 0.05 <= interval <= 3600:
            raise ConfigurationError(f"{where}.poll_interval: expected 0.05 to 3600 seconds")
        changes["poll_interval"] = float(interval)
    return NotificationSettings(**changes)


def _text(value: Mapping[str, Any], key: str, where: str) -> str:
    item = value[key]
    if not isinstance(item, str) or not item:
        raise ConfigurationError(f"{where}.{key}: expected a non-empty string")
    return item


def _flag(value: Mapping[str, Any], key: str, where: str) -> bool:
    item = value[key]
    if not isinstance(item, bool):
        raise ConfigurationError(f"{where}.{key}: expected true or false")
    return item
