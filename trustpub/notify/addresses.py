"""Where notifications may go: email addresses, and webhook URLs and the addresses
they resolve to.

Email addresses are checked with a short rule of our own rather than the full RFC
5322 grammar: the address goes into a mail header, so the rule's job is to keep out
what could break one (CR, LF, quotes, comments, several addresses), and the simple
``local@domain`` form every provider hands out is all a registry user needs.

A webhook URL is checked twice: when it is subscribed (its form, and the addresses it
resolves to then) and at every delivery (resolved again, then connected to by the
address that was checked: a name that resolved to a public address at subscription
and to 127.0.0.1 later, DNS rebinding, reaches nothing it should not).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

_LOCAL = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_EMAIL = re.compile(rf"{_LOCAL}@{_LABEL}(?:\.{_LABEL})*")
MAX_EMAIL = 254
MAX_URL = 2000


@dataclass(frozen=True, slots=True)
class WebhookRules:
    """Where webhooks may point. By default only https to public addresses.

    ``allow_private``: private, link-local and loopback destinations are allowed (an
    internal receiver). ``development``: plain http is allowed to loopback addresses
    (and loopback destinations with it), for a receiver on the operator's machine.
    """

    allow_private: bool = False
    development: bool = False


def check_email(value: str) -> str:
    """``value`` if it is a plain ``local@domain`` address, else ``ValueError``."""
    if len(value) > MAX_EMAIL or not value.isascii() or not _EMAIL.fullmatch(value):
        raise ValueError(
            f"invalid email address {value[:80]!r}: expected local@domain (ASCII, at most "
            f"{MAX_EMAIL} characters)"
        )
    if len(value.split("@", 1)[0]) > 64:
        raise ValueError(f"invalid email address {value[:80]!r}: the part before @ is too long")
    return value


class DestinationRefused(ValueError):
    """A webhook URL, or an address it resolves to, that the rules do not allow."""


@dataclass(frozen=True, slots=True)
class Destination:
    """A webhook URL taken apart, to be reached at one checked address."""

    url: str
    scheme: str
    host: str
    port: int
    target: str
    """Path and query, as sent in the request line."""


def parse_webhook_url(url: str, rules: WebhookRules) -> Destination:
    """The form of a webhook URL: https (http only for development), a host, no
    credentials or fragment. Raises ``DestinationRefused`` saying what is wrong."""
    if len(url) > MAX_URL or not url.isascii() or any(c.isspace() for c in url):
        raise DestinationRefused(
            f"a webhook URL must be ASCII without spaces, at most {MAX_URL} characters"
        )
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http"):
        raise DestinationRefused(f"a webhook URL must start with https://, got {url[:80]!r}")
    if parts.scheme == "http" and not rules.development:
        raise DestinationRefused(
            "a webhook URL must use https (plain http is allowed only to loopback addresses, "
            "when the operator enables development webhooks)"
        )
    if not parts.hostname:
        raise DestinationRefused("a webhook URL must name a host")
    if parts.username is not None or parts.password is not None:
        raise DestinationRefused("a webhook URL must not carry credentials")
    if parts.fragment:
        raise DestinationRefused("a webhook URL must not have a fragment")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise DestinationRefused("a webhook URL has an invalid port") from None
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Destination(url, parts.scheme, parts.hostname.lower(), port, target)


def check_address(
    address: str, destination: Destination, rules: WebhookRules
) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """One resolved address of ``destination``, if the rules allow it."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_multicast or ip.is_unspecified:
        raise DestinationRefused(
            f"webhook host {destination.host} resolves to {ip}, not a unicast address"
        )
    loopback_ok = rules.allow_private or rules.development
    if ip.is_loopback:
        if not loopback_ok:
            raise DestinationRefused(
                f"webhook host {destination.host} resolves to a loopback address ({ip})"
            )
    elif not ip.is_global and not rules.allow_private:
        raise DestinationRefused(
            f"webhook host {destination.host} resolves to a private or reserved address ({ip})"
        )
    if destination.scheme == "http" and not ip.is_loopback:
        raise DestinationRefused(
            f"plain http webhooks may only reach loopback addresses ({destination.host} is {ip})"
        )
    return ip


def resolve(
    destination: Destination, rules: WebhookRules
) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """Resolve the host (blocking) and check EVERY address it has; the first is the one
    to connect to. A name with one refused address is refused whole: which one a client
    library picks is not ours to predict."""
    try:
        infos = socket.getaddrinfo(
            destination.host, destination.port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )
    except (OSError, UnicodeError) as exc:
        raise DestinationRefused(f"cannot resolve webhook host {destination.host}: {exc}") from None
    addresses: Sequence[str] = [str(info[4][0]) for info in infos]
    if not addresses:
        raise DestinationRefused(f"webhook host {destination.host} has no address")
    checked = [check_address(a, destination, rules) for a in addresses]
    return checked[0]
