"""The trust-policy model: what a registry owner allows, as immutable values.

A policy says: a CI job of this provider, from this issuer, in this repository (GitHub
``owner/name``, GitLab project path), running this workflow (and optionally in this
environment, on these refs, through this reusable workflow) may perform these
operations on these crates, with a token living this long.
"""

from __future__ import annotations

from dataclasses import dataclass

from trustpub.grants import Operation
from trustpub.oidc.issuers import ProviderKind
from trustpub.policies.patterns import RefPattern
from trustpub.text import fold

DEFAULT_TOKEN_TTL = 30 * 60
"""Seconds a token lives when its policy does not say (crates.io's 30 minutes)."""


@dataclass(frozen=True, slots=True)
class JobWorkflowRule:
    """GitHub only: the job must run this reusable workflow (``job_workflow_ref``)."""

    repository: str
    """``owner/name`` of the repository holding the reusable workflow (case-insensitive)."""
    workflow: str
    """File name under ``.github/workflows/`` (case-sensitive)."""
    ref: RefPattern | None = None
    """Pattern for the ref the reusable workflow is called at; None accepts any."""

    def describe(self) -> str:
        """The expected ``job_workflow_ref`` shape, for messages."""
        text = f"{self.repository}/.github/workflows/{self.workflow}"
        return f"{text}@{self.ref}" if self.ref is not None else text


@dataclass(frozen=True, slots=True)
class Policy:
    """One trust policy, as loaded from a ``[[policy]]`` table.

    ``repository`` is the GitHub ``owner/name`` or the GitLab project path, as written;
    lookups use ``key`` (issuer URL and lower-cased repository).
    """

    file: str
    name: str
    provider: ProviderKind
    issuer: str
    crates: tuple[str, ...]
    repository: str
    workflow: str
    """GitHub: the workflow file name. GitLab: the CI config path in the project."""
    environment: str | None = None
    refs: tuple[RefPattern, ...] = ()
    """Patterns on the ref (GitHub ``ref``, GitLab ``ref_path``); empty accepts any."""
    operations: frozenset[Operation] = frozenset({Operation.PUBLISH_UPDATE})
    token_ttl: int = DEFAULT_TOKEN_TTL
    owners: tuple[str, ...] = ()
    """Registry logins that become owners of a crate created through ``publish-new``."""
    repository_owner_id: str | None = None
    """GitHub: required; pins the owner account against name resurrection."""
    namespace_id: str | None = None
    """GitLab: the namespace id when written; otherwise pinned on first use."""
    job_workflow: JobWorkflowRule | None = None

    @property
    def id(self) -> str:
        """``file.toml#name``: unique across a policy directory."""
        return f"{self.file}#{self.name}"

    @property
    def key(self) -> tuple[str, str]:
        """The index key: (issuer URL, lower-cased repository or project path)."""
        return (self.issuer, fold(self.repository))
