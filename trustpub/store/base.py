"""The store interface every backend implements."""

from __future__ import annotations

from typing import Protocol

from trustpub.errors import ConfigurationError


class NamespacePins(Protocol):
    """GitLab namespace ids recorded on a policy's first successful use.

    ``key`` identifies what is pinned (issuer and project path). ``pin_namespace`` is
    set-if-absent: it returns the id that is pinned after the call, which is the
    earlier one when another request pinned first.
    """

    async def get_namespace_pin(self, key: str) -> str | None: ...

    async def pin_namespace(self, key: str, namespace_id: str) -> str: ...


class Store(NamespacePins, Protocol):
    """Issued tokens, claimed JWT ids and namespace pins, shared by every service process.

    Keys are opaque bytes computed by ``trustpub.tokens``: ``token_hash`` is the SHA-256
    of a token (a store never sees a token), ``jti_key`` the SHA-256 of issuer and
    ``jti``. Times are unix seconds; an entry whose expiry has passed is gone.

    Every backend failure (unreachable, timed out, read-only, locked for too long)
    raises ``trustpub.errors.StoreUnavailable``; the next call tries again, so a
    backend that comes back is used again without a restart.
    """

    async def issue(
        self,
        jti_key: bytes,
        jti_expires_at: int,
        token_hash: bytes,
        record: bytes,
        token_expires_at: int,
    ) -> bool:
        """Claim ``jti_key`` and store the token record, atomically.

        Returns False, storing nothing, when the jti is already claimed: one JWT yields
        at most one token, however many requests and processes race on it.
        """
        ...

    async def lookup(self, token_hash: bytes) -> bytes | None:
        """The stored record, or None when unknown, revoked or expired."""
        ...

    async def revoke(self, token_hash: bytes) -> bool:
        """Delete the token; True if an active token was deleted."""
        ...

    async def ping(self) -> None:
        """Check the backend is usable; raises ``StoreUnavailable`` if not."""
        ...

    async def aclose(self) -> None:
        """Release connections; the store is not used afterwards."""
        ...


def check_expiry(*timestamps: int) -> None:
    """Refuse expiry times that are not positive integer unix seconds.

    A backend receiving one has a caller bug; Redis would refuse ``EXAT 0`` anyway, and
    every backend must behave alike.
    """
    for ts in timestamps:
        if isinstance(ts, bool) or not isinstance(ts, int) or ts <= 0:
            raise ValueError("expiry timestamps must be positive integer unix seconds")


class StoreNotDurable(ConfigurationError):
    """The store would forget claimed JWT ids on a restart (a Redis server without
    persistence, say), so a used JWT could be exchanged again. Start-up stops with this
    one-line message, which names the fix."""
