"""Key sets of the configured issuers: discovery, JWKS fetch, cache, refresh rules.

One ``KeySets`` serves every issuer. For each one it fetches
``{issuer}/.well-known/openid-configuration``, then the document's ``jwks_uri``, keeps
the RSA signing keys it can use, and caches them:

- a set is fresh for ``max_age`` seconds; an older ("stale") set keeps serving while a
  refresh runs in the background, so no request waits on a fetch it does not need (a
  key server that hangs costs the requests nothing while stale keys are usable);
- a request waits only when it must: no usable set at all, or an unknown ``kid``;
- an unknown ``kid`` refetches at most once per ``refresh_cooldown`` (a token's ``kid`` is
  chosen by whoever sent it, so it must not be able to make us fetch on every request);
- concurrent requests that need a fetch share one;
- a failed fetch backs off: the next attempt waits ``backoff_base`` seconds (1 s), then
  twice as long after each further failure, capped at ``backoff_max`` (60 s); a success
  resets it. During a back-off requests are answered at once from what is cached
  (``KeySetUnavailable`` when nothing usable is), never by a new fetch;
- when fetches fail, the last good set keeps serving until it is ``max_stale`` old;
- an empty set is never cached nor used (a verifier with no keys must deny, and a
  "set" that replaced good keys with nothing would turn an issuer outage into ours).

``ready()`` answers from this cache without waiting (for ``/readyz``), starting a
background fetch where one is due.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final
from urllib.parse import urlsplit

import httpx
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey, RSAPublicNumbers

from trustpub.errors import ConfigurationError, InvalidJWT, KeySetUnavailable
from trustpub.oidc.issuers import Issuer, is_loopback_host

logger = logging.getLogger("trustpub.oidc")

DISCOVERY_PATH: Final = "/.well-known/openid-configuration"

# RSA keys below 2048 bits are breakable in practice (NIST SP 800-131A). Above 8192 bits
# no issuer publishes keys, and huge moduli or exponents would only make every
# verification slow: refuse them as well.
MIN_RSA_BITS: Final = 2048
MAX_RSA_BITS: Final = 8192
MAX_RSA_EXPONENT_BITS: Final = 64

# A JWK's numbers are unpadded base64url (RFC 7518 §6.3.1); nothing else is accepted.
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")

FetchOutcome = str
"""One of: ok, http_error, timeout, too_large, invalid, refused_uri, empty, error."""


@dataclass(frozen=True, slots=True)
class KeySetStatus:
    """What is known about one issuer's key set, for health checks and operators.

    ``last_error`` is our own short description of the last failed fetch (never a
    response body); it is cleared by the next successful fetch.
    """

    issuer: str
    loaded: bool
    key_count: int
    age: float | None
    last_error: str | None
    failures: int = 0
    """Consecutive failed fetches (0 after a success)."""
    refreshing: bool = False
    """A fetch is under way."""


class _FetchError(Exception):
    """A fetch failed; ``outcome`` is the metric label, ``reason`` is safe to log."""

    def __init__(self, outcome: FetchOutcome, reason: str) -> None:
        super().__init__(reason)
        self.outcome = outcome
        self.reason = reason


@dataclass(slots=True)
class _IssuerState:
    keys: Mapping[str, RSAPublicKey] | None = None
    fetched_at: float | None = None
    last_attempt: float | None = None
    last_error: str | None = None
    inflight: asyncio.Task[None] | None = None
    failures: int = 0
    retry_at: float | None = None


class KeySets:
    """The signing keys of every configured issuer, fetched on demand and cached."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        max_age: float = 3600,
        refresh_cooldown: float = 60,
        max_stale: float = 86400,
        timeout: float = 5.0,
        max_bytes: int = 256 * 1024,
        backoff_base: float = 1.0,
        backoff_max: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        on_fetch: Callable[[str, str], None] = lambda issuer, outcome: None,
    ) -> None:
        if (
            not 0 < max_age <= max_stale
            or refresh_cooldown < 0
            or timeout <= 0
            or max_bytes <= 0
            or not 0 <= backoff_base <= backoff_max
        ):
            raise ConfigurationError(
                "key sets: expected 0 < max_age <= max_stale, refresh_cooldown >= 0, "
                "timeout > 0, max_bytes > 0 and 0 <= backoff_base <= backoff_max"
            )
        self._http = http
        self._max_age = max_age
        self._refresh_cooldown = refresh_cooldown
        self._max_stale = max_stale
        self._timeout = timeout
        self._max_bytes = max_bytes
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        self._clock = clock
        self._on_fetch = on_fetch
        self._states: dict[Issuer, _IssuerState] = {}
        self.fetch_outcomes: collections.Counter[tuple[str, str]] = collections.Counter()

    async def get_key(self, issuer: Issuer, kid: str) -> RSAPublicKey:
        """The issuer's public key ``kid``.

        Raises ``KeySetUnavailable`` when there is no usable key set, and
        ``InvalidJWT("Invalid JWT key ID")`` when ``kid`` is not in it, even after the
        (rate-limited) refresh that an unknown ``kid`` triggers.
        """
        state = self._state(issuer)
        keys = self._usable_keys(state)
        if keys is None:
            # Nothing usable: this request needs a fetch (joined if one is under way),
            # unless the last failure's back-off says not yet.
            if self._inflight(state) is not None or self._backoff_over(state):
                await self._refresh(issuer, state)
                keys = self._usable_keys(state)
            if keys is None:
                raise KeySetUnavailable()
        elif self._expired(state):
            # Stale but usable: serve it now, refresh for the requests to come.
            self._refresh_in_background(issuer, state)
        key = keys.get(kid)
        if key is not None:
            return key
        # An unknown kid may mean the issuer rotated its keys, so refetch; but kid is
        # chosen by the sender, so at most once per cooldown (a fetch already under way
        # is free to join).
        if self._inflight(state) is not None or (
            self._cooldown_over(state) and self._backoff_over(state)
        ):
            await self._refresh(issuer, state)
            keys = self._usable_keys(state)
            if keys is None:
                raise KeySetUnavailable()
            key = keys.get(kid)
            if key is not None:
                return key
        raise InvalidJWT("Invalid JWT key ID")

    def ready(self, issuer: Issuer) -> bool:
        """True when the issuer has a usable key set (stale included). Never waits.

        A set that is missing or expired gets a background fetch (when the back-off
        allows), so a later call can answer True.
        """
        state = self._state(issuer)
        if self._usable_keys(state) is None or self._expired(state):
            self._refresh_in_background(issuer, state)
        return self._usable_keys(state) is not None

    async def warm(self, issuer: Issuer) -> bool:
        """Fetch the issuer's key set if it has none usable; True when a usable set is
        held. Waits for the fetch (for start-up and tools; ``/readyz`` uses ``ready``).
        Never raises.
        """
        try:
            state = self._state(issuer)
            if self._usable_keys(state) is None and (
                self._inflight(state) is not None or self._backoff_over(state)
            ):
                await self._refresh(issuer, state)
            return self.ready(issuer)
        except Exception:  # a health check reports, it does not fail
            logger.exception("OIDC key set warm-up failed for %s", issuer.url)
            return False

    def status(self, issuer: Issuer) -> KeySetStatus:
        """A snapshot of the issuer's key set (no network access)."""
        state = self._states.get(issuer, _IssuerState())
        keys = self._usable_keys(state)
        return KeySetStatus(
            issuer=issuer.url,
            loaded=keys is not None,
            key_count=0 if keys is None else len(keys),
            age=self._age(state),
            last_error=state.last_error,
            failures=state.failures,
            refreshing=self._inflight(state) is not None,
        )

    async def settle(self) -> None:
        """Wait for the fetches under way (background refreshes included) to finish."""
        tasks = [t for s in self._states.values() if (t := self._inflight(s)) is not None]
        await asyncio.gather(*(asyncio.shield(t) for t in tasks))

    async def aclose(self) -> None:
        """Cancel the fetches under way (at shutdown)."""
        tasks = [t for s in self._states.values() if (t := self._inflight(s)) is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- cache rules -------------------------------------------------------------------

    def _state(self, issuer: Issuer) -> _IssuerState:
        state = self._states.get(issuer)
        if state is None:
            # Built once per issuer, not on every lookup (setdefault's default would be).
            state = self._states[issuer] = _IssuerState()
        return state

    def _age(self, state: _IssuerState) -> float | None:
        return None if state.fetched_at is None else self._clock() - state.fetched_at

    def _expired(self, state: _IssuerState) -> bool:
        age = self._age(state)
        return age is None or age >= self._max_age

    def _usable_keys(self, state: _IssuerState) -> Mapping[str, RSAPublicKey] | None:
        age = self._age(state)
        if state.keys is None or age is None or age > self._max_stale:
            # Beyond the staleness limit a set may hold keys the issuer has revoked.
            return None
        return state.keys

    def _cooldown_over(self, state: _IssuerState) -> bool:
        return (
            state.last_attempt is None
            or self._clock() - state.last_attempt >= self._refresh_cooldown
        )

    def _backoff_over(self, state: _IssuerState) -> bool:
        return state.retry_at is None or self._clock() >= state.retry_at

    @staticmethod
    def _inflight(state: _IssuerState) -> asyncio.Task[None] | None:
        """The fetch under way on this event loop, if any.

        A fetch left pending by another event loop (a closed test client, say) can never
        finish here, so it does not count.
        """
        task = state.inflight
        if task is None or task.done():
            return None
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return None
        return task if task.get_loop() is loop else None

    def _start_fetch(self, issuer: Issuer, state: _IssuerState) -> asyncio.Task[None]:
        task = self._inflight(state)
        if task is not None:
            return task
        state.last_attempt = self._clock()
        task = asyncio.get_running_loop().create_task(self._fetch_and_store(issuer, state))
        state.inflight = task

        def done(finished: asyncio.Task[None]) -> None:
            if state.inflight is finished:
                state.inflight = None

        task.add_done_callback(done)
        return task

    def _refresh_in_background(self, issuer: Issuer, state: _IssuerState) -> None:
        if self._inflight(state) is None and self._backoff_over(state):
            self._start_fetch(issuer, state)

    async def _refresh(self, issuer: Issuer, state: _IssuerState) -> None:
        """Join the fetch under way for this issuer, or start one. Never raises."""
        task = self._start_fetch(issuer, state)
        # shield: a caller that is cancelled (client went away) must not cancel the
        # fetch the other waiters depend on.
        await asyncio.shield(task)

    async def _fetch_and_store(self, issuer: Issuer, state: _IssuerState) -> None:
        try:
            keys = await self._fetch(issuer)
        except _FetchError as exc:
            self._record_failure(issuer, state, exc.outcome, exc.reason)
            return
        except Exception:
            logger.exception("OIDC key set fetch failed unexpectedly for %s", issuer.url)
            self._record_failure(issuer, state, "error", "unexpected error")
            return
        state.keys = keys
        state.fetched_at = self._clock()
        state.last_error = None
        state.failures = 0
        state.retry_at = None
        self._count(issuer, "ok")

    def _count(self, issuer: Issuer, outcome: FetchOutcome) -> None:
        self.fetch_outcomes[(issuer.url, outcome)] += 1
        self._on_fetch(issuer.url, outcome)

    def _record_failure(
        self, issuer: Issuer, state: _IssuerState, outcome: FetchOutcome, reason: str
    ) -> None:
        # The last good set, if any, is kept: _usable_keys decides how long it serves.
        state.last_error = reason
        state.failures += 1
        delay = min(self._backoff_base * 2 ** min(state.failures - 1, 32), self._backoff_max)
        state.retry_at = self._clock() + delay
        self._count(issuer, outcome)
        logger.warning(
            "OIDC key set fetch failed for %s: %s (next attempt in %g s at the earliest)",
            issuer.url,
            reason,
            delay,
        )

    # -- fetching ----------------------------------------------------------------------

    async def _fetch(self, issuer: Issuer) -> Mapping[str, RSAPublicKey]:
        discovery = await self._get_json(issuer.url + DISCOVERY_PATH, "discovery document")
        # OpenID Connect Discovery §4.3: the document must name the issuer it came from.
        if discovery.get("issuer") != issuer.url:
            raise _FetchError("invalid", "discovery document names another issuer")
        jwks_uri = discovery.get("jwks_uri")
        if not isinstance(jwks_uri, str):
            raise _FetchError("invalid", "discovery document has no jwks_uri")
        self._check_jwks_uri(issuer, jwks_uri)
        jwks = await self._get_json(jwks_uri, "key set")
        keys = parse_jwks(jwks)
        if not keys:
            # Never cache or use an empty set: callers keep the last good one instead.
            raise _FetchError("empty", "key set has no usable RS256 signing key")
        return keys

    @staticmethod
    def _check_jwks_uri(issuer: Issuer, jwks_uri: str) -> None:
        # The discovery document could point anywhere: keep the key fetch on the
        # issuer's own host (no SSRF into our network, no keys from a third party).
        try:
            parts = urlsplit(jwks_uri)
            hostname = parts.hostname
        except ValueError as exc:
            raise _FetchError("refused_uri", "jwks_uri is not a valid URL") from exc
        if not hostname or parts.username is not None or parts.password is not None:
            raise _FetchError("refused_uri", "jwks_uri is not an absolute URL")
        if parts.netloc.lower() != issuer.host:
            raise _FetchError("refused_uri", "jwks_uri is not on the issuer's host")
        if parts.scheme == "https":
            return
        # Plain http only for a plain-http local development issuer (which Issuer allows
        # only on loopback); an https issuer never downgrades to http for its keys.
        if (
            parts.scheme == "http"
            and issuer.url.startswith("http://")
            and issuer.development
            and is_loopback_host(hostname)
        ):
            return
        raise _FetchError("refused_uri", "jwks_uri does not use https")

    async def _get_json(self, url: str, what: str) -> dict[str, object]:
        body = await self._get_capped(url, what)
        try:
            data = json.loads(body)
        except (ValueError, RecursionError) as exc:
            raise _FetchError("invalid", f"{what} is not valid JSON") from exc
        if not isinstance(data, dict):
            raise _FetchError("invalid", f"{what} is not a JSON object")
        return data

    async def _get_capped(self, url: str, what: str) -> bytes:
        try:
            # httpx's timeout applies per network operation; the outer one bounds the
            # whole request, so a server trickling bytes cannot hold a fetch open.
            async with asyncio.timeout(self._timeout):
                async with self._http.stream(
                    "GET",
                    url,
                    # Uncompressed only: the size cap must bound what we hold in memory,
                    # and a small compressed body can inflate enormously.
                    headers={"Accept": "application/json", "Accept-Encoding": "identity"},
                    timeout=self._timeout,
                    # A redirect could leave the issuer's host.
                    follow_redirects=False,
                ) as response:
                    if response.status_code != 200:
                        raise _FetchError(
                            "http_error", f"{what} returned HTTP {response.status_code}"
                        )
                    encoding = response.headers.get("content-encoding", "identity").lower()
                    if encoding not in ("", "identity"):
                        raise _FetchError("invalid", f"{what} is content-encoded")
                    declared = response.headers.get("content-length", "")
                    if declared.isdigit() and int(declared) > self._max_bytes:
                        raise _FetchError("too_large", f"{what} is too large")
                    body = bytearray()
                    # Count while streaming: stop as soon as the cap is passed, whatever
                    # Content-Length said (or if it said nothing). With content encodings
                    # refused above, these are the bytes as received.
                    async for chunk in response.aiter_bytes():
                        body += chunk
                        if len(body) > self._max_bytes:
                            raise _FetchError("too_large", f"{what} is too large")
                    return bytes(body)
        except TimeoutError as exc:
            raise _FetchError("timeout", f"{what} timed out") from exc
        except httpx.TimeoutException as exc:
            raise _FetchError("timeout", f"{what} timed out") from exc
        except httpx.HTTPError as exc:
            raise _FetchError("http_error", f"{what} request failed: {type(exc).__name__}") from exc


def parse_jwks(jwks: Mapping[str, object]) -> Mapping[str, RSAPublicKey]:
    """The RS256 signing keys of a JWK Set, by ``kid``; unusable keys are skipped.

    A ``kid`` that appears more than once is dropped entirely: which key it names would
    be ambiguous.
    """
    entries = jwks.get("keys")
    if not isinstance(entries, list):
        return MappingProxyType({})
    keys: dict[str, RSAPublicKey] = {}
    seen: set[str] = set()
    duplicates: set[str] = set()
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        kid = entry.get("kid")
        if not isinstance(kid, str) or not kid:
            # Without a kid a token cannot name the key, and we never try keys in turn.
            continue
        if kid in seen:
            duplicates.add(kid)
            continue
        seen.add(kid)
        key = _rsa_signing_key(entry)
        if key is not None:
            keys[kid] = key
    for kid in duplicates:
        keys.pop(kid, None)
    return MappingProxyType(keys)


def _rsa_signing_key(jwk: Mapping[str, object]) -> RSAPublicKey | None:
    """The public key of an RSA JWK usable for RS256 signatures, else None."""
    if jwk.get("kty") != "RSA":
        return None
    # "use" and "alg" are optional, but when present they must allow RS256 signatures:
    # a key published for encryption or for another algorithm is not ours to use.
    if "use" in jwk and jwk["use"] != "sig":
        return None
    if "alg" in jwk and jwk["alg"] != "RS256":
        return None
    key_ops = jwk.get("key_ops")
    if key_ops is not None and (not isinstance(key_ops, list) or "verify" not in key_ops):
        return None
    # A JWK carrying private parameters is a publishing mistake; do not touch it.
    if any(name in jwk for name in ("d", "p", "q", "dp", "dq", "qi", "oth")):
        return None
    n = _b64url_uint(jwk.get("n"))
    e = _b64url_uint(jwk.get("e"))
    if n is None or e is None:
        return None
    if not MIN_RSA_BITS <= n.bit_length() <= MAX_RSA_BITS:
        return None
    if e.bit_length() > MAX_RSA_EXPONENT_BITS:
        return None
    try:
        return RSAPublicNumbers(e, n).public_key()
    except ValueError:  # e.g. an even exponent or e >= n
        return None


def _b64url_uint(value: object) -> int | None:
    if not isinstance(value, str) or not _BASE64URL.fullmatch(value):
        return None
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        return None
    number = int.from_bytes(raw, "big")
    return number if number > 0 else None
