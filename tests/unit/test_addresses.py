"""The vote path's client address: the text fast path answers as ``identity.client_ip``."""

from __future__ import annotations

import ipaddress

import pytest

from voting_service.settings import IPNetwork
from voting_service.vote.addresses import ClientAddresses
from voting_service.vote.identity import client_ip, is_dotted_quad

PROXIES: tuple[IPNetwork, ...] = (
    ipaddress.ip_network("10.0.0.0/8"),
    ipaddress.ip_network("fd00::/8"),
)
CASES: list[tuple[str | None, str | None]] = [
    ("203.0.113.7", None),
    ("203.0.113.7", "198.51.100.1"),
    ("10.0.0.1", "198.51.100.1"),
    ("10.0.0.1", " 1.1.1.1 ,198.51.100.1 "),
    ("10.0.0.1", "198.51.100.1, 10.0.0.2"),
    ("10.0.0.1", "10.0.0.3, 10.0.0.2"),
    ("10.0.0.1", "198.51.100.1, not-an-ip"),
    ("10.0.0.1", "198.51.100.01"),
    ("10.0.0.1", ""),
    ("10.0.0.1", "2001:db8::5"),
    ("10.0.0.1", "::ffff:198.51.100.1"),
    ("::ffff:10.0.0.1", "198.51.100.1"),
    ("::ffff:203.0.113.9", None),
    ("fd00::1", "2001:db8::5"),
    ("2001:db8::1", None),
    ("010.0.0.1", "198.51.100.1"),
    (None, None),
    ("not-an-ip", "198.51.100.1"),
    ("10.0.0.1", "1.1.1.1, " * 60 + "198.51.100.1"),
]


@pytest.mark.parametrize("trusted", [(), PROXIES], ids=["no-proxies", "proxies"])
@pytest.mark.parametrize(("peer", "forwarded"), CASES)
def test_fast_path_agrees_with_client_ip(
    trusted: tuple[IPNetwork, ...], peer: str | None, forwarded: str | None
) -> None:
    addresses = ClientAddresses(trusted)
    expected = client_ip(peer, forwarded, trusted)
    assert addresses.of(peer, forwarded) == expected
    assert addresses.of(peer, forwarded) == expected, "and again, from its caches"


@pytest.mark.parametrize("text", ["1.2.3.4", "0.0.0.0", "255.255.255.255", "10.0.0.1"])
def test_dotted_quads(text: str) -> None:
    assert is_dotted_quad(text)
    assert str(ipaddress.ip_address(text)) == text


@pytest.mark.parametrize("text", ["01.2.3.4", "1.2.3", "1.2.3.4.5", "256.1.1.1", " 1.2.3.4",
                                  "1.2.3.４", "::1", "", "1..2.3", "+1.2.3.4"])
def test_not_dotted_quads(text: str) -> None:
    assert not is_dotted_quad(text)
