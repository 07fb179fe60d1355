"""Owner invitations: what happens when one is sent or answered, and how one is shown.

``cargo owner --add`` invites (``changes.invite_owners``); the invited user accepts or
declines with ``PUT /api/v1/me/crate_owner_invitations/{crate_id}`` (``trustpub.registry.me``).
An invitation expires after ``[registry] invitation_ttl`` (30 days by default, as on
crates.io). Owners a Trusted Publishing policy names for a new crate are not invited:
the operator's policy decided them, so they become owners when the crate is created.

``record_invitation_event`` is the one call site for every invitation event: today it
writes an audit log line; notifying the invited user (mail, an audit trail table)
hooks in there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from trustpub.logs import audit
from trustpub.registry.db import Invitation
from trustpub.web import rfc3339

InvitationAction = Literal["invited", "accepted", "declined"]


@dataclass(frozen=True, slots=True)
class InvitationEvent:
    """An invitation sent or answered: who, which crate, by whom, until when."""

    action: InvitationAction
    crate: str
    crate_id: int
    invitee: str
    inviter: str | None
    expires_at: int

    @classmethod
    def invited(cls, invitation: Invitation) -> InvitationEvent:
        return cls._of("invited", invitation)

    @classmethod
    def answered(cls, invitation: Invitation, *, accepted: bool) -> InvitationEvent:
        return cls._of("accepted" if accepted else "declined", invitation)

    @classmethod
    def _of(cls, action: InvitationAction, invitation: Invitation) -> InvitationEvent:
        return cls(
            action=action,
            crate=invitation.crate_name,
            crate_id=invitation.crate_id,
            invitee=invitation.invitee,
            inviter=invitation.inviter,
            expires_at=invitation.expires_at,
        )

    def fields(self) -> dict[str, Any]:
        return {
            "crate": self.crate,
            "invitee": self.invitee,
            # None: a Trusted Publishing token sent it.
            "inviter": self.inviter,
            "expires_at": rfc3339(self.expires_at),
        }


def record_invitation_event(event: InvitationEvent) -> InvitationEvent:
    """Record an invitation event (after its change was committed) and return it.

    The one place an invitation is announced: an audit line now; the invited user's
    notification is sent from here too once the registry can reach users.
    """
    audit("owner-invitation", outcome=event.action, **event.fields())
    return event


def invitation_json(invitation: Invitation) -> dict[str, Any]:
    """crates.io's ``/api/v1/me/crate_owner_invitations`` item."""
    return {
        "invitee_id": invitation.invitee_id,
        "inviter_id": invitation.inviter_id,
        "invited_by_username": invitation.inviter,
        "crate_name": invitation.crate_name,
        "crate_id": invitation.crate_id,
        "created_at": rfc3339(invitation.created_at),
        "expires_at": rfc3339(invitation.expires_at),
    }
