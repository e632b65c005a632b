"""The vote path (DESIGN §3): network limits, then one atomic script in the voter's slot."""

from __future__ import annotations

import math
import time
import uuid
from dataclasses import dataclass
from typing import Any

from . import keys, scripts
from .errors import (
    AlreadyVoted,
    Blocked,
    CandidateNotFound,
    ChallengeFailed,
    DailyQuotaExhausted,
    InvalidRequest,
    RateLimited,
    VotingClosed,
)
from .identity import ip_prefixes
from .models import VoteIn
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
    challenge_key: str = ""
    challenge_expires: int = 0


@dataclass(frozen=True)
class Accepted:
    vote_id: str
    candidate_id: str
    votes_left_today: int
    candidate_votes: int | None
    day_ends_at: float


async def check_ip(
    batcher: Batcher, campaign: LiveCampaign, ip: str, now: float
) -> tuple[int, int]:
    """Apply the campaign's per-IP limits; return (minute load ‰, votes from this IP today)."""
    rules = campaign.c.rules
    day = campaign.day(now)
    net = ip_prefixes(ip)[0]  # IPv4 /32, IPv6 /64: one IPv6 client holds a whole /64
    result = await batcher.call(
        scripts.ip_limit(),
        [keys.ip_rate(campaign.id, net), keys.ip_day(campaign.id, net, day.date)],
        [rules.ip_per_minute, rules.ip_per_day, day.expire_at],
    )
    allowed, retry_ms, load, count = (int(x) for x in result)
    if not allowed:
        wait = math.ceil(day.ends_at - now) if retry_ms < 0 else math.ceil(retry_ms / 1000)
        raise RateLimited(headers={"Retry-After": str(max(wait, 1))})
    return load, count


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
    await check_ip(batcher, campaign, ballot.ip, now)
    rules = campaign.c.rules
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
            ballot.ip, day.date, ballot.challenge_expires,
        ],
    )
    return _answer(registry, campaign, shard, vote_id, int(status), answer, day.ends_at, now)


def _answer(
    registry: Registry, campaign: LiveCampaign, shard: int, vote_id: str, status: int,
    answer: Any, day_ends: float, now: float,
) -> Accepted:
    candidate, left, shard_votes = str(answer).split("|") if answer else ("", "0", "0")
    if status == 2:
        raise AlreadyVoted(extra={"votes_left_today": int(left)})
    if status == 3:
        wait = max(math.ceil(day_ends - now), 1)
        raise DailyQuotaExhausted(
            headers={"Retry-After": str(wait)}, extra={"votes_left_today": 0, "resets_in": wait}
        )
    if status == 4:
        raise Blocked()
    if status == 5:
        raise ChallengeFailed("this challenge was already used")
    total = None
    if campaign.c.show_counts:
        total = registry.note_shard_count(campaign.id, shard, candidate, int(shard_votes))
    return Accepted(vote_id, candidate, int(left), total, day_ends)
