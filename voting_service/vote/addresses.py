"""The client's address on the vote path: ``identity.client_ip`` with a text fast path."""

from __future__ import annotations

import functools
import ipaddress

from ..settings import IPNetwork
from . import identity


class ClientAddresses:
    """``identity.client_ip`` with a text fast path: a canonical dotted quad from a peer
    that is not a trusted proxy (or the last hop a trusted proxy names) is the answer as it
    is; anything else (IPv6, IPv4-mapped, odd spellings, longer proxy chains) goes to
    ``identity.client_ip``, cached, whose rules decide."""

    def __init__(self, trusted: tuple[IPNetwork, ...]) -> None:
        self.trusted = trusted
        self._is_trusted: dict[str, bool] = {}
        self._slow = functools.lru_cache(maxsize=16384)(self._client_ip)

    def _client_ip(self, peer: str | None, forwarded_for: str | None) -> str:
        return identity.client_ip(peer, forwarded_for, self.trusted)

    def trusted_peer(self, address: str) -> bool:
        found = self._is_trusted.get(address)
        if found is None:
            try:
                parsed = ipaddress.ip_address(address)
                found = any(parsed in net for net in self.trusted)
            except ValueError:
                found = False
            if len(self._is_trusted) >= 16384:
                self._is_trusted.clear()
            self._is_trusted[address] = found
        return found

    def of(self, peer: str | None, forwarded_for: str | None) -> str:
        if peer is not None and identity.is_dotted_quad(peer):
            if not forwarded_for or not self.trusted or not self.trusted_peer(peer):
                return peer
            hop = forwarded_for.rpartition(",")[2].strip()
            if identity.is_dotted_quad(hop) and not self.trusted_peer(hop):
                return hop
        if forwarded_for is not None and len(forwarded_for) > 256:
            return identity.client_ip(peer, forwarded_for, self.trusted)  # not kept
        return self._slow(peer, forwarded_for)
