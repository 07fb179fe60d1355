"""Telling crate owners what happened: mail through SMTP and signed webhooks, both
delivered from the registry's outbox by a background worker.

- ``settings``: ``[notifications]`` (SMTP server, sender, webhook rules, retries)
- ``addresses``: email addresses and webhook destinations, checked
- ``messages``: what a mail and a webhook body say about an audit event
- ``mail``: SMTP; ``webhooks``: signed POSTs
- ``outbox``: ``OutboxWorker``, which claims, delivers and retries
"""

from typing import TYPE_CHECKING, Any

from trustpub.notify.addresses import DestinationRefused, WebhookRules, check_email
from trustpub.notify.settings import NotificationSettings, parse_notifications

if TYPE_CHECKING:
    from trustpub.notify.outbox import OutboxWorker
    from trustpub.notify.webhooks import signature, verify

__all__ = [
    "DestinationRefused",
    "NotificationSettings",
    "OutboxWorker",
    "WebhookRules",
    "check_email",
    "parse_notifications",
    "signature",
    "verify",
]


def __getattr__(name: str) -> Any:
    # The configuration imports the settings; the worker (httpx, the registry's
    # database) loads only when something asks for it, so every command starts fast.
    if name == "OutboxWorker":
        from trustpub.notify.outbox import OutboxWorker

        return OutboxWorker
    if name in ("signature", "verify"):
        from trustpub.notify import webhooks

        return getattr(webhooks, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
