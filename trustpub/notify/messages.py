"""What a notification says: the JSON a webhook receives and the mail an owner reads,
both from one audit event."""

from __future__ import annotations

import json

from trustpub.registry.db import AuditEvent
from trustpub.registry.db import events as kinds
from trustpub.registry.views import event_json
from trustpub.web import rfc3339


def webhook_body(event: AuditEvent, delivery_id: str, timestamp: int) -> bytes:
    """The signed body: the delivery id and timestamp are inside it too, so the
    signature over the body covers them (a replayed body shows its old timestamp)."""
    payload = {"delivery_id": delivery_id, "timestamp": timestamp, "event": event_json(event)}
    return json.dumps(payload, sort_keys=True, separators=(",", ":")).encode("utf-8")


def mail_subject(event: AuditEvent) -> str:
    crate = event.crate or "?"
    if event.kind == kinds.TRUSTPUB_PUBLISH:
        version = event.details.get("version", "?")
        return f"{crate} {version} was published through Trusted Publishing"
    if event.kind == kinds.CONFIG_CREATED:
        return f"A Trusted Publishing config was added to {crate}"
    if event.kind == kinds.CONFIG_DELETED:
        return f"A Trusted Publishing config was removed from {crate}"
    if event.kind == kinds.OWNER_INVITED:
        return f"You are invited to be an owner of crate {crate}"
    return f"{crate}: {event.kind}"


def mail_body(event: AuditEvent, login: str) -> str:
    lines = [f"Hello {login},", ""]
    crate = event.crate or "?"
    if event.kind == kinds.TRUSTPUB_PUBLISH:
        lines.append(
            f"Version {event.details.get('version', '?')} of crate {crate}, which you own, "
            "was published through Trusted Publishing."
        )
        provenance = event.details.get("provenance")
        if isinstance(provenance, dict) and provenance:
            lines += ["", "Provenance:"]
            lines += [f"  {k}: {v}" for k, v in sorted(provenance.items())]
    elif event.kind == kinds.OWNER_INVITED:
        who = event.actor_login or "An owner"
        expires = event.details.get("expires_at")
        lines.append(f"{who} invited you to be an owner of crate {crate}.")
        lines += [
            "",
            "Accept or decline with the registry's API: GET /api/v1/me/crate_owner_invitations"
            " lists your invitations, PUT /api/v1/me/crate_owner_invitations/{crate_id}"
            ' with {"crate_owner_invite": {"crate_id": ..., "accepted": true}} answers one.',
        ]
        if isinstance(expires, int):
            lines.append(f"The invitation expires at {rfc3339(expires)}.")
    else:
        verb = "added to" if event.kind == kinds.CONFIG_CREATED else "removed from"
        who = f" by {event.actor_login}" if event.actor_login else ""
        lines.append(f"A Trusted Publishing config was {verb} crate {crate}{who}.")
        if event.details:
            lines += ["", "The config:"]
            lines += [f"  {k}: {v}" for k, v in sorted(event.details.items())]
    lines += [
        "",
        f"When: {rfc3339(event.created_at)}",
        f"From: {event.client or 'unknown address'} (request {event.request_id or '-'})",
        "",
        "If you did not expect this, check the crate's audit trail and its Trusted "
        "Publishing configs, and revoke what you do not recognise.",
    ]
    return "\n".join(lines) + "\n"
