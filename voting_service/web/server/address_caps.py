"""Caps on what one address may hold open at once in a worker: connections, live streams.

Counted per worker process, like uvicorn's own ``limit_concurrency``: with N workers an
address may hold up to N times the cap (the kernel spreads connections over the workers).
An address is counted at the levels of the vote limits (``identity.ip_prefixes``): the
address itself (IPv4 /32, IPv6 /64) and its network (/24, /48), so a campus NAT behind a few
addresses of one /24 gets the network's larger cap, and one host the smaller one.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field

from ...settings import IPNetwork
from ...vote import identity

SERVER_LIMITS = "voting_service.server_limits"
"""The lifespan state key of the worker's ``ServerLimits``, which uvicorn hands every
connection's protocol (``web/server/protocol.py``) as ``app_state``; absent: no caps, and bodies
get ``BODY_TIMEOUT``."""
BODY_TIMEOUT = 10.0
BODY_MIN_RATE = 16384


@dataclass(frozen=True)
class Refusal:
    level: str
    """``address``, ``network`` or ``total``: which cap was reached."""
    limit: int


@dataclass
class AddressCaps:
    """Open things (connections, streams) per address, per network and in all; a cap of 0
    is no cap at that level."""

    per_address: int
    per_network: int
    total: int
    _counts: dict[str, int] = field(default_factory=dict, repr=False)
    held: int = 0

    def take(self, ip: str | None, counted: bool = True) -> tuple[tuple[str, ...], Refusal | None]:
        """Count one more for ``ip``; ``(keys to give back, None)``, or ``((), refusal)``
        when a cap is reached (nothing counted then). ``counted=False`` (a trusted proxy,
        a unix socket) counts toward the total only."""
        if self.total and self.held >= self.total:
            return (), Refusal("total", self.total)
        keys: tuple[str, ...] = ()
        if counted and ip:
            try:
                host, net = identity.network_prefixes(ip)
            except ValueError:
                host, net = ip, ip
            counts = self._counts
            if self.per_address and counts.get(host, 0) >= self.per_address:
                return (), Refusal("address", self.per_address)
            if self.per_network and net != host and counts.get(net, 0) >= self.per_network:
                return (), Refusal("network", self.per_network)
            keys = (host,) if net == host else (host, net)
            for key in keys:
                counts[key] = counts.get(key, 0) + 1
        self.held += 1
        return keys, None

    def give_back(self, keys: tuple[str, ...]) -> None:
        self.held -= 1
        counts = self._counts
        for key in keys:
            left = counts.get(key, 0) - 1
            if left > 0:
                counts[key] = left
            else:
                counts.pop(key, None)

    def count(self, ip: str) -> int:
        """How many ``ip`` holds (its address level)."""
        return self._counts.get(identity.network_prefixes(ip)[0], 0)


def _nothing(*_: object) -> None:
    return None


@dataclass
class ServerLimits:
    """What one client may hold of a worker: its connections (by the peer's address; peers
    in ``exempt``, the trusted proxies, count toward the total only) and the time its
    request bodies may take."""

    connections: AddressCaps
    exempt: tuple[IPNetwork, ...] = ()
    body_timeout: float = BODY_TIMEOUT
    body_min_rate: int = BODY_MIN_RATE
    refused: Callable[[str], None] = _nothing
    """Told the level (address, network, total) of each connection refused (a metric)."""
    timed_out: Callable[[], None] = _nothing
    """Told of each body cut off at its deadline (a metric)."""

    def counted(self, host: str) -> bool:
        return not self.exempt or not _in_networks(host, self.exempt)


@functools.lru_cache(maxsize=4096)
def _in_networks(host: str, networks: tuple[IPNetwork, ...]) -> bool:
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(addr in net for net in networks)
