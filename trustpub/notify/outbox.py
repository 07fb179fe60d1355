"""The delivery worker: sends what the outbox holds, apart from the requests that
queued it (a slow or failing receiver never delays or fails a publish).

Each pass lists due rows, claims each with one conditional UPDATE (several workers or
processes may run: only one wins a row, ``trustpub.registry.db.events.claim``),
delivers it, and records the outcome. A failure is retried after ``retry_base``
seconds, doubling each time up to ``retry_max``, until ``max_attempts`` attempts were
made; the row then stays ``failed`` with its last error, which owners see in the audit
and webhooks answers.
"""

from __future__ import annotations

import logging
import os
import secrets
import smtplib

import anyio
import anyio.to_thread
import httpx

from trustpub.notify import messages, webhooks
from trustpub.notify.addresses import DestinationRefused
from trustpub.notify.mail import MailNotConfigured, send_mail
from trustpub.notify.settings import NotificationSettings
from trustpub.registry.db import AuditEvent, Delivery, RegistryDB, Webhook
from trustpub.registry.db import events as outbox
from trustpub.registry.db.errors import RegistryDataError, StorageUnavailable
from trustpub.registry.db.webhook_keys import SecretUnreadable

log = logging.getLogger("trustpub.notify")

BATCH = 50


class OutboxWorker:
    """Delivers the outbox of ``db``. ``worker_id`` names it in claims (unique per
    worker: the process id and a random part by default)."""

    def __init__(
        self,
        db: RegistryDB,
        settings: NotificationSettings,
        http_client: httpx.AsyncClient,
        *,
        worker_id: str | None = None,
    ) -> None:
        self.db = db
        self.settings = settings
        self.http = http_client
        self.worker_id = worker_id or f"{os.getpid()}-{secrets.token_hex(4)}"

    async def run_forever(self) -> None:
        """Deliver, then sleep ``poll_interval``; storage outages are logged, not raised."""
        while True:
            try:
                await self.deliver_due()
            except RegistryDataError as exc:
                log.warning("outbox: storage unavailable", extra={"fields": {"reason": str(exc)}})
            except Exception:
                # Never let one bad pass stop the service (the task shares its lifespan).
                log.exception("outbox: delivery pass failed")
            await anyio.sleep(self.settings.poll_interval)

    async def deliver_due(self) -> int:
        """One pass; returns how many deliveries this worker attempted."""
        lease = self.settings.lease
        ids = await anyio.to_thread.run_sync(self.db.outbox_due, lease, BATCH)
        attempted = 0
        for row_id in ids:
            claimed = await anyio.to_thread.run_sync(
                self.db.outbox_claim, row_id, self.worker_id, lease
            )
            if claimed is None:
                continue  # another worker has it, or it is done
            attempted += 1
            await self._attempt(*claimed)
        return attempted

    async def _attempt(self, row: Delivery, event: AuditEvent, hook: Webhook | None) -> None:
        final = False
        try:
            if row.channel == outbox.EMAIL:
                await self._mail(row, event)
            else:
                await self._webhook(row, event, hook)
        except MailNotConfigured as exc:
            error, final = str(exc), True
        except _Gone as exc:
            error, final = str(exc), True
        except SecretUnreadable as exc:
            # The operator's to fix (a key missing from the configuration): logged for
            # them with the webhook's id, retried like any failure meanwhile. Owners
            # read the delivery's state: no key names there.
            log.error(
                "webhook secret cannot be decrypted",
                extra={
                    "fields": {"webhook": exc.webhook_id, "delivery": row.id, "reason": exc.reason}
                },
            )
            error = "the webhook's secret cannot be decrypted with the registry's keys"
        except DestinationRefused as exc:
            error = str(exc)
        except webhooks.DeliveryFailed as exc:
            error = str(exc)
        except smtplib.SMTPResponseException as exc:
            # The code only: the server's text may name the address, which the other
            # owners who read the delivery state must not learn.
            error = f"the mail server refused the message (SMTP {exc.smtp_code})"
        except smtplib.SMTPRecipientsRefused:
            error = "the mail server refused the recipient"
        except (OSError, smtplib.SMTPException) as exc:
            error = f"{type(exc).__name__}: {exc}"
            if row.channel == outbox.EMAIL:
                error = f"cannot reach the mail server ({type(exc).__name__})"
        except Exception as exc:
            # Unexpected (a bug, a library's surprise): retried like any failure, and
            # logged with its traceback.
            log.exception("outbox: unexpected failure", extra={"fields": {"delivery": row.id}})
            error = f"unexpected error ({type(exc).__name__})"
        else:
            await anyio.to_thread.run_sync(self.db.outbox_delivered, row.id, self.worker_id)
            log.info(
                "notification delivered",
                extra={"fields": {"delivery": row.id, "channel": row.channel, "event": event.id}},
            )
            return
        next_at = None if final else self._next_attempt(row.attempts)
        await anyio.to_thread.run_sync(
            self.db.outbox_failed, row.id, self.worker_id, error, next_at
        )
        log.warning(
            "notification not delivered",
            extra={
                "fields": {
                    "delivery": row.id,
                    "channel": row.channel,
                    "attempts": row.attempts,
                    "final": next_at is None,
                    "error": error,
                }
            },
        )

    def _next_attempt(self, attempts: int) -> int | None:
        """When to try again after ``attempts`` attempts, or None to give up."""
        s = self.settings
        if attempts >= s.max_attempts:
            return None
        delay: int = min(s.retry_base << max(attempts - 1, 0), s.retry_max)
        return self.db.now() + delay

    async def _mail(self, row: Delivery, event: AuditEvent) -> None:
        assert row.address is not None
        subject = messages.mail_subject(event)
        body = messages.mail_body(event, row.recipient)
        await anyio.to_thread.run_sync(send_mail, self.settings, row.address, subject, body)

    async def _webhook(self, row: Delivery, event: AuditEvent, hook: Webhook | None) -> None:
        if hook is None:
            raise _Gone("the webhook subscription was deleted")
        secret = await anyio.to_thread.run_sync(self._secret, hook)
        timestamp = self.db.now()
        delivery_id = str(row.id)
        body = messages.webhook_body(event, delivery_id, timestamp)
        await webhooks.post(
            self.http,
            self.settings.webhooks,
            hook.url,
            secret,
            body,
            delivery_id=delivery_id,
            timestamp=timestamp,
            kind=event.kind,
            time_limit=self.settings.timeout,
        )

    def _secret(self, hook: Webhook) -> str:
        try:
            return self.db.webhook_secret(hook)
        except StorageUnavailable as exc:  # no key configured, or its file unreadable
            raise SecretUnreadable(hook.id, exc.reason) from None


class _Gone(Exception):
    """Nothing left to deliver to."""
