"""The client's address: the peer, or what a trusted proxy says in its forwarding header.

A forwarding header (``X-Forwarded-For`` or RFC 7239 ``Forwarded``) is written by anyone
who can send a request, so it is read only when the peer, the process that opened the
connection to us, is one of the operator's ``trusted_proxies``; by default none is, and
the client is the peer.

Each proxy appends the address it received the request from. The list is read from the
right: every hop written by a trusted proxy is skipped, and the first address that is not
a trusted proxy is the client. Entries further left were written by the client itself
and are never believed, so a client cannot choose its own address by sending the header.

Only one header is read, the one the operator's proxy writes (``forwarded_header``):
reading both would let a client send the other one, which the proxy passes through
untouched, and choose its address that way.

Hand-written rather than uvicorn's ``ProxyHeadersMiddleware``: that one reads only
``X-Forwarded-For`` and also rewrites the scheme from ``X-Forwarded-Proto``, which the
service does not need (its public URL is configured).
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable, Sequence

from starlette.types import Scope

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_networks(values: Iterable[str]) -> tuple[Network, ...]:
    """Networks from addresses and CIDRs (``10.0.0.1``, ``10.0.0.0/8``, ``::1``).

    Raises ``ValueError`` naming the first value that is neither.
    """
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ValueError(f"not an address or CIDR: {value[:60]!r}") from None
    return tuple(networks)


def parse_address(value: str) -> Address | None:
    """An address from one hop: ``1.2.3.4``, ``1.2.3.4:5678``, ``[::1]:80``, ``::1``, or
    quoted as RFC 7239 writes it. ``None`` for ``unknown`` or obfuscated identifiers."""
    value = value.strip().strip('"')
    if value.startswith("["):
        value = value[1 : value.find("]")] if "]" in value else ""
    elif value.count(":") == 1:  # IPv4 with a port; a bare IPv6 address has several colons
        value = value.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _forwarded_for(value: str) -> list[str]:
    """The ``for=`` value of each element of an RFC 7239 ``Forwarded`` header."""
    hops = []
    for element in value.split(","):
        found = ""
        for pair in element.split(";"):
            name, _, item = pair.partition("=")
            if name.strip().lower() == "for":
                found = item
        hops.append(found)
    return hops


class ClientAddress:
    """``resolve(scope)``: the client's address as a string, or ``None`` if unknown."""

    def __init__(self, trusted_proxies: Sequence[str] = (), header: str = "x-forwarded-for"):
        self.networks = parse_networks(trusted_proxies)
        self.header = header.lower().encode("latin-1")
        # Parsing an address and testing it against the networks costs ~10 times a
        # request id (bench: timeit); the same few proxies and clients recur, so each
        # hop's verdict is remembered (bounded: a flood of new ones only misses).
        self._classify = functools.lru_cache(maxsize=4096)(self._classify_hop)

    def _classify_hop(self, hop: str) -> tuple[str | None, bool]:
        """The hop's address as text (None if it is not one), and whether it is trusted."""
        address = parse_address(hop)
        if address is None:
            return None, False
        return str(address), any(address in network for network in self.networks)

    def resolve(self, scope: Scope) -> str | None:
        client = scope.get("client")
        peer: str | None = client[0] if client else None
        if not self.networks or peer is None:
            return peer
        peer_address, trusted = self._classify(peer)
        if peer_address is None or not trusted:
            return peer
        # Several header lines count as one list, in the order received.
        values = [v.decode("latin-1") for k, v in scope["headers"] if k == self.header]
        if not values:
            return peer_address
        joined = ",".join(values)
        hops = _forwarded_for(joined) if self.header == b"forwarded" else joined.split(",")
        leftmost = peer_address
        for hop in reversed(hops):
            address, trusted = self._classify(hop.strip())
            if address is None:
                # A trusted proxy wrote something that is not an address: the chain is
                # broken here, and nothing to its left can be believed.
                return leftmost
            if not trusted:
                return address
            leftmost = address
        # Every hop is a trusted proxy: the request started inside; the first one is it.
        return leftmost
