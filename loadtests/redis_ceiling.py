"""The Redis side alone: how many votes a second the Lua scripts take, without HTTP.

Votes go through the service's own ``voting.cast`` — so the key shapes, arguments and
batching (``pipeline.Pipeline``) are exactly those of the HTTP path, whatever they become —
from many coroutines of one uvloop process. Two modes:

* ``cast_vote``: the campaign's IP caps set to 0, so that ``voting.cast`` runs only
  ``cast_vote.lua`` (one round trip);
* ``full``: the campaign's own IP caps, i.e. ``limit_and_cast.lua`` on a single node (the
  address's limits and the vote in one call), as every HTTP vote does.

The rate seen by one Python process is a floor (the client may be the bottleneck); Redis'
own CPU time per vote gives the ceiling of one Redis core: ``1 / cpu_seconds_per_vote``.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import msgspec

from voting_service.errors import VotingError
from voting_service.models import Campaign, Rules, VoteIn
from voting_service.vote import voting
from voting_service.vote.pipeline import Pipeline
from voting_service.vote.registry import LiveCampaign, Registry
from voting_service.vote.store import AnyRedis


@dataclass
class CeilingResult:
    mode: str
    votes: int
    seconds: float
    outcomes: dict[str, int]
    redis_cpu_s: float
    concurrency: int

    @property
    def rate(self) -> float:
        return self.votes / self.seconds if self.seconds else 0.0

    @property
    def redis_core_ceiling(self) -> float:
        """Votes a second one fully busy Redis core would take at this cost per vote."""
        return self.votes / self.redis_cpu_s if self.redis_cpu_s > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "votes": self.votes, "seconds": round(self.seconds, 3),
                "rate": round(self.rate, 1), "outcomes": self.outcomes,
                "redis_cpu_s": round(self.redis_cpu_s, 3),
                "redis_core_ceiling": round(self.redis_core_ceiling, 1),
                "concurrency": self.concurrency}


async def redis_cpu(client: AnyRedis) -> float:
    info = await client.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def without_ip_caps(campaign: Campaign) -> Campaign:
    """The campaign with every per-address and per-network cap at 0 (= not checked)."""
    caps = {f: 0 for f in Rules.__struct_fields__ if f.startswith(("ip_per_", "net_per_"))}
    return msgspec.structs.replace(campaign,
                                   rules=msgspec.structs.replace(campaign.rules, **caps))


async def lua_ceiling(
    client: AnyRedis,
    url: str,
    campaign: Campaign,
    plan: list[tuple[str, str, str]],
    *,
    shards: int,
    concurrency: int,
    seconds: float,
    full: bool,
) -> CeilingResult:
    """Cast the ``(voter_id, candidate_id, ip)`` votes of ``plan`` until it or time runs out."""
    live = LiveCampaign(campaign if full else without_ip_caps(campaign))
    registry = Registry(client, shards)
    batcher = Pipeline(url, timeout=5.0)
    counter = itertools.count()
    outcomes: Counter[str] = Counter()
    deadline = time.monotonic() + seconds

    async def voter_loop() -> None:
        while time.monotonic() < deadline:
            i = next(counter)
            if i >= len(plan):
                return
            voter, candidate, ip = plan[i]
            ballot = voting.Ballot(voter, VoteIn(candidate_id=candidate), ip)
            try:
                await voting.cast(batcher, registry, live, ballot)
                outcomes["accepted"] += 1
            except VotingError as exc:
                outcomes[exc.code] += 1

    cpu0 = await redis_cpu(client)
    started = time.monotonic()
    try:
        async with asyncio.timeout(seconds + 30):
            await asyncio.gather(*(voter_loop() for _ in range(concurrency)))
    finally:
        await batcher.close()
    elapsed = time.monotonic() - started
    cpu = await redis_cpu(client) - cpu0
    return CeilingResult("full" if full else "cast_vote", sum(outcomes.values()), elapsed,
                         dict(outcomes), cpu, concurrency)
