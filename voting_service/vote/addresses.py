"""The client's address on the vote path: ``identity.client_ip`` with a text fast path."""

from __future__ import annotations

import functools

from ..settings import IPNetwork
from . import identity


class ClientAddresses:
    """``identity.client_ip`` with a text fast path: a canonical dotted quad from a peer
    that is not a trusted proxy (or the last hop a trusted proxy names) is the answer as it
    is; anything else (IPv6, IPv4-mapped, odd spellings, longer proxy chains) goes to
    ``identity.client_ip``, cached, whose rules decide."""

    def __init__(self, trusted: tuple[IPNetwork, ...]) -> None:
        self.trusted = trusted
        self._v4 = [(int(n.network_address), int(n.netmask)) for n in trusted if n.version == 4]
        self._slow = functools.lru_cache(maxsize=16384)(self._client_ip)

    def _client_ip(self, peer: str | None, forwarded_for: str | None) -> str:
        return identity.client_ip(peer, forwarded_for, self.trusted)

    def _trusted_quad(self, quad: str) -> bool:
        """Whether a dotted quad is in an IPv4 network of ``VOTING_TRUSTED_PROXIES``."""
        a, b, c, d = quad.split(".")
        n = (int(a) << 24) | (int(b) << 16) | (int(c) << 8) | int(d)
        return any(n & mask == net for net, mask in self._v4)

    def of(self, peer: str | None, forwarded_for: str | None) -> str:
        if peer is not None and identity.is_dotted_quad(peer):
            if not forwarded_for or not self.trusted or not self._trusted_quad(peer):
                return peer
            hop = forwarded_for.rpartition(",")[2].strip()
            if identity.is_dotted_quad(hop) and not self._trusted_quad(hop):
                return hop
        if forwarded_for is not None and len(forwarded_for) > 256:
            return identity.client_ip(peer, forwarded_for, self.trusted)  # not kept
        return self._slow(peer, forwarded_for)
