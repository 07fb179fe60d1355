"""The exchange: a JWT in, a token out. Verify, then match, then mint; audit each outcome.

This is the one place where the three steps meet; it knows nothing of HTTP.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Protocol

from trustpub.errors import TrustpubError
from trustpub.logs import audit
from trustpub.metrics import MetricsRegistry
from trustpub.oidc import VerifiedClaims, Verifier
from trustpub.policies import PolicySet
from trustpub.providers import match
from trustpub.ratelimit import RateLimiter
from trustpub.store import NamespacePins
from trustpub.tokens import IssuedToken, TokenService


class ExtraPolicies(Protocol):
    """Policies beside the files: the registry's owner-managed configs
    (``trustpub.registry.configs.OwnerConfigs``), matched as one set with them."""

    async def combined(self, files: PolicySet) -> PolicySet: ...

    async def record_pin(self, matched: Iterable[str], namespace_id: str) -> object: ...


class Exchanger:
    configs: ExtraPolicies | None = None
    """Set by the host once the registry is open: the live set is then the union of the
    policy files and the owner configs, one index, one matcher."""

    def __init__(
        self,
        verifier: Verifier,
        policies: Callable[[], PolicySet],
        pins: NamespacePins,
        tokens: TokenService,
        metrics: MetricsRegistry,
        *,
        max_ttl: int,
        leeway: int,
        limiter: RateLimiter | None = None,
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._verifier = verifier
        self._policies = policies
        self._pins = pins
        self._tokens = tokens
        self._metrics = metrics
        self._max_ttl = max_ttl
        self._leeway = leeway
        self._limiter = limiter
        self._timer = timer

    async def exchange(self, jwt: str) -> IssuedToken:
        started = self._timer()
        claims: VerifiedClaims | None = None
        try:
            claims = await self._verifier.verify(jwt)
            if self._limiter is not None:
                # Counted once verified: only the repository's own tokens spend its budget.
                repository = claims.optional_str("repository") or claims.optional_str(
                    "project_path"
                )
                await self._limiter.exchange_for(claims.issuer.url, repository or "")
            policies = self._policies()
            if self.configs is not None:
                policies = await self.configs.combined(policies)
            grant = await match(policies, claims, self._pins, max_ttl=self._max_ttl)
            if self.configs is not None and claims.issuer.provider == "gitlab":
                # The namespace id the matcher pinned, shown on the configs that use it.
                namespace_id = claims.optional_str("namespace_id")
                if namespace_id is not None:
                    await self.configs.record_pin(grant.policies, namespace_id)
            issued = await self._tokens.mint(grant, claims, leeway=self._leeway)
        except TrustpubError as exc:
            reason = type(exc).__name__
            self._metrics.exchanges.inc("refused", reason)
            audit(
                "exchange",
                outcome="refused",
                reason=reason,
                detail=exc.detail,
                **_identity(claims),
            )
            raise
        finally:
            self._metrics.exchange_seconds.observe(self._timer() - started)
        self._metrics.exchanges.inc("issued", "")
        audit(
            "exchange",
            outcome="issued",
            policies=list(grant.policies),
            crates={name: sorted(ops) for name, ops in grant.crates.items()},
            expires_at=issued.record.expires_at,
            **_identity(claims),
        )
        return issued


def _identity(claims: VerifiedClaims | None) -> dict[str, object]:
    """Who asked, from verified claims only (never from the unverified token)."""
    if claims is None:
        return {}
    fields: dict[str, object] = {"issuer": claims.issuer.url, "jti": claims.jti}
    for name in ("repository", "project_path", "workflow_ref", "ci_config_ref_uri", "ref"):
        value = claims.claims.get(name)
        if isinstance(value, str):
            fields[name] = value
    return fields
