"""Partner JWTs: the lean HS256 check agrees with pyjwt, and the cache of verified tokens
forgets a token when it lapses or when its channel's secrets change."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import jwt
import msgspec
import pytest

from voting_service.errors import VoterRequired
from voting_service.models import Campaign, Candidate, Channel, Rules
from voting_service.vote import partner
from voting_service.vote.identity import voter_id
from voting_service.vote.partner import PartnerTokens, verify

PEPPER = "pepper-0123456789"
SECRET = "channel-secret-" + "0123456789abcdef" * 4
NEW_SECRET = "channel-secret-" + "fedcba9876543210" * 4


def campaign(**channel: Any) -> Campaign:
    now = dt.datetime.now(dt.UTC)
    return Campaign(
        id="c2026", title="t", timezone="Asia/Shanghai",
        opens_at=now - dt.timedelta(days=1), closes_at=now + dt.timedelta(days=1),
        status="open", show_counts=True, rules=Rules(identity=["anonymous", "partner"]),
        candidates=[Candidate(id="c001", number=1, name="n")],
        channels=[Channel(id="xhby", name="新华报业", secret=channel.pop("secret", SECRET),
                          **channel)],
    )


def token(secret: str = SECRET, **changes: Any) -> str:
    claims: dict[str, Any] = {"iss": "xhby", "aud": "c2026", "sub": "user-42",
                              "exp": int(time.time()) + 3600}
    claims.update(changes)
    return jwt.encode({k: v for k, v in claims.items() if v is not None}, secret,
                      algorithm="HS256")


def pyjwt_accepts(value: str, c: Campaign) -> bool:
    try:
        claims = jwt.decode(value, SECRET, algorithms=["HS256"], audience=c.id, issuer="xhby",
                            options={"require": ["exp", "iss", "aud", "sub"]})
    except jwt.PyJWTError:
        return False
    return bool(claims["sub"]) and len(claims["sub"]) <= 256


NOW = int(time.time())
CLAIM_CASES: list[dict[str, Any]] = [
    {},
    {"aud": ["other", "c2026"]},
    {"aud": ["other"]},
    {"aud": 5},
    {"aud": ["c2026", 5]},
    {"sub": 42},
    {"exp": float(NOW + 100)},
    {"exp": "soon"},
    {"exp": True},
    {"exp": NOW},
    {"iat": NOW - 10},
    {"iat": NOW + 600},
    {"iat": "x"},
    {"nbf": NOW - 10},
    {"nbf": NOW + 600},
    {"jti": "abc"},
    {"jti": 7},
    {"extra": {"nested": [1, 2]}},
]


@pytest.mark.parametrize("changes", CLAIM_CASES, ids=[str(c) for c in CLAIM_CASES])
def test_the_lean_check_decides_as_pyjwt(changes: dict[str, Any]) -> None:
    c = campaign()
    value = token(**changes)
    try:
        verify(value, c)
        accepted = True
    except VoterRequired:
        accepted = False
    assert accepted == pyjwt_accepts(value, c)


def test_tampered_payload_or_signature_is_refused() -> None:
    value = token()
    head, payload, sig = value.split(".")
    other = token(sub="user-43").split(".")[1]
    for bad in (f"{head}.{other}.{sig}", f"{head}.{payload}.{sig[:-2]}AA", f"{head}.{payload}.",
                f"{head}.{payload}", f"{head}.{payload}.{sig}.x", value + "é"):
        with pytest.raises(VoterRequired):
            verify(bad, campaign())


def test_cache_hit_gives_the_same_voter_without_verifying_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    checks: list[str] = []
    real_verify = partner.verify

    def counted(value: str, c: Campaign, now: float | None = None) -> partner.Verified:
        checks.append(value)
        return real_verify(value, c, now)

    monkeypatch.setattr(partner, "verify", counted)
    c = campaign()
    cache = PartnerTokens()
    value = token()
    channels = {ch.id: ch for ch in c.channels}
    first = cache.voter(value, c, channels, PEPPER)
    assert first == (voter_id(PEPPER, "partner", "xhby:user-42"), "xhby")
    assert cache.voter(value, c, channels, PEPPER) == first
    assert cache.voter(token(sub="user-43"), c, channels, PEPPER) != first
    assert len(checks) == 2, "one check per new token, none for the repeated one"
    assert PartnerTokens().voter(value, c, channels, PEPPER) == first, "as checked afresh"


def test_a_new_secret_forgets_tokens_of_the_old_one() -> None:
    cache = PartnerTokens()
    value = token()
    old = campaign()
    cache.voter(value, old, {ch.id: ch for ch in old.channels}, PEPPER)
    rotated_away = campaign(secret=NEW_SECRET)  # the old secret dropped at once
    with pytest.raises(VoterRequired):
        cache.voter(value, rotated_away, {ch.id: ch for ch in rotated_away.channels}, PEPPER)


def test_a_token_of_the_retiring_secret_lapses_with_it() -> None:
    cache = PartnerTokens()
    value = token()
    retiring = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=30)
    during = campaign(secret=NEW_SECRET, previous_secret=SECRET, previous_expires_at=retiring)
    channels = {ch.id: ch for ch in during.channels}
    assert cache.voter(value, during, channels, PEPPER)[1] == "xhby"
    found = verify(value, during)
    assert found.valid_until == pytest.approx(retiring.timestamp()), "not kept past retirement"
    after = msgspec.structs.replace(
        during, channels=[msgspec.structs.replace(
            during.channels[0], previous_expires_at=dt.datetime.now(dt.UTC)
            - dt.timedelta(seconds=1))])
    with pytest.raises(VoterRequired):
        cache.voter(value, after, {ch.id: ch for ch in after.channels}, PEPPER)


def test_an_expired_cached_token_is_refused() -> None:
    cache = PartnerTokens()
    c = campaign()
    channels = {ch.id: ch for ch in c.channels}
    value = token(exp=int(time.time()) + 1)
    cache.voter(value, c, channels, PEPPER)
    time.sleep(1.1)
    with pytest.raises(VoterRequired):
        cache.voter(value, c, channels, PEPPER)


def test_partner_mode_turned_off_refuses_remembered_tokens() -> None:
    cache = PartnerTokens()
    c = campaign()
    channels = {ch.id: ch for ch in c.channels}
    cache.voter(token(), c, channels, PEPPER)
    closed = msgspec.structs.replace(c, rules=msgspec.structs.replace(
        c.rules, identity=["anonymous"]))
    with pytest.raises(VoterRequired):
        cache.voter(token(), closed, channels, PEPPER)


def test_the_cache_is_bounded() -> None:
    cache = PartnerTokens(size=40)
    c = campaign()
    channels = {ch.id: ch for ch in c.channels}
    for i in range(200):
        cache.voter(token(sub=f"user-{i}"), c, channels, PEPPER)
    assert len(cache) <= 40
