from __future__ import annotations

import pytest

from trustpub.web.forwarded import ClientAddress, parse_address, parse_networks


def scope(peer: str | None, *headers: tuple[str, str]) -> dict[str, object]:
    return {
        "client": None if peer is None else (peer, 40000),
        "headers": [(k.lower().encode(), v.encode("latin-1")) for k, v in headers],
    }


PROXIES = ["10.0.0.0/8", "192.0.2.7"]


def test_without_trusted_proxies_the_header_is_never_read() -> None:
    resolve = ClientAddress().resolve
    assert resolve(scope("10.1.1.1", ("X-Forwarded-For", "203.0.113.9"))) == "10.1.1.1"


def test_a_peer_that_is_not_a_trusted_proxy_cannot_choose_its_address() -> None:
    resolve = ClientAddress(PROXIES).resolve
    assert resolve(scope("198.51.100.4", ("X-Forwarded-For", "203.0.113.9"))) == "198.51.100.4"


def test_the_first_untrusted_hop_from_the_right_is_the_client() -> None:
    resolve = ClientAddress(PROXIES).resolve
    # The client wrote "1.1.1.1" itself; the trusted proxies appended the rest.
    header = ("X-Forwarded-For", "1.1.1.1, 203.0.113.9, 10.2.3.4")
    assert resolve(scope("192.0.2.7", header)) == "203.0.113.9"


def test_several_header_lines_are_one_list_in_order() -> None:
    resolve = ClientAddress(PROXIES).resolve
    lines = (("X-Forwarded-For", "1.1.1.1"), ("X-Forwarded-For", "203.0.113.9"))
    assert resolve(scope("10.0.0.1", *lines)) == "203.0.113.9"


def test_a_chain_of_trusted_proxies_only_gives_the_first_of_them() -> None:
    resolve = ClientAddress(PROXIES).resolve
    assert resolve(scope("10.0.0.1", ("X-Forwarded-For", "10.9.9.9, 10.0.0.2"))) == "10.9.9.9"


def test_a_trusted_peer_without_the_header_is_the_client() -> None:
    assert ClientAddress(PROXIES).resolve(scope("10.0.0.1")) == "10.0.0.1"


def test_garbage_written_by_a_proxy_stops_the_walk_at_the_last_trusted_hop() -> None:
    resolve = ClientAddress(PROXIES).resolve
    assert resolve(scope("10.0.0.1", ("X-Forwarded-For", "1.1.1.1, unknown"))) == "10.0.0.1"


def test_only_the_configured_header_is_read() -> None:
    # A client sends the header the proxy does not write, hoping it passes through.
    spoof = ("Forwarded", "for=1.1.1.1")
    assert ClientAddress(PROXIES).resolve(scope("10.0.0.1", spoof)) == "10.0.0.1"
    real = ("X-Forwarded-For", "1.1.1.1")
    assert ClientAddress(PROXIES, "forwarded").resolve(scope("10.0.0.1", real)) == "10.0.0.1"


def test_rfc_7239_forwarded_elements_are_read_from_the_right() -> None:
    resolve = ClientAddress(PROXIES, "forwarded").resolve
    header = ("Forwarded", 'for=1.1.1.1, for="[2001:db8::1]:4711";proto=https, For=10.0.0.5')
    assert resolve(scope("10.0.0.1", header)) == "2001:db8::1"


@pytest.mark.parametrize(
    ("hop", "address"),
    [
        ("203.0.113.9", "203.0.113.9"),
        ("203.0.113.9:443", "203.0.113.9"),
        ("[2001:db8::1]:80", "2001:db8::1"),
        ("2001:db8::1", "2001:db8::1"),
        ('"[2001:db8::1]"', "2001:db8::1"),
        ("::ffff:203.0.113.9", "203.0.113.9"),
        ("unknown", None),
        ("_hidden", None),
        ("", None),
    ],
)
def test_hops_are_parsed_as_addresses(hop: str, address: str | None) -> None:
    parsed = parse_address(hop)
    assert (None if parsed is None else str(parsed)) == address


def test_trusted_proxies_are_addresses_or_cidrs() -> None:
    assert len(parse_networks(["10.0.0.0/8", "::1", "192.0.2.7"])) == 3
    with pytest.raises(ValueError, match="not an address or CIDR"):
        parse_networks(["proxy.internal"])
