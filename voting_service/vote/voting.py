"""The vote path (DESIGN §3): network limits, then one atomic script in the voter's slot."""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError

from ..errors import (
    AlreadyVoted,
    Blocked,
    CandidateNotFound,
    ChallengeFailed,
    DailyQuotaExhausted,
    InvalidRequest,
    RateLimited,
    Unavailable,
    VotingClosed,
)
from ..models import Rules, VoteIn, level_for
from . import keys, scripts
from .identity import network_prefixes
from .registry import LiveCampaign, Registry
from .store import Batcher

IDEMPOTENCY_TTL = 3 * 86400


@dataclass(frozen=True)
class Ballot:
    """A vote that passed the HTTP edge: who, for whom, from where."""

    voter_id: str
    vote: VoteIn
    ip: str
    channel: str = ""
    channel_signed: bool = False
    """The channel is a partner token's issuer (signed), not just the body's claim."""
    challenge_key: str = ""
    """``keys.challenge_spent`` of the proof of work, when the campaign asks for one."""
    challenge_expires: int = 0
    challenge_level: int = 0
    """Difficulty level the proof was issued at (``challenge.level_for``)."""


@dataclass(frozen=True)
class Accepted:
    vote_id: str
    candidate_id: str
    votes_left_today: int
    candidate_votes: int | None
    day_ends_at: float


def ip_limits(rules: Rules, ip: str) -> list[tuple[str, int, int]]:
    """``(prefix, per minute, per day)`` of the address (IPv4 /32, IPv6 /64: one IPv6 client
    holds a whole /64) and of its network (IPv4 /24, IPv6 /48)."""
    host, net = network_prefixes(ip)
    return [(host, rules.ip_per_minute, rules.ip_per_day),
            (net, rules.net_per_minute, rules.net_per_day)]


async def check_ip(
    batcher: Batcher, campaign: LiveCampaign, ip: str, now: float, *, peek: bool = False,
    minting: bool = False,
) -> float:
    """Count a vote against the address's and its network's limits, in one ``ip_limit.lua``
    call (the address's keys carry its network's hash tag); ``RateLimited`` past a hard cap.
    Returns the pressure: how full the fuller of the limits is, 1.0 = at the cap. ``peek``
    counts nothing and refuses nothing. ``minting`` counts a new anonymous voter token
    instead, against the same caps on keys of its own (``keys.mint_*``)."""
    rate_key, day_key = (keys.mint_rate, keys.mint_day) if minting else (keys.ip_rate, keys.ip_day)
    rules = campaign.c.rules
    levels = [lv for lv in ip_limits(rules, ip) if lv[1] or lv[2]]  # no cap: nothing to count
    if not levels:
        return 0.0
    day = campaign.day(now)
    network = network_prefixes(ip)[1]  # the slot of every level, whichever are capped
    script_keys: list[str] = []
    args: list[Any] = [day.expire_at, 1 if peek else 0]
    for prefix, per_min, per_day in levels:
        script_keys += [rate_key(campaign.id, prefix, network),
                        day_key(campaign.id, prefix, day.date, network)]
        args += [per_min, per_day]
    result = [int(x) for x in await batcher.call(scripts.ip_limit(), script_keys, args)]
    allowed, retry_ms = result[0], result[1]
    if not allowed:
        if peek:
            return 1.0
        wait = math.ceil(day.ends_at - now) if retry_ms < 0 else math.ceil(retry_ms / 1000)
        raise RateLimited(headers={"Retry-After": str(max(wait, 1))})
    pressure = 0.0
    for i, (_, per_min, per_day) in enumerate(levels):
        load, count = result[2 + 2 * i], result[3 + 2 * i]
        if per_min:
            pressure = max(pressure, load / 1000)
        if per_day:
            pressure = max(pressure, count / per_day)
    return pressure


def quota_headers(rules: Rules, left: int, day_ends: float, now: float) -> dict[str, str]:
    """IETF RateLimit headers for the voter's own daily quota — and never for anti-bot limits."""
    reset = max(math.ceil(day_ends - now), 1)
    return {
        "RateLimit-Policy": f'"daily";q={rules.votes_per_day};w=86400',
        "RateLimit": f'"daily";r={max(left, 0)};t={reset}',
    }


def check_open(campaign: LiveCampaign, candidate_id: str, channel: str, now: float) -> None:
    if not campaign.is_open(now):
        raise VotingClosed(f"voting is {campaign.state(now)}")
    if candidate_id not in campaign.candidates:
        raise CandidateNotFound(f"no candidate {candidate_id!r}")
    if channel and channel not in campaign.channels:
        raise InvalidRequest(f"unknown channel {channel!r}")


async def cast(
    batcher: Batcher, registry: Registry, campaign: LiveCampaign, ballot: Ballot
) -> Accepted:
    now = time.time()
    vote = ballot.vote
    check_open(campaign, vote.candidate_id, ballot.channel, now)
    rules = campaign.c.rules
    if rules.challenge != "off" and not ballot.challenge_key:
        raise ChallengeFailed("this vote needs a proof of work: GET the challenge first")
    pressure = await check_ip(batcher, campaign, ballot.ip, now)
    if rules.challenge == "adaptive" and ballot.challenge_level < level_for(pressure, rules) - 1:
        # one level of slack: the network may have got busier since the challenge was issued
        raise ChallengeFailed("this network is busy: fetch a new, harder challenge")
    day = campaign.day(now)
    shard = keys.shard_of(ballot.voter_id, registry.shards)
    vote_id = vote.vote_id or uuid.uuid4().hex
    cid = campaign.id
    script_keys = [
        keys.quota(cid, shard, day.date, ballot.voter_id),
        keys.tally(cid, shard),
        keys.ledger(cid, shard),
        keys.idempotency(cid, shard, ballot.voter_id, vote_id),
        keys.blocked_voters(cid, shard),
    ]
    if ballot.challenge_key:
        script_keys.append(ballot.challenge_key)
    status, answer = await batcher.call(
        scripts.cast_vote(),
        script_keys,
        [
            ballot.voter_id, vote.candidate_id, vote_id, rules.votes_per_day,
            rules.per_candidate_per_day, day.expire_at, IDEMPOTENCY_TTL, ballot.channel,
            ballot.ip, day.date, ballot.challenge_expires, 1 if ballot.channel_signed else 0,
        ],
    )
    return _answer(registry, campaign, shard, vote_id, int(status), answer, day.ends_at, now)


async def replay(
    batcher: Batcher, registry: Registry, campaign: LiveCampaign, voter_id: str, vote_id: str
) -> Accepted | None:
    """The first answer to an accepted ``(voter, vote_id)``, if there was one."""
    shard = keys.shard_of(voter_id, registry.shards)
    key = keys.idempotency(campaign.id, shard, voter_id, vote_id)
    try:
        async with asyncio.timeout(batcher.timeout):
            first = await batcher.client.get(key)
    except (TimeoutError, RedisError, OSError) as exc:
        raise Unavailable() from exc
    if first is None:
        return None
    now = time.time()
    return _answer(registry, campaign, shard, vote_id, 1, first, campaign.day(now).ends_at, now)


def _answer(
    registry: Registry, campaign: LiveCampaign, shard: int, vote_id: str, status: int,
    answer: Any, day_ends: float, now: float,
) -> Accepted:
    candidate, left, shard_votes = str(answer).split("|") if answer else ("", "0", "0")
    if status == 2:
        raise AlreadyVoted(
            headers=quota_headers(campaign.c.rules, int(left), day_ends, now),
            extra={"votes_left_today": int(left)},
        )
    if status == 3:
        wait = max(math.ceil(day_ends - now), 1)
        raise DailyQuotaExhausted(
            headers={"Retry-After": str(wait)} | quota_headers(campaign.c.rules, 0, day_ends, now),
            extra={"votes_left_today": 0, "resets_in": wait},
        )
    if status == 4:
        raise Blocked()
    if status == 5:
        raise ChallengeFailed("this challenge was already used")
    total = None
    if campaign.c.show_counts:
        total = registry.note_shard_count(campaign.id, shard, candidate, int(shard_votes))
    return Accepted(vote_id, candidate, int(left), total, day_ends)
