"""Webhook deliveries: a signed JSON POST to the address checked just before.

Headers of every delivery (the body's own ``delivery_id`` and ``timestamp`` repeat the
first two, so the signature covers them):

- ``X-Trustpub-Delivery``: the delivery's id, the same on every retry (deduplicate on it)
- ``X-Trustpub-Timestamp``: when this attempt was made, Unix seconds
- ``X-Trustpub-Event``: the event's kind
- ``X-Trustpub-Signature-256``: ``sha256=`` and the hex HMAC-SHA256 of the raw body,
  keyed with the subscription's secret (shown once, when it was created; stored
  encrypted, ``trustpub.registry.db.webhook_keys``)

The request goes to the IP address ``addresses.resolve`` checked, with the URL's host
in ``Host`` and as the TLS server name (certificates are verified against it);
redirects are not followed.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress

import anyio.to_thread
import httpx

from trustpub.notify.addresses import WebhookRules, parse_webhook_url, resolve

SIGNATURE_HEADER = "X-Trustpub-Signature-256"
DELIVERY_HEADER = "X-Trustpub-Delivery"
TIMESTAMP_HEADER = "X-Trustpub-Timestamp"
EVENT_HEADER = "X-Trustpub-Event"


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str) -> bool:
    """What a receiver does (in constant time): the test receiver and the docs use it."""
    return hmac.compare_digest(signature(secret, body), header)


class DeliveryFailed(Exception):
    """The receiver did not take the delivery (status, refusal, network)."""


async def post(
    client: httpx.AsyncClient,
    rules: WebhookRules,
    url: str,
    secret: str,
    body: bytes,
    *,
    delivery_id: str,
    timestamp: int,
    kind: str,
    time_limit: float,
) -> None:
    """Deliver ``body`` to ``url``; raises ``DeliveryFailed`` (or ``DestinationRefused``)."""
    destination = parse_webhook_url(url, rules)
    ip = await anyio.to_thread.run_sync(resolve, destination, rules)
    literal = f"[{ip}]" if isinstance(ip, ipaddress.IPv6Address) else str(ip)
    default_port = 443 if destination.scheme == "https" else 80
    host_header = (
        destination.host
        if destination.port == default_port
        else (f"{destination.host}:{destination.port}")
    )
    headers = {
        "Host": host_header,
        "Content-Type": "application/json",
        "User-Agent": "trustpub-webhooks",
        DELIVERY_HEADER: delivery_id,
        TIMESTAMP_HEADER: str(timestamp),
        EVENT_HEADER: kind,
        SIGNATURE_HEADER: signature(secret, body),
    }
    extensions = {"sni_hostname": destination.host} if destination.scheme == "https" else {}
    try:
        response = await client.post(
            f"{destination.scheme}://{literal}:{destination.port}{destination.target}",
            content=body,
            headers=headers,
            extensions=extensions,
            timeout=time_limit,
            follow_redirects=False,
        )
    except httpx.HTTPError as exc:
        raise DeliveryFailed(f"{type(exc).__name__}: {exc}") from None
    if not 200 <= response.status_code < 300:
        raise DeliveryFailed(f"the receiver answered HTTP {response.status_code}")
