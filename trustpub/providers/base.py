"""What every provider shares: where claims come from, the facts read from them, and the
shape of one field rule (a stage of matching).

Matching reads claims only through a ``ClaimSource``. ``VerifiedClaims`` is one; the
other is ``UnverifiedClaims``, which exists for ``trustpub policy explain`` and says
in its name that nobody checked a signature. Both refuse a claim of the wrong JSON
type, so explain reaches the same verdict as the exchange would.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from trustpub.grants import Provenance
from trustpub.oidc.claims import optional_str_claim, required_str_claim
from trustpub.oidc.issuers import Issuer, ProviderKind
from trustpub.policies.model import Policy
from trustpub.text import same_folded


class ClaimSource(Protocol):
    """Typed access to a claim set (``VerifiedClaims`` or ``UnverifiedClaims``)."""

    def optional_str(self, name: str) -> str | None: ...

    def required_str(self, name: str) -> str: ...


@dataclass(frozen=True, slots=True)
class UnverifiedClaims:
    """Claims decoded WITHOUT checking a signature: a debugging aid, never a credential.

    ``trustpub.providers.match`` does not accept this type; only the explain path
    (``trustpub.providers.evaluate``) does. The getters behave as ``VerifiedClaims``'s.
    """

    claims: Mapping[str, object]

    def optional_str(self, name: str) -> str | None:
        return optional_str_claim(self.claims, name)

    def required_str(self, name: str) -> str:
        return required_str_claim(self.claims, name)


@dataclass(frozen=True, slots=True)
class WorkflowRef:
    """A parsed GitHub ``OWNER/REPO/.github/workflows/FILE@REF``."""

    repository: str
    filename: str
    ref: str

    def __str__(self) -> str:
        return f"{self.repository}/.github/workflows/{self.filename}@{self.ref}"


@dataclass(frozen=True, slots=True)
class CiConfigRef:
    """A parsed GitLab ``HOST/GROUP/PROJECT//PATH@REF`` (the ``ci_config_ref_uri`` claim):
    the instance and project the pipeline configuration comes from, its path and ref."""

    host: str
    project: str
    path: str
    ref: str


@dataclass(frozen=True, slots=True)
class TokenFacts:
    """What matching needs from a token, read and type-checked once per provider.

    ``repository`` is GitHub's ``repository`` or GitLab's ``project_path``; ``owner_id``
    is ``repository_owner_id`` or ``namespace_id``; ``workflow`` is the workflow file
    name (GitHub) or CI config path (GitLab); ``ref`` is ``ref`` or ``ref_path``.
    ``ci_config`` is GitLab's parsed ``ci_config_ref_uri`` (None for GitHub).
    """

    provider: ProviderKind
    repository: str
    owner_id: str
    workflow: str
    environment: str | None
    ref: str | None
    event: str | None
    job_workflow: WorkflowRef | None
    job_workflow_ref: str | None
    provenance: Provenance
    ci_config: CiConfigRef | None = None


class FieldCheck(NamedTuple):
    """One field of one policy against the token: what was expected, what came, ok?

    A named tuple, not a frozen dataclass: matching builds one per candidate policy and
    stage on every exchange, and a frozen dataclass's ``__init__`` sets each field
    through ``object.__setattr__`` (2.3 against 0.5 us here, ``bench/exchange_pieces.py``).
    """

    field: str
    expected: str
    got: str
    ok: bool


NONE_SHOWN = "(none)"
ANY_SHOWN = "(any)"


@dataclass(frozen=True, slots=True)
class Stage:
    """One field rule: a per-policy check and the refusal when it rejects them all.

    ``check`` receives the pinned GitLab namespace id (None when there is none, and
    always for GitHub). ``refusal`` receives the policies that were still candidates
    when this stage rejected every one of them.
    """

    field: str
    check: Callable[[Policy, TokenFacts, str | None], FieldCheck]
    refusal: Callable[[TokenFacts, Sequence[Policy], str | None], str]


@dataclass(frozen=True, slots=True)
class ProviderRules:
    """A provider: how facts are read, which events are refused, and its stages."""

    kind: ProviderKind
    read_facts: Callable[[ClaimSource, Issuer], TokenFacts]
    refused_event: Callable[[TokenFacts], str | None]
    stages: tuple[Stage, ...]


def config_prefix(facts: TokenFacts) -> str:
    """crates.io's opening for every per-field refusal."""
    return f"The Trusted Publishing config for repository `{facts.repository}`"


def backticked(values: Iterable[str]) -> str:
    """Sorted, deduplicated, each in backticks: the list form of crates.io's messages."""
    return ", ".join(f"`{v}`" for v in sorted(set(values)))


def numeric_list(values: Iterable[str]) -> str:
    """Sorted, deduplicated ids without backticks, as crates.io lists owner ids."""
    return ", ".join(sorted(set(values), key=lambda v: (len(v), v)))


def optional_nonempty(source: ClaimSource, name: str) -> str | None:
    """An optional string claim; an empty string counts as absent."""
    return source.optional_str(name) or None


# -- rules both providers share ---------------------------------------------------------


def check_environment(policy: Policy, facts: TokenFacts, pin: str | None) -> FieldCheck:
    got = facts.environment if facts.environment is not None else NONE_SHOWN
    if policy.environment is None:
        # A policy without an environment accepts any (crates.io's rule).
        return FieldCheck("environment", ANY_SHOWN, got, True)
    # ASCII letters fold, nothing else: `Kube-prod` spelt with the Kelvin sign is not
    # `kube-prod` (see trustpub.text).
    ok = facts.environment is not None and same_folded(facts.environment, policy.environment)
    return FieldCheck("environment", policy.environment, got, ok)


def environment_refusal(facts: TokenFacts, policies: Sequence[Policy], pin: str | None) -> str:
    expected = backticked(p.environment for p in policies if p.environment is not None)
    if facts.environment is None:
        return (
            f"{config_prefix(facts)} requires an environment, but the JWT does not specify "
            f"one. Expected environments: {expected}"
        )
    return (
        f"{config_prefix(facts)} does not match the environment `{facts.environment}` in "
        f"the JWT. Expected environments: {expected}"
    )


def check_refs(policy: Policy, facts: TokenFacts, pin: str | None) -> FieldCheck:
    got = facts.ref if facts.ref is not None else NONE_SHOWN
    if not policy.refs:
        return FieldCheck("refs", ANY_SHOWN, got, True)
    expected = ", ".join(p.text for p in policy.refs)
    ok = facts.ref is not None and any(p.matches(facts.ref) for p in policy.refs)
    return FieldCheck("refs", expected, got, ok)


def refs_refusal(facts: TokenFacts, policies: Sequence[Policy], pin: str | None) -> str:
    expected = backticked(r.text for p in policies for r in p.refs)
    if facts.ref is None:
        return (
            f"{config_prefix(facts)} requires a ref, but the JWT does not specify one. "
            f"Expected refs: {expected}"
        )
    return (
        f"{config_prefix(facts)} does not match the ref `{facts.ref}` in the JWT. "
        f"Expected refs: {expected}"
    )


ENVIRONMENT_STAGE = Stage("environment", check_environment, environment_refusal)
REFS_STAGE = Stage("refs", check_refs, refs_refusal)
