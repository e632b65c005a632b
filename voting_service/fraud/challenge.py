"""Proof of work (DESIGN §3.2): ALTCHA-compatible challenges, bound to a campaign and a voter.

A challenge is the ALTCHA v1 JSON ``{algorithm, challenge, maxnumber, salt, signature}``; the
vote carries the solution in ``proof`` = base64 of ``{algorithm, challenge, number, salt,
signature}``, exactly what the ALTCHA widget submits. Everything the server needs later rides
in the signed salt's parameters: ``expires`` (unix seconds), ``c`` (campaign), ``v`` (a hash
of the voter id: a challenge is spent in the voter's own Redis slot, so another voter cannot
use it) and ``l`` (difficulty level). Checking a proof here is pure CPU; marking it spent is
done by ``cast_vote.lua`` in the same step that counts the vote.

Difficulty: ``maxnumber`` = the campaign's ``challenge_max_number`` × 2^level. In ``adaptive``
mode the level rises with the *pressure* of the client's address and network — how close the
busier of them is to its hard caps — once past the soft share (``soft_limit_percent``).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import json
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, cast

import msgspec
from altcha import v1 as altcha

from .. import digits
from ..errors import ChallengeFailed
from ..models import MAX_LEVEL, Rules

ALGORITHM: Final = "SHA-256"
TTL = 300
"""Seconds a challenge may be used."""
SPENT_MARGIN = 60
"""The spent marker outlives the challenge by this much (clock skew between app and Redis)."""


class _Payload(msgspec.Struct):
    """The solution the widget submits (extra members such as ``took`` are ignored)."""

    algorithm: str
    challenge: str
    number: int
    salt: str
    signature: str


@dataclass(frozen=True)
class Proof:
    """A valid, unexpired solution for this voter and campaign; not yet known to be unused."""

    id: str
    """Names the spent marker: half of the challenge hash (unique by the salt's nonce)."""
    expires: int
    level: int

    @property
    def spent_until(self) -> int:
        return self.expires + SPENT_MARGIN


def voter_tag(voter_id: str) -> str:
    """What a challenge's salt says about its voter: a hash, not the voter id itself."""
    return hashlib.sha256(f"pow:{voter_id}".encode()).hexdigest()[:16]




def max_number(rules: Rules, level: int) -> int:
    return int(rules.challenge_max_number) << max(0, min(level, MAX_LEVEL))


class Challenges:
    """Issues and checks challenges; the first secret key signs, every listed one verifies."""

    def __init__(self, secret_keys: Sequence[str]) -> None:
        if not secret_keys:
            raise ValueError("at least one secret key is needed")
        # derived keys: a challenge signature is never valid as anything else's signature
        self._keys = [
            hmac.new(k.encode(), b"altcha-challenge", hashlib.sha256).hexdigest()
            for k in secret_keys
        ]

    def issue(
        self, campaign_id: str, voter_id: str, rules: Rules, level: int, now: float
    ) -> dict[str, Any]:
        level = max(0, min(level, MAX_LEVEL))
        ceiling = max_number(rules, level)
        made = altcha.create_challenge(
            algorithm=ALGORITHM,
            max_number=ceiling,
            salt_length=12,
            hmac_key=self._keys[0],
            salt="",
            number=None,
            expires=dt.datetime.fromtimestamp(int(now) + TTL, dt.UTC),
            params={"c": campaign_id, "v": voter_tag(voter_id), "l": str(level)},
        )
        return {
            "algorithm": made.algorithm,
            "challenge": made.challenge,
            # the ALTCHA widget reads "maxnumber" (v1) or "maxNumber" (later versions)
            "maxnumber": ceiling,
            "maxNumber": ceiling,
            "salt": made.salt,
            "signature": made.signature,
            "expires": int(now) + TTL,
        }

    def verify(self, proof: str | None, campaign_id: str, voter_id: str, now: float) -> Proof:
        """The checked proof, or ``ChallengeFailed`` (missing, malformed, forged, expired,
        or issued for another campaign or voter)."""
        if not proof:
            raise ChallengeFailed("this vote needs a proof of work: GET the challenge first")
        try:
            raw = base64.b64decode(proof.strip(), validate=True)
            payload = msgspec.json.decode(raw, type=_Payload)
        except (binascii.Error, ValueError, msgspec.DecodeError) as exc:
            raise ChallengeFailed("the proof is not a base64 ALTCHA payload") from exc
        if payload.algorithm != ALGORITHM or not 0 <= payload.number <= 10**9:
            raise ChallengeFailed("the proof does not answer one of our challenges")
        params = _salt_params(payload.salt)
        if params is None:
            raise ChallengeFailed("the proof does not answer one of our challenges")
        if params["c"] != campaign_id:
            raise ChallengeFailed("the challenge was issued for another campaign")
        if not hmac.compare_digest(params["v"], voter_tag(voter_id)):
            raise ChallengeFailed("the challenge was issued to another voter")
        expires, level = int(params["expires"]), int(params["l"])
        if expires <= now:
            raise ChallengeFailed("the challenge expired: fetch a new one")
        if expires > now + TTL + SPENT_MARGIN or not 0 <= level <= MAX_LEVEL:
            raise ChallengeFailed("the proof does not answer one of our challenges")
        data = {"algorithm": ALGORITHM, "challenge": payload.challenge,
                "number": payload.number, "salt": payload.salt, "signature": payload.signature}
        if not any(self._solved(data, key) for key in self._keys):
            raise ChallengeFailed("the proof of work is wrong")
        return Proof(payload.challenge[:32], expires, level)

    @staticmethod
    def _solved(data: dict[str, Any], key: str) -> bool:
        payload = cast(altcha.PayloadType, data)
        ok, _ = altcha.verify_solution(payload, key, check_expires=False)
        return ok


def _salt_params(salt: str) -> dict[str, str] | None:
    """The salt's parameters when each one we rely on occurs exactly once and is well-formed."""
    if len(salt) > 400 or "?" not in salt:
        return None
    query = salt.split("?", 1)[1]
    try:
        parsed = urllib.parse.parse_qs(query, strict_parsing=False, max_num_fields=10)
    except ValueError:
        return None
    out: dict[str, str] = {}
    for name in ("expires", "c", "v", "l"):
        values = parsed.get(name)
        if not values or len(values) != 1:
            return None
        out[name] = values[0]
    if not (digits.is_number(out["expires"]) and digits.is_number(out["l"])):
        return None
    return out


_signers: dict[tuple[str, ...], Challenges] = {}


def signer(secret_keys: Sequence[str]) -> Challenges:
    """One ``Challenges`` per key list (keys are derived once, not per request)."""
    key = tuple(secret_keys)
    found = _signers.get(key)
    if found is None:
        found = _signers[key] = Challenges(key)
    return found


def solve(challenge: Mapping[str, Any]) -> str:
    """Solve a challenge as the widget would and return the ``proof`` for a vote.

    For tests and benchmarks (the real work is done by the voter's browser): with the
    campaign's ``challenge_max_number`` at 1000 this takes about a millisecond.
    """
    found = altcha.solve_challenge(
        str(challenge["challenge"]), str(challenge["salt"]), ALGORITHM,
        int(challenge["maxnumber"]),
    )
    if found is None:
        raise ValueError("no solution below maxnumber")
    payload = {"algorithm": ALGORITHM, "challenge": challenge["challenge"],
               "number": found.number, "salt": challenge["salt"],
               "signature": challenge["signature"]}
    return base64.b64encode(json.dumps(payload).encode()).decode()
