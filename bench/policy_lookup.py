"""Matching cost with 10 and with 100,000 policies, side by side in one process.

    .venv/bin/python bench/policy_lookup.py

Policies are indexed by issuer and lower-cased repository, so matching a token should
cost the same whatever the number of policies; this prints both timings and their ratio.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from types import MappingProxyType

from trustpub.oidc.claims import VerifiedClaims
from trustpub.oidc.issuers import DEFAULT_ISSUERS
from trustpub.policies import Policy, PolicySet
from trustpub.providers import InMemoryNamespacePins, match

GITHUB = DEFAULT_ISSUERS[0]
CALLS = 20_000


def policies(count: int) -> PolicySet:
    return PolicySet(
        Policy(
            file="bench.toml",
            name=f"p{i}",
            provider="github",
            issuer=GITHUB.url,
            crates=(f"crate{i}",),
            repository=f"org{i % 1000}/repo{i}",
            workflow="release.yml",
            repository_owner_id="131804563",
        )
        for i in range(count)
    )


def claims(index: int) -> VerifiedClaims:
    repository = f"org{index % 1000}/repo{index}"
    now = int(time.time())
    return VerifiedClaims(
        issuer=GITHUB,
        jti="bench",
        issued_at=now,
        expires_at=now + 300,
        claims=MappingProxyType(
            {
                "iss": GITHUB.url,
                "repository": repository,
                "repository_owner_id": "131804563",
                "workflow_ref": f"{repository}/.github/workflows/release.yml@refs/tags/v1",
                "event_name": "push",
                "ref": "refs/tags/v1",
            }
        ),
    )


async def per_match_seconds(policy_set: PolicySet, index: int) -> float:
    pins = InMemoryNamespacePins()
    token = claims(index)
    rounds = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(CALLS):
            await match(policy_set, token, pins, max_ttl=3600)
        rounds.append((time.perf_counter() - start) / CALLS)
    return statistics.median(rounds)


async def main() -> None:
    small, large = policies(10), policies(100_000)
    few = await per_match_seconds(small, 7)
    many = await per_match_seconds(large, 99_123)
    print(f"policies      10: {few * 1e6:7.2f} µs per match")
    print(f"policies 100,000: {many * 1e6:7.2f} µs per match")
    print(f"ratio (100,000 / 10): {many / few:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
