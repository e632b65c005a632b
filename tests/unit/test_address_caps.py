"""What one address may hold of a worker (``web.server.address_caps``), counted at the
levels of the vote limits: IPv4 /32 and /24, IPv6 /64 and /48; a trusted proxy counts
toward the total only (no I/O)."""

from __future__ import annotations

import ipaddress

from voting_service.web.server.address_caps import AddressCaps, ServerLimits


def test_an_ipv6_host_is_its_64_and_its_network_the_48() -> None:
    caps = AddressCaps(per_address=2, per_network=3, total=0)
    held = [caps.take("2001:db8:1:2::1")[0], caps.take("2001:db8:1:2::ffff")[0]]
    keys, refusal = caps.take("2001:db8:1:2:aaaa::9")  # the same /64: one host
    assert keys == () and refusal is not None and refusal.level == "address"
    assert caps.take("2001:db8:1:3::1")[1] is None  # another /64 of the /48
    _, refusal = caps.take("2001:db8:1:4::1")
    assert refusal is not None and refusal.level == "network" and refusal.limit == 3
    assert caps.take("2001:db8:2::1")[1] is None  # another /48
    caps.give_back(held[0])
    assert caps.take("2001:db8:1:4::1")[1] is None  # a slot of the network given back
    assert caps.held == 4


def test_ipv4_counts_by_address_and_24_and_a_refusal_counts_nothing() -> None:
    caps = AddressCaps(per_address=1, per_network=2, total=3)
    first, _ = caps.take("198.51.100.7")
    assert caps.take("198.51.100.7")[1] is not None
    assert caps.count("198.51.100.7") == 1 and caps.held == 1
    assert caps.take("198.51.100.8")[1] is None
    assert caps.take("198.51.100.9")[1] is not None  # the /24 is full
    assert caps.take("203.0.113.1")[1] is None
    _, refusal = caps.take("192.0.2.1")
    assert refusal is not None and refusal.level == "total" and caps.held == 3
    caps.give_back(first)
    assert caps.count("198.51.100.7") == 0 and caps.held == 2


def test_a_trusted_proxy_counts_toward_the_total_only() -> None:
    limits = ServerLimits(AddressCaps(per_address=1, per_network=1, total=0),
                          exempt=(ipaddress.ip_network("10.0.0.0/8"),))
    assert not limits.counted("10.1.2.3") and limits.counted("198.51.100.7")
    for _ in range(5):
        keys, refusal = limits.connections.take("10.1.2.3", limits.counted("10.1.2.3"))
        assert keys == () and refusal is None
    assert limits.connections.held == 5
    assert limits.connections.take("198.51.100.7")[1] is None
    assert limits.connections.take("198.51.100.7")[1] is not None


def test_a_cap_of_zero_is_no_cap() -> None:
    caps = AddressCaps(per_address=0, per_network=0, total=0)
    assert all(caps.take("198.51.100.7")[1] is None for _ in range(1000))
    assert caps.count("198.51.100.7") == 1000
