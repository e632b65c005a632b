"""The vote path (DESIGN §3): network limits, then one atomic script in the voter's slot."""

from __future__ import annotations

import functools
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from ..errors import (
    AlreadyVoted,
    Blocked,
    CandidateNotFound,
    CandidateWithdrawn,
    ChallengeFailed,
    DailyQuotaExhausted,
    InvalidRequest,
    RateLimited,
    VotingClosed,
)
from ..models import Rules, VoteIn, level_for
from ..redis import keys, scripts
from ..redis.pipeline import Pipeline
from ..redis.scripts import CastStatus, LimitMode
from .identity import network_prefixes
from .registry import LiveCampaign, Registry

LEGACY_RECORD_TTL = str(3 * 86400)
"""Seconds a vote's idempotency record lived as a key of its own (``keys.idempotency``)
before issue 28, as ``cast_vote.lua``'s ARGV gets it. Records now live in their day's quota
hash; the keys are still read and written while ``Registry.legacy_until`` says some may
exist, or older workers may be reading them (a rolling upgrade during a vote)."""


@dataclass(slots=True)
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


@dataclass(slots=True)
class Accepted:
    vote_id: str
    candidate_id: str
    votes_left_today: int
    candidate_votes: int | None
    day_ends_at: float


def _limit_call(
    campaign: LiveCampaign, ip: str, now: float, peek: bool, minting: bool = False,
    loads: bool = True,
) -> tuple[tuple[tuple[str, int, int], ...], list[str], list[Any]]:
    """The capped levels of an address and ``ip_limit.lua``'s KEYS and ARGV for them
    (``loads`` false: an allowed vote is answered 1, without the levels' loads)."""
    rules = campaign.c.rules
    day = campaign.day(now)
    levels, script_keys, spec = _limit_keys(
        campaign.id, ip, rules.ip_per_minute, rules.ip_per_day, rules.net_per_minute,
        rules.net_per_day, minting)
    mode = LimitMode.PEEK if peek else LimitMode.COUNT if loads else LimitMode.COUNT_ONLY
    return levels, list(script_keys), [str(day.expire_at), mode.value, spec,
                                       str(int(now * 1000))]  # the clock: no TIME call


@functools.lru_cache(maxsize=16384)
def _limit_keys(
    campaign_id: str, ip: str, ip_per_minute: int, ip_per_day: int, net_per_minute: int,
    net_per_day: int, minting: bool = False,
) -> tuple[tuple[tuple[str, int, int], ...], tuple[str, ...], str]:
    """The address's limits (IPv4 /32, IPv6 /64: one IPv6 client holds a whole /64) and
    its network's (IPv4 /24, IPv6 /48), those with a cap, with the key of their hash and
    their packed ARGV (``scripts.levels_arg``; ``""`` when nothing is capped), which
    ``limit_and_cast.lua`` takes alone and ``_limit_call`` puts after the day's expiry and
    the mode (count, peek, or count without loads) for ``ip_limit.lua``. Cached: a
    citizen's votes come in a row from one address, and building the keys was a twentieth
    of a vote's CPU. ``minting``: the hash that counts new anonymous voter tokens
    (``keys.mint_limits``) instead of votes."""
    host, network = network_prefixes(ip)  # the network is the slot of every level
    levels = tuple(lv for lv in ((host, ip_per_minute, ip_per_day),
                                 (network, net_per_minute, net_per_day)) if lv[1] or lv[2])
    if not levels:
        return levels, (), ""
    key = (keys.mint_limits if minting else keys.limits)(campaign_id, network)
    (first, per_min, per_day), rest = levels[0], levels[1:]
    spec = scripts.levels_arg(keys.level_field(first, network), per_min, per_day,
                              (rest[0][1], rest[0][2]) if rest else None)
    return levels, (key,), spec


def _pressure(
    campaign: LiveCampaign, levels: Sequence[tuple[str, int, int]], reply: list[Any] | int,
    now: float, peek: bool,
) -> float:
    """``ip_limit.lua``'s reply → pressure (1.0 = at the cap; 0.0 for a plain 1, the
    answer without loads); ``RateLimited`` if refused."""
    if isinstance(reply, int):
        return 0.0
    result = [int(x) for x in reply]
    allowed, retry_ms = result[0], result[1]
    if not allowed:
        if peek:
            return 1.0
        day = campaign.day(now)
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


async def check_ip(
    pipeline: Pipeline, campaign: LiveCampaign, ip: str, now: float, *, peek: bool = False,
    deadline: float | None = None, minting: bool = False, loads: bool = True,
) -> float:
    """Count a vote against the address's and its network's limits, in one ``ip_limit.lua``
    call (the address's keys carry its network's hash tag); ``RateLimited`` past a hard cap.
    Returns the pressure: how full the fuller of the limits is, 1.0 = at the cap. ``peek``
    counts nothing and refuses nothing. ``minting`` counts a new anonymous voter token
    instead, against the same caps on keys of its own (``keys.mint_*``). ``loads`` false:
    the caller needs no pressure (0.0), and Valkey converts no table for it."""
    levels, script_keys, args = _limit_call(campaign, ip, now, peek, minting, loads)
    if not levels:
        return 0.0
    reply = await pipeline.call(scripts.ip_limit(), script_keys, args, deadline)
    return _pressure(campaign, levels, reply, now, peek)


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
    candidate = campaign.candidates.get(candidate_id)
    if candidate is None:
        raise CandidateNotFound(f"no candidate {candidate_id!r}")
    if candidate.status == "withdrawn":
        raise CandidateWithdrawn(f"candidate {candidate_id!r} has withdrawn")
    if channel and channel not in campaign.channels:
        raise InvalidRequest(f"unknown channel {channel!r}")


@functools.lru_cache(maxsize=1024)
def _day_args(per_day: int, per_candidate: int, expire_at: int,
              legacy: bool) -> tuple[str, str, str, str]:
    """``cast_vote.lua``'s ARGV[1..4], the campaign's day: strings built once, contiguous at
    the head of every vote's call of that day."""
    return str(per_day), str(per_candidate), str(expire_at), LEGACY_RECORD_TTL if legacy else "0"


async def cast(
    pipeline: Pipeline, registry: Registry, campaign: LiveCampaign, ballot: Ballot,
    deadline: float | None = None,
) -> Accepted:
    """Limits, then the vote: one ``limit_and_cast.lua`` call on a single node (unless the
    challenge adapts to the limits' pressure, which Python checks in between); in a Cluster
    ``ip_limit.lua`` in the address's slot, then ``cast_vote.lua`` in the voter's."""
    now = time.time()
    vote = ballot.vote
    check_open(campaign, vote.candidate_id, ballot.channel, now)
    rules = campaign.c.rules
    if rules.challenge != "off" and not ballot.challenge_key:
        raise ChallengeFailed("this vote needs a proof of work: GET the challenge first")
    day = campaign.day(now)
    shard = keys.shard_of(ballot.voter_id, registry.shards)
    vote_id = vote.vote_id or os.urandom(16).hex()  # as random as uuid4().hex, cheaper
    cid = campaign.id
    legacy = now < registry.legacy_until
    cast_keys = [
        keys.quota(cid, shard, day.date, ballot.voter_id),
        keys.tally(cid, shard),
        keys.ledger(cid, shard),
        keys.quota(cid, shard, day.before, ballot.voter_id),
        keys.blocked_voters(cid, shard),
    ]
    if legacy:
        cast_keys.append(keys.idempotency(cid, shard, ballot.voter_id, vote_id))
    if ballot.challenge_key:
        cast_keys.append(ballot.challenge_key)
    # ARGV[8]: the ledger entry (entry.py's format) whole, so the script writes it as it comes
    entry = (f"{vote_id}\t{ballot.voter_id}\t{vote.candidate_id}\t{ballot.channel}\t"
             f"{ballot.ip}\t{day.date}\t{'1' if ballot.channel_signed else '0'}")
    cast_args: list[Any] = [
        *_day_args(rules.votes_per_day, rules.per_candidate_per_day, day.expire_at, legacy),
        ballot.voter_id, vote.candidate_id, record_field(vote_id), entry,
    ]
    if ballot.challenge_key:
        cast_args.append(str(ballot.challenge_expires))
    if not pipeline.cluster and rules.challenge != "adaptive":
        # the levels alone: ip_limit.lua's expiry is cast_vote.lua's, and a vote never peeks
        levels, ip_keys, spec = _limit_keys(
            cid, ballot.ip, rules.ip_per_minute, rules.ip_per_day, rules.net_per_minute,
            rules.net_per_day)
        reply = await pipeline.call(
            scripts.limit_and_cast(), [*ip_keys, *cast_keys],
            [str(int(now * 1000)), spec, *cast_args], deadline)
        if reply[0] == _LIMITED:
            _pressure(campaign, levels, reply.split("|")[1:], now, False)  # raises RateLimited
    else:
        pressure = await check_ip(pipeline, campaign, ballot.ip, now, deadline=deadline,
                                  loads=rules.challenge == "adaptive")
        if rules.challenge == "adaptive" and ballot.challenge_level < level_for(
            pressure, rules
        ) - 1:  # one level of slack: the network may have got busier since the challenge
            raise ChallengeFailed("this network is busy: fetch a new, harder challenge")
        reply = await pipeline.call(scripts.cast_vote(), cast_keys, cast_args, deadline)
    return _answer(registry, campaign, shard, vote_id, int(reply[0]), reply[2:], day.ends_at,
                   now)


def record_field(vote_id: str) -> str:
    """The field of a vote's idempotency record in its day's quota hash (``keys.quota``):
    ``#`` keeps it apart from ``_n`` and the candidates' ids (``models.Id``)."""
    return "#" + vote_id


async def replay(
    pipeline: Pipeline, registry: Registry, campaign: LiveCampaign, voter_id: str, vote_id: str
) -> Accepted | None:
    """The first answer to an accepted ``(voter, vote_id)``, if there was one
    (``replay_vote.lua``: today's quota hash, yesterday's, the legacy key)."""
    now = time.time()
    day = campaign.day(now)
    shard = keys.shard_of(voter_id, registry.shards)
    cid = campaign.id
    replay_keys = [keys.quota(cid, shard, day.date, voter_id),
                   keys.quota(cid, shard, day.before, voter_id)]
    if now < registry.legacy_until:
        replay_keys.append(keys.idempotency(cid, shard, voter_id, vote_id))
    first = await pipeline.call(scripts.load("replay_vote"), replay_keys,
                                [record_field(vote_id), LEGACY_RECORD_TTL])
    if first is None:
        return None
    return _answer(registry, campaign, shard, vote_id, CastStatus.REPLAYED, first,
                   day.ends_at, now)


_LIMITED = str(int(CastStatus.LIMITED))
"""``limit_and_cast.lua``'s reply starts with it when a network limit refused the vote."""
_ANSWERED = int(CastStatus.REPLAYED)
"""The last status that is an answer rather than a refusal."""


def _refuse(status: CastStatus, campaign: LiveCampaign, left: int, day_ends: float,
            now: float) -> NoReturn:
    """Raise the refusal ``cast_vote.lua``'s status stands for."""
    if status == CastStatus.ALREADY_VOTED:
        raise AlreadyVoted(
            headers=quota_headers(campaign.c.rules, left, day_ends, now),
            extra={"votes_left_today": left},
        )
    if status == CastStatus.QUOTA_USED_UP:
        wait = max(math.ceil(day_ends - now), 1)
        raise DailyQuotaExhausted(
            headers={"Retry-After": str(wait)} | quota_headers(campaign.c.rules, 0, day_ends, now),
            extra={"votes_left_today": 0, "resets_in": wait},
        )
    if status == CastStatus.BLOCKED:
        raise Blocked()
    if status == CastStatus.CHALLENGE_SPENT:
        raise ChallengeFailed("this challenge was already used")
    raise RuntimeError(f"cast_vote.lua returned status {status!r} here")


def _answer(
    registry: Registry, campaign: LiveCampaign, shard: int, vote_id: str, status: int,
    answer: Any, day_ends: float, now: float,
) -> Accepted:
    """``cast_vote.lua``'s reply as the vote's answer, or the refusal it stands for."""
    candidate, left, shard_votes = str(answer).split("|") if answer else ("", "0", "0")
    if status > _ANSWERED:  # a refusal (one comparison on the path of accepted votes)
        _refuse(CastStatus(status), campaign, int(left), day_ends, now)
    total = None
    if campaign.c.show_counts:
        total = registry.note_shard_count(campaign.id, shard, candidate, int(shard_votes))
    return Accepted(vote_id, candidate, int(left), total, day_ends)
