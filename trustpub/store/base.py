"""The store interface every backend implements."""

from __future__ import annotations

from typing import Protocol


class NamespacePins(Protocol):
    """GitLab namespace ids recorded on a policy's first successful use.

    ``key`` identifies what is pinned (issuer and project path). ``pin_namespace`` is
    set-if-absent: it returns the id that is pinned after the call, which is the
    earlier one when another request pinned first.
    """

    async def get_namespace_pin(self, key: str) -> str | None: ...

    async def pin_namespace(self, key: str, namespace_id: str) -> str: ...
