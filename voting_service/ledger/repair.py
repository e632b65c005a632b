"""Drift repair (issue 23 §5): after a failover Redis may lack writes the ledger has (or
hold some it lacks); the flusher that holds a shard brings that shard's Redis side back to
the ledger — tallies, today's quotas and idempotency records — while votes go on.

The cheap check comes first: ``reconcile.live_drift`` over the campaign (PostgreSQL's
``tallies``). Only when it finds drift does a flusher count its own shards' rows. A shard
is measured between two of its flusher's passes, so nothing is committed to it meanwhile:
its tally and stream are read in one atomic step (``read_shard_state.lua``), then the rows
and the mark in one PostgreSQL snapshot. A difference is acted on only when two measurements
in a row find the same one (a transient, such as an invalidation between its Redis and its
PostgreSQL step, does not repeat). The repair (``repair_shard.lua``, one slot) moves the
tallies by the difference, so votes counted meanwhile stay counted, and gives the votes the
ledger holds but Redis forgot (no idempotency record) their record and, for today's, their
quota back, once: a voter whose 503'd vote was counted cannot have it counted again.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from ..models import Campaign
from ..redis import keys, scripts
from ..redis.store import AnyRedis
from ..vote.registry import LiveCampaign
from ..vote.voting import record_field
from . import marks, progress, reconcile

log = logging.getLogger(__name__)

SCAN_ROWS = 20_000
"""Newest ledger rows of a drifting shard looked at for votes Redis forgot, per repair."""
LIMIT = 50_000
"""Streams longer than this are not measured (as ``health.DRIFT_LIMIT``)."""

SHARD_ROWS = """
SELECT candidate_id, count(*) AS n FROM votes
WHERE campaign_id = $1 AND shard = $2 AND valid
  AND (split_part(stream_id, '-', 1)::bigint, split_part(stream_id, '-', 2)::bigint)
      <= ($3::bigint, $4::bigint)
GROUP BY candidate_id
"""
RECENT_ROWS = """
SELECT voter_id, vote_id, candidate_id, day FROM votes
WHERE campaign_id = $1 AND shard = $2 AND valid AND candidate_id = any($3::text[])
  AND cast_at > $4
ORDER BY cast_at DESC LIMIT $5
"""


@dataclass(frozen=True)
class Forgotten:
    """A ledger vote whose idempotency record Redis lacks."""

    voter_id: str
    vote_id: str
    candidate_id: str
    day: str


@dataclass(frozen=True)
class Repaired:
    campaign_id: str
    shard: int
    moved: int
    """Votes the tallies moved by (sum of |difference|)."""
    restored: int
    """Votes given their quota and idempotency record back."""


async def shard_difference(
    redis: AnyRedis, conn: asyncpg.Connection, campaign_id: str, shard: int
) -> dict[str, int] | None:
    """Candidate → ledger − Redis of one shard group (only the non-zero ones); ``None``
    when the stream is too long to measure. Call it when nothing commits to the shard."""
    states = await reconcile._shard_states(redis, campaign_id, [shard], LIMIT)
    state = states[0]
    if state.length > LIMIT:
        return None
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        rows = await conn.fetch(SHARD_ROWS, campaign_id, shard, *state.bound)
        mark = (await progress.read_marks(conn, campaign_id)).get(shard, marks.ZERO)
    expected: dict[str, int] = defaultdict(int)
    for r in rows:
        expected[r["candidate_id"]] += int(r["n"])
    for sid, u in state.entries:
        if marks.parse(sid) > mark:
            expected[u.candidate_id] += 1
    return {c: expected.get(c, 0) - state.tally.get(c, 0)
            for c in sorted(set(expected) | set(state.tally))
            if expected.get(c, 0) != state.tally.get(c, 0)}


async def forgotten(
    redis: AnyRedis, conn: asyncpg.Connection, campaign: Campaign, shard: int,
    wanted: dict[str, int], now: float,
) -> list[Forgotten]:
    """Up to ``wanted[candidate]`` of the shard's newest ledger votes per candidate whose
    idempotency record is gone: votes of today and yesterday, whose records live in their
    day's quota hash (an older one's has expired, so it is not taken), found neither there
    nor as a key of its own (``voting.LEGACY_RECORD_TTL``)."""
    campaign_id, day = campaign.id, LiveCampaign(campaign).day(now)
    since = dt.datetime.fromtimestamp(day.ends_at - 2 * 86400 - 3600, dt.UTC)  # a zone's hour
    rows = [r for r in await conn.fetch(RECENT_ROWS, campaign_id, shard, sorted(wanted), since,
                                        SCAN_ROWS)
            if r["day"].isoformat() in (day.date, day.before)]
    if not rows:
        return []
    pipe = redis.pipeline(transaction=False)
    for r in rows:
        pipe.hexists(keys.quota(campaign_id, shard, r["day"].isoformat(), r["voter_id"]),
                     record_field(r["vote_id"]))
        pipe.exists(keys.idempotency(campaign_id, shard, r["voter_id"], r["vote_id"]))
    there = await pipe.execute()
    left = dict(wanted)
    found = []
    for i, r in enumerate(rows):
        cand = r["candidate_id"]
        if not (int(there[2 * i]) or int(there[2 * i + 1])) and left.get(cand, 0) > 0:
            left[cand] -= 1
            found.append(Forgotten(r["voter_id"], r["vote_id"], cand, r["day"].isoformat()))
    return found


async def apply(
    redis: AnyRedis, owner: str, campaign: Campaign, shard: int, diff: dict[str, int],
    votes: Iterable[Forgotten], now: float,
) -> tuple[int, int]:
    """One ``repair_shard.lua`` call; (moved, restored), or (-1, 0): not the lease owner."""
    cid = campaign.id
    day = LiveCampaign(campaign).day(now)
    script_keys = [keys.flusher_lease(cid, shard), keys.tally(cid, shard)]
    args: list[Any] = [owner, len(diff)]
    for cand, d in sorted(diff.items()):
        args += [cand, d]
    for v in votes:  # of today or yesterday (``forgotten``): their hashes expire a day apart
        today = v.day == day.date
        script_keys.append(keys.quota(cid, shard, v.day, v.voter_id))
        args += [v.candidate_id, "1" if today else "0",
                 day.expire_at if today else day.expire_at - 86400, record_field(v.vote_id),
                 campaign.rules.votes_per_day]
    moved, restored = await scripts.load("repair_shard")(redis, script_keys, args)
    return int(moved), int(restored)


@dataclass
class Repairer:
    """A flusher's drift repair of the shards it holds (``Flusher.repair``)."""

    redis: AnyRedis
    owner: str
    shards: int
    _seen: dict[tuple[str, int], dict[str, int]] = field(default_factory=dict)
    """The difference the last measurement found, waiting for a second one to agree."""

    async def run(
        self, conn: asyncpg.Connection, campaigns: dict[str, Campaign | None],
        owned: Iterable[tuple[str, int]],
    ) -> list[Repaired]:
        by_campaign: dict[str, list[int]] = defaultdict(list)
        for cid, shard in owned:
            by_campaign[cid].append(shard)
        done: list[Repaired] = []
        for cid, mine in sorted(by_campaign.items()):
            campaign = campaigns.get(cid)
            if campaign is None:
                continue
            drift = await reconcile.live_drift(self.redis, conn, cid, self.shards, LIMIT)
            if not drift:  # none, or not measurable now
                for shard in mine:
                    self._seen.pop((cid, shard), None)
                continue
            for shard in sorted(mine):
                repaired = await self._shard(conn, campaign, shard)
                if repaired is not None:
                    done.append(repaired)
        return done

    async def _shard(self, conn: asyncpg.Connection, campaign: Campaign,
                     shard: int) -> Repaired | None:
        cid = campaign.id
        diff = await shard_difference(self.redis, conn, cid, shard)
        if not diff:
            self._seen.pop((cid, shard), None)
            return None
        if self._seen.get((cid, shard)) != diff:
            self._seen[(cid, shard)] = diff  # acted on once the next measurement agrees
            return None
        del self._seen[(cid, shard)]
        now = time.time()
        missing = {c: d for c, d in diff.items() if d > 0}
        votes = (await forgotten(self.redis, conn, campaign, shard, missing, now)
                 if missing else [])
        moved, restored = await apply(self.redis, self.owner, campaign, shard, diff, votes,
                                      now)
        if moved < 0:
            return None  # the shard went to another flusher meanwhile
        pipe = self.redis.pipeline(transaction=False)
        pipe.hincrby(keys.DRIFT_REPAIRS, f"{cid}:found", 1)
        pipe.hincrby(keys.DRIFT_REPAIRS, f"{cid}:tally", moved)
        pipe.hincrby(keys.DRIFT_REPAIRS, f"{cid}:votes", restored)
        await pipe.execute()
        log.warning("drift repaired: %s shard %d, ledger − Redis %s; tallies moved by %d, "
                    "%d vote(s) given back their quota and idempotency record",
                    cid, shard, diff, moved, restored)
        return Repaired(cid, shard, moved, restored)


async def counts(redis: AnyRedis) -> dict[str, dict[str, int]]:
    """Campaign → {"found", "tally", "votes"}: what the repairs did so far."""
    raw = await redis.hgetall(keys.DRIFT_REPAIRS)
    out: dict[str, dict[str, int]] = defaultdict(dict)
    for name, value in raw.items():
        cid, _, what = str(name).rpartition(":")
        out[cid][what] = int(value)
    return dict(out)
