"""The client side of trustpub's HTTP API: exchange, revocation, introspection.

Used by ``trustpub exchange`` and ``trustpub revoke`` (``Client``, blocking) and by the
standalone registry, which asks a separate trustpub service about tokens
(``AsyncClient.introspect``). The GitHub Actions token request, which the exchange
needs first, is here too (``request_actions_token``).

Errors, one hierarchy; every message names the URL and never a token::

    ClientError          base class; ``str()`` is the message for a person
    ├── Refused          the server answered and said no (``details`` lists its reasons)
    ├── WrongURL         the answer shows the URL is not the server's API (404, redirect)
    └── Unavailable      no usable answer: network failure, timeout, 429 or 5xx

Retries: a request that never reached the server (connection refused, DNS failure,
connect timeout), or one refused with 429, is retried with the same content. Any other
failure may have reached the server: the exchange then retries only with a FRESH OIDC
token, because the server refuses a token it has seen once (replay protection).
Revocation and introspection are idempotent and always retried. At most ``ATTEMPTS``
attempts in all, one, then two seconds apart.

Why the retry loop is written here: whether to retry is a security decision (a token the
server may have consumed must not be sent again) and each attempt may need a new token.
httpx's own transport retries cover connection failures only, without delays; a retry
library would add a dependency to express the same three predicates.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import httpx

from trustpub.web import paths

__all__ = [
    "ATTEMPTS",
    "INTROSPECT_PATH",
    "TOKENS_PATH",
    "AsyncClient",
    "Client",
    "ClientError",
    "IssuedToken",
    "MalformedAnswer",
    "Refused",
    "Unavailable",
    "WrongURL",
    "request_actions_token",
]

TOKENS_PATH = paths.TOKENS
INTROSPECT_PATH = paths.INTROSPECT
ATTEMPTS = 3
EXCHANGE_TIMEOUT = 30.0
REQUEST_TIMEOUT = 10.0

T = TypeVar("T")
Sleep = Callable[[float], None]
Notify = Callable[[str], None]


class ClientError(Exception):
    """A request to a trustpub server (or a CI token service) failed. ``status`` is the
    HTTP status of the answer, when there was one."""

    status: int | None = None


class MalformedAnswer(ClientError):
    """The server answered 200 with a body that is not what the protocol says."""


class Refused(ClientError):
    """The server answered with a refusal; ``details`` are its reasons, verbatim."""

    def __init__(self, message: str, status: int, details: tuple[str, ...]) -> None:
        super().__init__(message)
        self.status = status
        self.details = details


class WrongURL(ClientError):
    """The answer says this is not the API the client expected at that URL."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class Unavailable(ClientError):
    """No usable answer. ``unsent`` when the request certainly never reached the server."""

    def __init__(self, message: str, *, unsent: bool, status: int | None = None) -> None:
        super().__init__(message)
        self.unsent = unsent
        self.status = status


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """What the exchange answered. The token stays out of ``repr``, hence of logs."""

    token: str = field(repr=False)
    expires_at: str | None
    crates: Mapping[str, Any]


def base_url(url: str) -> str:
    """``url`` without a trailing ``/``; a ``ValueError`` unless it is http(s)://HOST..."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
        hint = f" (with its scheme: https://{url})" if url and "://" not in url else ""
        raise ValueError(f"expected the server's base URL (https://HOST), got {url!r}{hint}")
    return url.rstrip("/")


# -- answers ---------------------------------------------------------------------------


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _details(body: Mapping[str, Any]) -> tuple[str, ...]:
    """crates.io's ``{"errors": [{"detail": ...}]}``, or a bare ``{"message": ...}``."""
    errors = body.get("errors")
    if isinstance(errors, list):
        return tuple(
            e["detail"] for e in errors if isinstance(e, dict) and isinstance(e.get("detail"), str)
        )
    message = body.get("message")
    return (message,) if isinstance(message, str) else ()


def _unreachable(url: str, exc: httpx.TransportError) -> Unavailable:
    host = urlsplit(url).netloc
    if isinstance(exc, httpx.ConnectTimeout):
        return Unavailable(f"cannot connect to {host}: no answer to connect", unsent=True)
    if isinstance(exc, httpx.ConnectError):
        reason = str(exc) or type(exc).__name__
        return Unavailable(f"cannot connect to {host}: {reason}", unsent=True)
    if isinstance(exc, httpx.TimeoutException):
        return Unavailable(f"{host} gave no answer in time", unsent=False)
    return Unavailable(f"{host}: network error: {type(exc).__name__}: {exc}", unsent=False)


def _check(response: httpx.Response, url: str) -> httpx.Response:
    """The response if it is an answer to act on; raises for the rest."""
    status = response.status_code
    if status == 429 or status >= 500:
        details = "; ".join(_details(_json(response)))
        # A 429 is refused before it is processed: nothing was seen.
        raise Unavailable(
            f"{url} answered HTTP {status}" + (f" ({details})" if details else ""),
            unsent=status == 429,
            status=status,
        )
    if 300 <= status < 400:
        raise WrongURL(
            f"{url} redirected (HTTP {status}) to {response.headers.get('location', '?')}: "
            "use the final base URL",
            status,
        )
    if status in (404, 405):
        raise WrongURL(f"{url} answered HTTP {status}: is the URL the server's base URL?", status)
    return response


def _refused(url: str, response: httpx.Response, what: str) -> ClientError:
    details = _details(_json(response))
    if not details:
        return WrongURL(
            f"{url} answered HTTP {response.status_code} without an error message: "
            "is the URL the server's base URL?",
            response.status_code,
        )
    lines = [f"{what} (HTTP {response.status_code}):", *(f"  - {d}" for d in details)]
    return Refused("\n".join(lines), response.status_code, details)


def _issued(url: str, response: httpx.Response) -> IssuedToken:
    body = _json(response)
    token = body.get("token")
    if response.status_code == 200 and isinstance(token, str) and token:
        expires_at = body.get("expires_at")
        crates = body.get("crates")
        return IssuedToken(
            token,
            expires_at if isinstance(expires_at, str) else None,
            crates if isinstance(crates, dict) else {},
        )
    if response.status_code == 200:
        raise WrongURL(f"{url} answered without a token: is the URL the server's base URL?")
    raise _refused(url, response, "the registry refused the token")


def _introspection(url: str, response: httpx.Response) -> dict[str, Any]:
    if response.status_code != 200:
        raise _refused(url, response, "the introspection was refused")
    try:
        body = response.json()
    except ValueError:
        raise MalformedAnswer(f"{url} answered malformed data (not JSON)") from None
    if not isinstance(body, dict):
        raise MalformedAnswer(f"{url} answered malformed data (not an object)")
    return body


# -- retries ---------------------------------------------------------------------------


def _delay(attempt: int) -> float:
    return float(2 ** (attempt - 1))


def _retrying(
    what: str,
    attempt: Callable[[], T],
    *,
    sleep: Sleep,
    notify: Notify,
    retry_seen: bool,
    attempts: int = ATTEMPTS,
) -> T:
    for number in range(1, attempts + 1):
        try:
            return attempt()
        except Unavailable as exc:
            if not (exc.unsent or retry_seen):
                raise
            if number == attempts:
                raise Unavailable(
                    f"{what} failed after {attempts} attempts: {exc}", unsent=exc.unsent
                ) from None
            notify(f"{what}: {exc}; retrying in {_delay(number):.0f} s")
            sleep(_delay(number))
    raise AssertionError("unreachable")


def _ignore(message: str) -> None:
    return None


# -- the blocking client ---------------------------------------------------------------


class Client:
    """A trustpub server at ``url`` (its base URL), through ``http``.

    ``http`` must not follow redirects: a redirect is reported (``WrongURL``), since
    following it would send a token to a URL the user never named.
    """

    def __init__(
        self,
        url: str,
        http: httpx.Client,
        *,
        sleep: Sleep = time.sleep,
        notify: Notify = _ignore,
    ) -> None:
        self.url = base_url(url)
        self._http = http
        self._sleep = sleep
        self._notify = notify

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        url = self.url + path
        try:
            response = self._http.request(method, url, **kwargs)
        except httpx.TransportError as exc:
            raise _unreachable(url, exc) from None
        return _check(response, url)

    def exchange(self, jwt: Callable[[], str], *, fresh: bool) -> IssuedToken:
        """Trade an OIDC token for a registry token. ``jwt`` is called once per attempt;
        ``fresh`` when each call yields a new token (then any failure may be retried)."""
        url = self.url + TOKENS_PATH

        def attempt() -> IssuedToken:
            response = self._send(
                "POST", TOKENS_PATH, json={"jwt": jwt()}, timeout=EXCHANGE_TIMEOUT
            )
            return _issued(url, response)

        try:
            return _retrying(
                "token exchange",
                attempt,
                sleep=self._sleep,
                notify=self._notify,
                retry_seen=fresh,
            )
        except Unavailable as exc:
            if fresh or exc.unsent:
                raise
            raise Unavailable(
                f"the exchange failed: {exc} (not retried: the registry may have seen "
                "this OIDC token already)",
                unsent=False,
            ) from None

    def revoke(self, token: str) -> None:
        """Revoke a trustpub token (the server answers 204, also for an unknown one)."""
        url = self.url + TOKENS_PATH

        def attempt() -> None:
            response = self._send(
                "DELETE",
                TOKENS_PATH,
                headers={"Authorization": f"Bearer {token}"},
                timeout=REQUEST_TIMEOUT,
            )
            if response.status_code not in (200, 204):
                raise _refused(url, response, "the server refused the revocation")

        _retrying("revocation", attempt, sleep=self._sleep, notify=self._notify, retry_seen=True)

    def introspect(self, token: str, credential: str) -> dict[str, Any]:
        """The server's answer about ``token`` (``{"active": false}`` or its grant)."""
        url = self.url + INTROSPECT_PATH

        def attempt() -> dict[str, Any]:
            response = self._send(
                "POST",
                INTROSPECT_PATH,
                json={"token": token},
                headers={"Authorization": f"Bearer {credential}"},
                timeout=REQUEST_TIMEOUT,
            )
            return _introspection(url, response)

        return _retrying(
            "introspection", attempt, sleep=self._sleep, notify=self._notify, retry_seen=True
        )


# -- the asynchronous client (the standalone registry) ---------------------------------


class AsyncClient:
    """``Client.introspect`` for an asyncio server. Introspection waits inside a request,
    so it retries sooner and fewer times than the command line (``attempts``, ``delay``)."""

    def __init__(
        self,
        url: str,
        http: httpx.AsyncClient,
        *,
        attempts: int = 2,
        delay: float = 0.25,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.url = base_url(url)
        self._http = http
        self._attempts = attempts
        self._delay = delay
        self._sleep = sleep

    async def introspect(self, token: str, credential: str) -> dict[str, Any]:
        url = self.url + INTROSPECT_PATH
        for number in range(1, self._attempts + 1):
            try:
                try:
                    response = await self._http.post(
                        url,
                        json={"token": token},
                        headers={"Authorization": f"Bearer {credential}"},
                        timeout=REQUEST_TIMEOUT,
                    )
                except httpx.TransportError as exc:
                    raise _unreachable(url, exc) from None
                return _introspection(url, _check(response, url))
            except Unavailable:
                if number == self._attempts:
                    raise
                await self._sleep(self._delay)
        raise AssertionError("unreachable")


# -- the GitHub Actions token request --------------------------------------------------


def request_actions_token(
    http: httpx.Client,
    request_url: str,
    request_token: str,
    audience: str,
    *,
    sleep: Sleep = time.sleep,
    notify: Notify = _ignore,
) -> str:
    """An OIDC token from the runner: ``GET URL&audience=AUD`` with the request token."""
    # The runner's URL already carries ?api-version=...: append, never replace, the query
    # (httpx's params= would drop it).
    separator = "&" if "?" in request_url else "?"
    url = f"{request_url}{separator}audience={quote(audience, safe='')}"
    shown = urlsplit(request_url).netloc

    def attempt() -> str:
        try:
            response = http.get(
                url, headers={"Authorization": f"bearer {request_token}"}, timeout=REQUEST_TIMEOUT
            )
        except httpx.TransportError as exc:
            raise _unreachable(request_url, exc) from None
        value = _json(_check_status_only(response, shown)).get("value")
        if response.status_code != 200 or not isinstance(value, str) or not value:
            raise Refused(
                f"the GitHub Actions OIDC token request was refused: HTTP {response.status_code}",
                response.status_code,
                _details(_json(response)),
            )
        return value

    # Each request mints a new token: retrying never replays one.
    return _retrying("OIDC token request", attempt, sleep=sleep, notify=notify, retry_seen=True)


def _check_status_only(response: httpx.Response, host: str) -> httpx.Response:
    status = response.status_code
    if status == 429 or status >= 500:
        raise Unavailable(f"{host} answered HTTP {status}", unsent=status == 429)
    return response
