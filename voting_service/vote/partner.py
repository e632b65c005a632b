"""Partner JWTs (DESIGN §6): a lean HS256 check, and verified tokens remembered until ``exp``.

A media platform signs each logged-in user once and the widget sends that token with every
vote: verifying it with pyjwt each time (an unverified decode to find the channel, a
verified decode, the key parsed again) was a quarter of a vote's CPU. Here a miss costs one
HMAC and two small JSON decodes, and a hit a dictionary look-up.

The check is the one pyjwt made with ``algorithms=["HS256"]``: the algorithm list is fixed
(the header's ``alg`` must be ``HS256``: no ``none``, no confusion), the signature is
compared in constant time, ``exp``/``iss``/``aud``/``sub`` are required, ``exp`` in the
future and at most 24 h away, ``nbf``/``iat`` not in the future, ``aud`` names the campaign,
``iss`` the channel. A remembered token is used only while its channel's secrets are the ones
that verified it, the campaign still takes partner voters, and before ``exp`` (and before
the previous secret retires, when that one signed it).
"""

from __future__ import annotations

import binascii
import datetime as dt
import hmac
import itertools
import time
from base64 import urlsafe_b64decode
from dataclasses import dataclass
from typing import Any

import msgspec

from ..errors import VoterRequired
from ..models import Campaign, Channel
from .identity import PARTNER_MAX_LIFETIME, keyed_digest, voter_id

ALGORITHM = "HS256"
MAX_TOKEN_LENGTH = 4096
CACHE_SIZE = 200_000
_decode = msgspec.json.Decoder(dict[str, Any])
HEADERS_KEPT = 64
_HS256_HEADERS: set[str] = set()
"""Header segments already read as ``alg: HS256``: a partner signs every token with the same
header, so it is decoded once, not once per token."""


def _b64(segment: str) -> bytes:
    try:
        return urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError) as exc:
        raise VoterRequired("partner token is malformed") from exc


def _json(segment: str) -> dict[str, Any]:
    try:
        return _decode.decode(_b64(segment))
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise VoterRequired("partner token is malformed") from exc


def _int_claim(claims: dict[str, Any], name: str) -> int:
    value = claims[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise VoterRequired(f"partner token rejected: {name} must be a number")
    return int(value)


def _secrets(channel: Channel, now: float) -> list[tuple[bytes, float]]:
    """The channel's valid secrets and until when each is: both during a rotation."""
    found = [(channel.secret.encode(), float("inf"))]
    retiring = channel.previous_expires_at
    if channel.previous_secret and (retiring is None or retiring.timestamp() > now):
        until = float("inf") if retiring is None else retiring.timestamp()
        found.append((channel.previous_secret.encode(), until))
    return found


@dataclass(frozen=True, slots=True)
class Verified:
    subject: str
    channel_id: str
    valid_until: float
    """``exp``, or earlier when the retiring secret signed it."""


def verify(token: str, campaign: Campaign, now: float | None = None) -> Verified:
    """Check a partner JWT for ``campaign``; ``VoterRequired`` says why not."""
    now = time.time() if now is None else now
    if len(token) > MAX_TOKEN_LENGTH or not token.isascii():
        raise VoterRequired("partner token is malformed")
    signing_input, dot, signature = token.rpartition(".")
    header_segment, dot2, payload_segment = signing_input.partition(".")
    if not dot or not dot2 or "." in payload_segment:
        raise VoterRequired("partner token is malformed")
    if header_segment not in _HS256_HEADERS:
        if _json(header_segment).get("alg") != ALGORITHM:
            raise VoterRequired("partner token rejected: the algorithm must be HS256")
        if len(_HS256_HEADERS) < HEADERS_KEPT:
            _HS256_HEADERS.add(header_segment)
    claims = _json(payload_segment)
    channel_id = claims.get("iss")
    channel = next((ch for ch in campaign.channels if ch.id == channel_id), None)
    if channel is None or "partner" not in campaign.rules.identity:
        raise VoterRequired("partner token from an unknown channel")
    given = _b64(signature)
    message = signing_input.encode()
    until = None
    for secret, valid_until in _secrets(channel, now):
        expected = keyed_digest(secret, "sha256", message)
        if hmac.compare_digest(expected, given):
            until = valid_until
            break
    if until is None:
        raise VoterRequired("partner token rejected: Signature verification failed")
    for name in ("exp", "iss", "aud", "sub"):
        if claims.get(name) is None:
            raise VoterRequired(f'partner token rejected: Token is missing the "{name}" claim')
    exp = _int_claim(claims, "exp")
    if exp <= now:
        raise VoterRequired("partner token rejected: Signature has expired")
    for name in ("nbf", "iat"):
        if name in claims and _int_claim(claims, name) > now:
            raise VoterRequired(f"partner token rejected: The token is not yet valid ({name})")
    audience = claims["aud"]
    audiences = [audience] if isinstance(audience, str) else audience
    if not isinstance(audiences, list) or any(not isinstance(a, str) for a in audiences):
        raise VoterRequired("partner token rejected: Invalid claim format in token")
    if campaign.id not in audiences:
        raise VoterRequired("partner token rejected: Audience doesn't match")
    if "jti" in claims and not isinstance(claims["jti"], str):
        raise VoterRequired("partner token rejected: JWT ID must be a string")
    subject = claims["sub"]
    if not isinstance(subject, str):
        raise VoterRequired("partner token rejected: Subject must be a string")
    if exp - now > PARTNER_MAX_LIFETIME:
        raise VoterRequired("partner token lives longer than 24 h")
    if not subject or len(subject) > 256:
        raise VoterRequired("partner token has no usable subject")
    return Verified(subject, channel.id, min(float(exp), until))


Secrets = tuple[str, str | None, dt.datetime | None]
"""A channel's (secret, previous secret, its retirement) that verified a token."""
_Seen = tuple[str, str, float, Secrets]
"""A verified token: voter id, channel id, valid until, the secrets that verified it. A
plain tuple of strings and numbers, which the collector stops tracking (a tuple subclass
it would track for ever), so a full cache adds nothing to a collection's walk."""


def _channel_secrets(channel: Channel) -> Secrets:
    return channel.secret, channel.previous_secret, channel.previous_expires_at


class PartnerTokens:
    """Verified partner tokens by ``(campaign, token)``, bounded, each until it lapses."""

    def __init__(self, size: int = CACHE_SIZE) -> None:
        self._size = size
        self._seen: dict[tuple[str, str], _Seen] = {}

    def voter(
        self, token: str, campaign: Campaign, channels: dict[str, Channel], pepper: str
    ) -> tuple[str, str]:
        """``(voter_id, channel_id)``; ``channels`` = the campaign's channels by id."""
        key = (campaign.id, token)
        seen = self._seen.get(key)
        now = time.time()
        if seen is not None:
            voter, channel_id, valid_until, secrets = seen
            channel = channels.get(channel_id)
            if (
                now < valid_until
                and channel is not None
                and _channel_secrets(channel) == secrets
                and "partner" in campaign.rules.identity
            ):
                return voter, channel_id
            del self._seen[key]
        found = verify(token, campaign, now)
        voter = voter_id(pepper, "partner", f"{found.channel_id}:{found.subject}")
        if len(self._seen) >= self._size:  # drop the oldest quarter: active voters come back
            for old in list(itertools.islice(self._seen, self._size // 4 or 1)):
                del self._seen[old]
        self._seen[key] = (voter, found.channel_id, found.valid_until,
                           _channel_secrets(channels[found.channel_id]))
        return voter, found.channel_id

    def __len__(self) -> int:
        return len(self._seen)
