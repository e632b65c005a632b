"""Who is voting: credentials → ``voter_id`` (a keyed HMAC), and the client's IP.

No raw phone number or partner user id is kept: only ``HMAC(pepper, mode ":" subject)``.
"""

from __future__ import annotations

import binascii
import functools
import hashlib
import hmac
import ipaddress
import re
import secrets
import time
import zlib
from collections.abc import Sequence
from typing import Any

import msgspec
from itsdangerous import URLSafeTimedSerializer

from ..errors import VoterRequired
from ..settings import IPNetwork

VOTER_TOKEN_MAX_AGE = 90 * 24 * 3600
VERIFIED_CACHE_SIZE = 200_000
PARTNER_MAX_LIFETIME = 24 * 3600
VERIFIED_MODES = frozenset({"sms"})
"""Identity modes whose voter tokens carry a voter id checked at issue (not a random one)."""


def voter_id(pepper: str, mode: str, subject: str) -> str:
    # surrogatepass: a JSON string may carry a lone surrogate; it must hash, not crash
    mac = keyed_mac(pepper.encode(), "sha256").copy()
    mac.update(f"{mode}:{subject}".encode("utf-8", "surrogatepass"))
    return mac.hexdigest()[:32]


@functools.lru_cache(maxsize=256)
def keyed_mac(key: bytes, digest: str) -> hmac.HMAC:
    """An HMAC with its key already set up, to ``copy()`` for each message: with OpenSSL 3
    cheaper than ``hmac.new`` or ``hmac.digest`` per message (``docs/capacity.md``)."""
    return hmac.new(key, digestmod=digest)


def keyed_digest(key: bytes, digest: str, message: bytes) -> bytes:
    mac = keyed_mac(key, digest).copy()
    mac.update(message)
    return mac.digest()


TOKEN_SALT = b"voter-token"
MAX_PAYLOAD = 4096


class _Invalid(Exception):
    """A voter token that does not verify (or has lapsed)."""


_URLSAFE = str.maketrans("-_", "+/")


def _b64(text: str) -> bytes:
    """URL-safe base64 without padding, strictly: any other character is a bad token."""
    try:
        return binascii.a2b_base64((text + "=" * (-len(text) % 4)).translate(_URLSAFE),
                                   strict_mode=True)
    except (binascii.Error, ValueError) as exc:
        raise _Invalid from exc


class TimedTokens:
    """itsdangerous's URL-safe timed tokens (``URLSafeTimedSerializer``: HMAC-SHA1 over
    ``payload.timestamp`` with the "django-concat" derived key), verified here with the
    keys derived once. itsdangerous derived every key again and built a signer per token,
    the most of a vote whose token a worker had not seen (``docs/capacity.md``).
    Same format, same checks (any listed key, age ≤ ``max_age`` and not negative); a
    non-canonical encoding that itsdangerous would have decoded leniently is refused."""

    def __init__(self, secret_keys: Sequence[str], salt: bytes) -> None:
        self._keys = [hashlib.sha1(salt + b"signer" + key.encode()).digest()
                      for key in secret_keys]

    def loads(self, token: str, max_age: int, now: float) -> tuple[Any, int]:
        """``(data, signed at)``; ``_Invalid`` if the token is not one of ours or lapsed."""
        if not token.isascii():
            raise _Invalid
        value, dot, signature = token.rpartition(".")
        if not dot:
            raise _Invalid
        given, message = _b64(signature), value.encode("ascii")
        if not any(hmac.compare_digest(keyed_digest(key, "sha1", message), given)
                   for key in self._keys):
            raise _Invalid
        payload, dot, stamp = value.rpartition(".")
        if not dot:
            raise _Invalid
        signed_at = int.from_bytes(_b64(stamp), "big")
        if not 0 <= int(now) - signed_at <= max_age:
            raise _Invalid
        compressed = payload.startswith(".")
        raw = _b64(payload[1:] if compressed else payload)
        try:
            if compressed:
                inflate = zlib.decompressobj()
                raw = inflate.decompress(raw, MAX_PAYLOAD)
                if inflate.unconsumed_tail:
                    raise _Invalid
            return msgspec.json.decode(raw), signed_at
        except (zlib.error, msgspec.DecodeError) as exc:
            raise _Invalid from exc


class VoterTokens:
    """Signed anonymous voter tokens; the first secret signs, every listed one verifies."""

    def __init__(self, secret_keys: Sequence[str], pepper: str) -> None:
        # itsdangerous signs with the *last* key of its list (oldest to newest): reverse ours
        self._serializer = URLSafeTimedSerializer(list(secret_keys)[::-1],
                                                  salt=TOKEN_SALT.decode())
        self._verifier = TimedTokens(secret_keys, TOKEN_SALT)
        self._pepper = pepper
        self._verified: dict[tuple[str, str], tuple[str, str, float]] = {}

    def issue(self, campaign_id: str) -> str:
        return self._serializer.dumps({"c": campaign_id, "s": secrets.token_urlsafe(12)})

    def issue_verified(self, campaign_id: str, mode: str, voter: str) -> str:
        """A token for a voter whose identity was checked (``sms``): it carries the voter id."""
        return self._serializer.dumps({"c": campaign_id, "m": mode, "v": voter})

    def credential(self, token: str, campaign_id: str) -> tuple[str, str]:
        """``(voter_id, identity mode)``: ``anonymous`` or a verified mode such as ``sms``.

        A verified token is remembered until it expires: a citizen votes several times a day
        with one token, and checking the signature each time was a sixth of a vote's CPU.
        """
        hit = self._verified.get((token, campaign_id))
        if hit is not None and hit[2] > time.time():
            return hit[0], hit[1]
        found = self._check(token, campaign_id)
        if len(self._verified) >= VERIFIED_CACHE_SIZE:
            self._verified.clear()  # bounded; refills with the voters active right now
        self._verified[(token, campaign_id)] = found
        return found[0], found[1]

    def _check(self, token: str, campaign_id: str) -> tuple[str, str, float]:
        if len(token) > 512:
            raise VoterRequired("voter token is malformed")
        try:
            data, signed_at = self._verifier.loads(token, VOTER_TOKEN_MAX_AGE, time.time())
        except _Invalid as exc:
            raise VoterRequired("voter token is invalid or expired") from exc
        expires = signed_at + VOTER_TOKEN_MAX_AGE
        if not isinstance(data, dict) or data.get("c") != campaign_id:
            raise VoterRequired("voter token belongs to another campaign")
        mode = data.get("m", "anonymous")
        if mode == "anonymous":
            anon = voter_id(self._pepper, "anon", f"{campaign_id}:{data.get('s')}")
            return anon, mode, expires
        voter = data.get("v")
        if mode not in VERIFIED_MODES or not isinstance(voter, str) or len(voter) != 32:
            raise VoterRequired("voter token is malformed")
        return voter, str(mode), expires

    def voter(self, token: str, campaign_id: str) -> str:
        return self.credential(token, campaign_id)[0]


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def address(text: str) -> IPAddress:
    """An address in its one canonical form, or ``ValueError``.

    ``::ffff:a.b.c.d`` (a dual-stack socket, a proxy's ``X-Forwarded-For``) is the IPv4
    client ``a.b.c.d``: unmapped here, so limits, the blocklist and the ledger see one
    address, not two. An IPv6 zone (``%eth0``) names a link, not a client: dropped.
    """
    addr = ipaddress.ip_address(text)
    if addr.version == 6:
        mapped = addr.ipv4_mapped
        if mapped is not None:
            return mapped
        if addr.scope_id is not None:
            return ipaddress.IPv6Address(addr.packed)
    return addr


def network(text: str) -> IPNetwork:
    """An address or CIDR as a network, IPv4-mapped ones unmapped (``::ffff:a.b.c.0/120`` is
    ``a.b.c.0/24``); ``ValueError`` when it is neither."""
    net = ipaddress.ip_network(text.strip(), strict=False)
    if net.version == 6 and net.prefixlen >= 96:
        mapped = net.network_address.ipv4_mapped
        if mapped is not None:
            return ipaddress.IPv4Network(f"{mapped}/{net.prefixlen - 96}", strict=False)
    return net


def client_ip(peer: str | None, forwarded_for: str | None, trusted: Sequence[IPNetwork]) -> str:
    """The client's address: ``X-Forwarded-For`` is believed only from trusted proxies.

    Walks the header from the right, skipping trusted hops, and takes the first untrusted one.
    Every hop is unmapped (``address``) before it is compared or returned.
    """
    try:
        addr = address(peer or "0.0.0.0")
    except ValueError:
        return "0.0.0.0"
    if not forwarded_for or not trusted:
        return str(addr)
    for hop in reversed([h.strip() for h in forwarded_for.split(",")]):
        if not any(addr in net for net in trusted):
            break
        try:
            addr = address(hop)
        except ValueError:
            break
    return str(addr)


def ip_prefixes(ip: str) -> list[str]:
    """The networks an address is limited under: IPv4 /32 and /24, IPv6 /64 and /48."""
    addr = address(ip)
    lengths = (32, 24) if addr.version == 4 else (64, 48)
    return [str(ipaddress.ip_network(f"{addr}/{n}", strict=False)) for n in lengths]


@functools.lru_cache(maxsize=16384)
def network_prefixes(ip: str) -> tuple[str, str]:
    """``ip_prefixes`` of an address, fast: it runs on every vote, and parsing with
    ``ipaddress`` was a large share of a vote's CPU (``docs/capacity.md``). A canonical
    dotted quad (what ``client_ip``
    gives) is split as text — same strings as ``ipaddress``; anything else goes through
    ``ip_prefixes``. Cached: a citizen's votes come in a row from one address."""
    if is_dotted_quad(ip):
        a, b, c, _ = ip.split(".")
        return f"{ip}/32", f"{a}.{b}.{c}.0/24"
    host, net = ip_prefixes(ip)
    return host, net


_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_DOTTED_QUAD = re.compile(rf"{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}")


def is_dotted_quad(text: str) -> bool:
    """Whether ``text`` is an IPv4 address exactly as ``ipaddress`` prints it (checked as
    text, ~10× cheaper than parsing): no leading zeros, no spaces, four parts ≤ 255."""
    return _DOTTED_QUAD.fullmatch(text) is not None
