"""Matching verified claims to policies, producing a ``Grant``.

Matching is a sequence of filter stages over the candidate policies for (issuer,
lower-cased repository): the event refusal first, then "no candidates", then each
provider stage in order. The first stage that leaves no candidate refuses with its own
message, naming what the token carried and what the policies expect. Every matching
policy contributes to the grant.

``evaluate`` is the pure core, shared with ``trustpub policy explain``; ``match`` is
the only entry point for the exchange and accepts ``VerifiedClaims`` alone.
"""

from __future__ import annotations

from dataclasses import dataclass

from trustpub.errors import PolicyMismatch
from trustpub.grants import Grant, Operation
from trustpub.oidc.claims import VerifiedClaims
from trustpub.oidc.issuers import Issuer, ProviderKind
from trustpub.policies.model import Policy
from trustpub.policies.policyset import PolicySet
from trustpub.providers import github, gitlab
from trustpub.providers.base import FieldCheck, ProviderRules, TokenFacts
from trustpub.store.base import NamespacePins
from trustpub.text import fold

PROVIDERS: dict[ProviderKind, ProviderRules] = {"github": github.RULES, "gitlab": gitlab.RULES}


@dataclass(frozen=True, slots=True)
class PolicyReport:
    """Every field rule of one candidate policy, checked against the token."""

    policy: Policy
    checks: tuple[FieldCheck, ...]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)


@dataclass(frozen=True, slots=True)
class Evaluation:
    """The outcome of matching, with the detail ``policy explain`` shows.

    ``refusal`` is the client-facing reason when nothing matched, else None and
    ``matched`` holds every matching policy.
    """

    facts: TokenFacts
    candidates: tuple[Policy, ...]
    reports: tuple[PolicyReport, ...]
    matched: tuple[Policy, ...]
    refusal: str | None


def no_config_message(repository: str) -> str:
    return f"No Trusted Publishing config found for repository `{repository}`."


def evaluate(policies: PolicySet, facts: TokenFacts, issuer: Issuer, pin: str | None) -> Evaluation:
    """Run the stages over the candidates. Pure: reads nothing, records nothing.

    ``pin`` is the namespace id pinned for this GitLab project (None: not pinned, and
    always None for GitHub).
    """
    rules = PROVIDERS[issuer.provider]
    event_refusal = rules.refused_event(facts)
    if event_refusal is not None:
        return Evaluation(facts, (), (), (), event_refusal)
    # The index key already binds the issuer; the provider filter is a second lock so a
    # policy of one kind can never be judged by the other kind's rules.
    candidates = tuple(
        p
        for p in policies.candidates(issuer.url, facts.repository)
        if p.provider == issuer.provider
    )
    reports = tuple(
        PolicyReport(p, tuple(stage.check(p, facts, pin) for stage in rules.stages))
        for p in candidates
    )
    if not candidates:
        return Evaluation(facts, (), (), (), no_config_message(facts.repository))
    remaining = list(reports)
    for position, stage in enumerate(rules.stages):
        survivors = [r for r in remaining if r.checks[position].ok]
        if not survivors:
            refusal = stage.refusal(facts, [r.policy for r in remaining], pin)
            return Evaluation(facts, candidates, reports, (), refusal)
        remaining = survivors
    return Evaluation(facts, candidates, reports, tuple(r.policy for r in remaining), None)


def build_grant(matched: tuple[Policy, ...], facts: TokenFacts, *, max_ttl: int) -> Grant:
    """The union of the matched policies: crates with their operations, shortest TTL,
    and the owners of every crate the token may create."""
    if not matched:
        # An empty match must deny, never grant nothing-in-particular.
        raise PolicyMismatch(no_config_message(facts.repository))
    crates: dict[str, set[Operation]] = {}
    owners: dict[str, list[str]] = {}
    for policy in matched:
        for crate in policy.crates:
            crates.setdefault(crate, set()).update(policy.operations)
            # Only a policy that itself grants publish-new names owners for the crate: a
            # policy allowing just updates must not add owners to a crate another creates.
            if Operation.PUBLISH_NEW in policy.operations:
                owners.setdefault(crate, []).extend(policy.owners)
    ttl = min(min(p.token_ttl for p in matched), max_ttl)
    return Grant(
        crates={name: frozenset(ops) for name, ops in sorted(crates.items())},
        ttl_seconds=ttl,
        policies=tuple(sorted(p.id for p in matched)),
        provenance=facts.provenance,
        new_crate_owners={name: unique_logins(logins) for name, logins in sorted(owners.items())},
    )


def unique_logins(logins: list[str]) -> tuple[str, ...]:
    """Sorted logins, each once. Registry logins are case-insensitive, so ``Alice`` and
    ``alice`` from two policies are one owner (the first spelling in sort order wins)."""
    seen: dict[str, str] = {}
    for login in sorted(logins):
        seen.setdefault(fold(login), login)
    return tuple(seen.values())


async def match(
    policies: PolicySet, claims: VerifiedClaims, pins: NamespacePins, *, max_ttl: int
) -> Grant:
    """Match verified claims to the policies; raise ``PolicyMismatch`` or ``InvalidJWT``.

    ``max_ttl`` is the server's maximum token lifetime in seconds: a policy asking for
    more is capped, not refused. A GitLab namespace id is pinned only after a match
    succeeds, so a failed attempt cannot pin an attacker's namespace.
    """
    if max_ttl <= 0:
        raise ValueError("max_ttl must be positive")
    issuer = claims.issuer
    facts = PROVIDERS[issuer.provider].read_facts(claims, issuer)
    pin_key: str | None = None
    pin: str | None = None
    if issuer.provider == "gitlab" and policies.candidates(issuer.url, facts.repository):
        pin_key = gitlab.namespace_pin_key(issuer.url, facts.repository)
        pin = await pins.get_namespace_pin(pin_key)
    result = evaluate(policies, facts, issuer, pin)
    if result.refusal is not None:
        raise PolicyMismatch(result.refusal)
    matched = result.matched
    if pin_key is not None and pin is None and any(p.namespace_id is None for p in matched):
        stored = await pins.pin_namespace(pin_key, facts.owner_id)
        if stored != facts.owner_id:
            # Another request pinned a different namespace between our read and write:
            # the policies that rely on the pin no longer match this token.
            matched = tuple(p for p in matched if p.namespace_id is not None)
            if not matched:
                raise PolicyMismatch(gitlab.namespace_refusal(facts, result.matched, stored))
    return build_grant(matched, facts, max_ttl=max_ttl)
