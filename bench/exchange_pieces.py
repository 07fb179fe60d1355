"""CPU microseconds per call of the exchange's pure-Python pieces, in one process.

    .venv/bin/python bench/exchange_pieces.py [--calls 3000] [--repeats 5]

A GitHub-shaped JWT signed by a ``DevIssuer`` (keys served through an in-memory httpx
transport, fetched once) goes through the three steps of an exchange, each timed on
its own with ``time.process_time`` over ``--calls`` calls, ``--repeats`` times; the
median is printed:

- ``verify``: ``Verifier.verify`` (parse, RS256 check, claim checks);
- ``verify-no-rsa``: the same with the signature check stubbed out, i.e. what this
  code spends besides ``cryptography`` (the one-off stub touches this process only);
- ``match``: ``trustpub.providers.match`` against a small policy set;
- ``mint``: ``TokenService.mint`` against a store whose ``issue`` does nothing, so the
  number is the service's own work (record, token, hashes), not a round trip;
- ``generate``: ``TokenFormat.generate`` alone.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import cast

import httpx

from trustpub.devissuer.issuer import DevIssuer
from trustpub.grants import Operation
from trustpub.oidc import jws
from trustpub.oidc.keys import KeySets
from trustpub.oidc.verify import Verifier
from trustpub.policies import Policy, PolicySet, RefPattern
from trustpub.providers import InMemoryNamespacePins, match
from trustpub.store import Store
from trustpub.tokens import TokenService
from trustpub.tokens.format import TRUSTPUB_TOKENS

AUDIENCE = "registry.example"
ISSUER_URL = "https://dev-issuer.example"


class NullStore:
    """Accepts every ``issue`` without doing anything (the bench times the service)."""

    async def issue(self, *args: object) -> bool:
        return True


def policies() -> PolicySet:
    def policy(name: str, **extra: object) -> Policy:
        fields: dict[str, object] = {
            "file": "bench.toml",
            "name": name,
            "provider": "github",
            "issuer": ISSUER_URL,
            "crates": ("octo-lib",),
            "repository": "octo-org/octo-lib",
            "workflow": "release.yml",
            "repository_owner_id": "131804563",
        }
        fields.update(extra)
        return Policy(**fields)  # type: ignore[arg-type]

    return PolicySet(
        [
            policy(
                "release",
                refs=(RefPattern.compile("refs/tags/v*"),),
                operations=frozenset({Operation.PUBLISH_UPDATE, Operation.PUBLISH_NEW}),
                owners=("octocat",),
            ),
            policy("macros", crates=("octo-lib-macros",), token_ttl=900),
            policy("other", workflow="other.yml"),
        ]
        + [
            policy(f"p{i}", repository=f"octo-org/repo{i}", crates=(f"crate{i}",))
            for i in range(20)
        ]
    )


async def timed(
    label: str, call: Callable[[], Awaitable[object]], calls: int, repeats: int
) -> None:
    for _ in range(min(calls, 200)):
        await call()
    samples = []
    for _ in range(repeats):
        start = time.process_time()
        for _ in range(calls):
            await call()
        samples.append((time.process_time() - start) / calls * 1e6)
    spread = ", ".join(f"{s:.1f}" for s in samples)
    print(f"{label:14} {statistics.median(samples):8.1f} us/call   ({spread})")


async def main(calls: int, repeats: int) -> None:
    issuer = DevIssuer(ISSUER_URL, audience=AUDIENCE, lifetime=3600)

    def serve(request: httpx.Request) -> httpx.Response:
        if str(request.url).endswith("/.well-known/openid-configuration"):
            return httpx.Response(200, json=issuer.discovery())
        return httpx.Response(200, json=issuer.jwks())

    async with httpx.AsyncClient(transport=httpx.MockTransport(serve)) as http:
        keys = KeySets(http)
        verifier = Verifier([issuer.trustpub_issuer()], AUDIENCE, keys)
        token = issuer.mint(AUDIENCE)
        claims = await verifier.verify(token)
        policy_set = policies()
        pins = InMemoryNamespacePins()
        grant = await match(policy_set, claims, pins, max_ttl=3600)
        service = TokenService(cast(Store, NullStore()))

        async def verify() -> object:
            return await verifier.verify(token)

        async def matched() -> object:
            return await match(policy_set, claims, pins, max_ttl=3600)

        async def mint() -> object:
            return await service.mint(grant, claims)

        async def generate() -> object:
            return TRUSTPUB_TOKENS.generate()

        await timed("verify", verify, calls, repeats)
        original = jws.SignedToken.verify_rs256
        jws.SignedToken.verify_rs256 = lambda self, key: None  # type: ignore[method-assign]
        try:
            await timed("verify-no-rsa", verify, calls, repeats)
        finally:
            jws.SignedToken.verify_rs256 = original  # type: ignore[method-assign]
        await timed("match", matched, calls, repeats)
        await timed("mint", mint, calls, repeats)
        await timed("generate", generate, calls, repeats)
        await keys.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=5)
    options = parser.parse_args()
    asyncio.run(main(options.calls, options.repeats))
