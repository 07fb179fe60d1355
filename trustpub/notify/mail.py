"""Mail through SMTP, with the standard library's ``smtplib`` (blocking: run it in a
worker thread). ``smtps://`` is TLS from the first byte; ``smtp://`` with ``starttls``
upgrades before anything is sent; certificates are verified either way."""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from urllib.parse import urlsplit

from trustpub.notify.settings import NotificationSettings


class MailNotConfigured(Exception):
    """No ``[notifications] smtp_url``: mail cannot be sent."""


def send_mail(settings: NotificationSettings, to: str, subject: str, body: str) -> None:
    """Send one message; raises ``OSError`` / ``smtplib.SMTPException`` on failure."""
    if settings.smtp_url is None:
        raise MailNotConfigured("no SMTP server is configured ([notifications] smtp_url)")
    message = EmailMessage()
    message["From"] = settings.from_address
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = make_msgid(domain=settings.from_address.rsplit("@", 1)[-1])
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(body)
    parts = urlsplit(settings.smtp_url)
    host = parts.hostname or ""
    context = ssl.create_default_context()
    client: smtplib.SMTP
    if parts.scheme == "smtps":
        client = smtplib.SMTP_SSL(
            host, parts.port or 465, timeout=settings.timeout, context=context
        )
    else:
        client = smtplib.SMTP(host, parts.port or 25, timeout=settings.timeout)
    with client:
        if parts.scheme == "smtp" and settings.starttls:
            client.starttls(context=context)
        if settings.smtp_username:
            client.login(settings.smtp_username, settings.smtp_password or "")
        client.send_message(message)
