"""GitHub's secret scanning public keys: fetched from one URL, cached, refreshed on demand.

The key URL (``https://api.github.com/meta/public_keys/secret_scanning`` by default)
answers ``{"public_keys": [{"key_identifier", "key" (PEM), "is_current"}]}``. A report
names the key that signed it (``GITHUB-PUBLIC-KEY-IDENTIFIER``); ``ScanningKeys.get``
returns that key:

- the set is fetched on first use and kept ``max_age`` seconds; an older set is
  refetched when a report needs a key, and keeps serving if that fetch fails (a stale
  key can only let a forger "revoke" a token the forger already holds);
- an identifier not in a fresh set refetches at most once per ``refresh_cooldown``:
  the identifier is chosen by whoever sends the request, so it must not make us fetch
  on every request; after a failed fetch, none is tried for ``refresh_cooldown`` either
  (a key server that is down is not hammered); concurrent requests share one fetch;
- only P-256 keys are kept (GitHub signs with ECDSA P-256 / SHA-256), and an empty set
  is never cached;
- the URL is https, or plain http on a loopback address when the operator marks it
  development (a local key server in tests), like an issuer; redirects are not followed;
  the answer is capped at ``max_bytes`` (counted as it arrives, uncompressed only) and
  the whole fetch at ``timeout`` seconds.

``is_current`` is not consulted: GitHub may still sign with a key it is rotating out.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping
from types import MappingProxyType

import httpx
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from trustpub.errors import ConfigurationError, KeySetUnavailable
from trustpub.oidc.issuers import check_key_url

logger = logging.getLogger("trustpub.secret_scanning")

GITHUB_KEYS_URL = "https://api.github.com/meta/public_keys/secret_scanning"
MAX_KEY_IDENTIFIER = 256


class UnknownKey(Exception):
    """The identifier names no key in the set, even after the refresh it may trigger."""


class _FetchFailed(Exception):
    pass


def parse_public_keys(data: object) -> Mapping[str, ec.EllipticCurvePublicKey]:
    """The P-256 keys of a ``{"public_keys": [...]}`` document, by identifier. Entries
    of another shape, curve or kind are skipped; ``ValueError`` if none is left."""
    entries = data.get("public_keys") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise ValueError("expected {'public_keys': [...]}")
    keys: dict[str, ec.EllipticCurvePublicKey] = {}
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        identifier, pem = entry.get("key_identifier"), entry.get("key")
        if not isinstance(identifier, str) or not identifier or not isinstance(pem, str):
            continue
        if len(identifier) > MAX_KEY_IDENTIFIER:
            continue
        try:
            key = load_pem_public_key(pem.encode("utf-8"))
        except (ValueError, TypeError, UnicodeEncodeError, UnsupportedAlgorithm):
            continue
        # A key of another kind or curve could be weaker; GitHub uses P-256 only.
        if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
            keys[identifier] = key
    if not keys:
        raise ValueError("no usable P-256 key")
    return MappingProxyType(keys)


class ScanningKeys:
    """The key set behind one URL, fetched on demand and cached (see the module)."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        url: str = GITHUB_KEYS_URL,
        *,
        development: bool = False,
        max_age: float = 3600,
        refresh_cooldown: float = 60,
        timeout: float = 5.0,
        max_bytes: int = 64 * 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        check_key_url(url, development)
        if max_age <= 0 or refresh_cooldown < 0 or timeout <= 0 or max_bytes <= 0:
            raise ConfigurationError(
                "secret scanning keys: expected max_age > 0, refresh_cooldown >= 0, "
                "timeout > 0 and max_bytes > 0"
            )
        self._http = http
        self.url = url
        self._max_age = max_age
        self._refresh_cooldown = refresh_cooldown
        self._timeout = timeout
        self._max_bytes = max_bytes
        self._clock = clock
        self._keys: Mapping[str, ec.EllipticCurvePublicKey] = MappingProxyType({})
        self._fetched_at: float | None = None
        self._last_refetch: float | None = None  # for an unknown identifier
        self._last_failure: float | None = None
        self._inflight: asyncio.Task[None] | None = None
        self.fetches = 0  # attempts made (operators' view; tests count the refetches)

    async def get(self, identifier: str) -> ec.EllipticCurvePublicKey:
        """The key ``identifier``. ``KeySetUnavailable`` when no key set could be loaded,
        ``UnknownKey`` when the set (refreshed if allowed) does not hold it."""
        key = self._keys.get(identifier)
        stale = self._fetched_at is None or self._clock() - self._fetched_at >= self._max_age
        if stale or key is None:
            # A stale (or never loaded) set is fetched for anyone; a fresh one only
            # for an unknown identifier, and then at most once per cooldown.
            refetch = not stale
            if self._may_fetch(refetch):
                await self._refresh(refetch)
                key = self._keys.get(identifier)
        if key is not None:
            return key
        if not self._keys:
            raise KeySetUnavailable("Failed to load GitHub's secret scanning keys")
        raise UnknownKey(identifier)

    def _may_fetch(self, refetch: bool) -> bool:
        if self._inflight is not None and not self._inflight.done():
            return True  # join it
        now = self._clock()
        for last in (self._last_failure, self._last_refetch if refetch else None):
            if last is not None and now - last < self._refresh_cooldown:
                return False
        return True

    async def _refresh(self, refetch: bool) -> None:
        task = self._inflight
        if task is None or task.done():
            if refetch:
                self._last_refetch = self._clock()
            task = asyncio.get_running_loop().create_task(self._fetch_and_store())
            self._inflight = task
        # shield: a request whose client went away must not cancel the shared fetch.
        await asyncio.shield(task)

    async def _fetch_and_store(self) -> None:
        self.fetches += 1
        try:
            data = json.loads(await self._get_capped())
            keys = parse_public_keys(data)
        except (_FetchFailed, ValueError, RecursionError) as exc:
            logger.warning(
                "secret scanning key fetch failed",
                extra={"fields": {"url": self.url, "reason": str(exc)}},
            )
            self._last_failure = self._clock()
            return
        self._keys = keys
        self._fetched_at = self._clock()

    async def _get_capped(self) -> bytes:
        try:
            # httpx's timeout is per network operation; the outer one bounds the whole
            # fetch, so a server trickling bytes cannot hold it open.
            async with asyncio.timeout(self._timeout):
                async with self._http.stream(
                    "GET",
                    self.url,
                    # Uncompressed only: the cap must bound what we hold in memory.
                    headers={"Accept": "application/json", "Accept-Encoding": "identity"},
                    timeout=self._timeout,
                    follow_redirects=False,
                ) as response:
                    if response.status_code != 200:
                        raise _FetchFailed(f"HTTP {response.status_code}")
                    encoding = response.headers.get("content-encoding", "identity").lower()
                    if encoding not in ("", "identity"):
                        raise _FetchFailed("content-encoded answer")
                    body = bytearray()
                    async for chunk in response.aiter_bytes():
                        body += chunk
                        if len(body) > self._max_bytes:
                            raise _FetchFailed(f"answer larger than {self._max_bytes} bytes")
                    return bytes(body)
        except (TimeoutError, httpx.TimeoutException):
            raise _FetchFailed("timed out") from None
        except httpx.HTTPError as exc:
            raise _FetchFailed(f"request failed: {type(exc).__name__}") from None
