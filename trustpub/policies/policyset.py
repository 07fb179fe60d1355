"""An immutable set of policies with its lookup index."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from trustpub.policies.model import Policy
from trustpub.text import fold


@dataclass(frozen=True, slots=True, init=False)
class PolicySet:
    """Policies indexed by (issuer URL, lower-cased repository or project path).

    A lookup is one dictionary access, so it costs the same with ten policies or a
    hundred thousand. ``fingerprint`` is a digest of the loaded files' contents (empty
    when built in memory) and ``files`` names them, for readiness reports.
    """

    policies: tuple[Policy, ...]
    files: tuple[str, ...]
    fingerprint: str
    _index: Mapping[tuple[str, str], tuple[Policy, ...]] = field(repr=False, compare=False)

    def __init__(
        self, policies: Iterable[Policy], *, files: Iterable[str] = (), fingerprint: str = ""
    ) -> None:
        ordered = tuple(policies)
        index: dict[tuple[str, str], list[Policy]] = {}
        for policy in ordered:
            index.setdefault(policy.key, []).append(policy)
        object.__setattr__(self, "policies", ordered)
        object.__setattr__(self, "files", tuple(files))
        object.__setattr__(self, "fingerprint", fingerprint)
        object.__setattr__(
            self, "_index", MappingProxyType({k: tuple(v) for k, v in index.items()})
        )

    def candidates(self, issuer: str, repository: str) -> tuple[Policy, ...]:
        """Policies bound to exactly ``issuer`` that name ``repository`` (any case)."""
        # The issuer is part of the key, so a policy for the canonical GitHub issuer is
        # never a candidate for a token from another issuer (a GHES instance, a test
        # issuer) that happens to carry the same repository name.
        return self._index.get((issuer, fold(repository)), ())

    def __len__(self) -> int:
        return len(self.policies)

    def __iter__(self) -> Iterator[Policy]:
        return iter(self.policies)
