"""The ledger invariant (DESIGN §3.6), checked and restored.

For every candidate: Redis tally = valid PostgreSQL ledger rows + stream entries not yet in
PostgreSQL. ``rebuild`` writes Redis tallies and today's quota state back from that sum.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, cast

import asyncpg

from ..redis import keys, scripts, store
from ..redis.store import AnyRedis
from ..vote import entry
from ..vote.entry import Entry
from . import marks, progress
from .marks import Mark


@dataclass(frozen=True)
class Unflushed:
    """A vote in a ledger stream that PostgreSQL does not have yet (after its shard's mark)."""

    shard: int
    voter_id: str
    vote_id: str
    candidate_id: str
    day: str


def _unflushed(entries: dict[int, list[tuple[str, Entry]]],
               at: dict[int, Mark]) -> list[Unflushed]:
    return [Unflushed(shard, e.voter_id, e.vote_id, e.candidate_id, e.day)
            for shard, _, e in progress.after_marks(entries, at)]


async def unflushed(
    redis: AnyRedis, conn: asyncpg.Connection, campaign_id: str, shards: int
) -> list[Unflushed]:
    """The streams first, the marks after: an entry committed in between is then at or
    before its mark, so it is counted in PostgreSQL, not here."""
    entries = await progress.stream_entries(redis, campaign_id, shards)
    return _unflushed(entries, await progress.read_marks(conn, campaign_id))


@dataclass(frozen=True)
class Drift:
    candidate_id: str
    redis: int
    postgres: int
    unflushed: int

    @property
    def expected(self) -> int:
        return self.postgres + self.unflushed


async def reconcile(
    redis: AnyRedis, conn: asyncpg.Connection, campaign_id: str, shards: int
) -> list[Drift]:
    """Every candidate whose Redis tally differs from PostgreSQL + unflushed entries."""
    # Redis first (tallies, then streams), then one PostgreSQL snapshot of rows and marks: a
    # flusher committing meanwhile moves entries from "unflushed" to "in PostgreSQL" whole
    redis_totals = store.sum_tallies(await store.shard_tallies(redis, campaign_id, shards))
    entries = await progress.stream_entries(redis, campaign_id, shards)
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        rows = await conn.fetch(
            "SELECT candidate_id, count(*) AS n FROM votes WHERE campaign_id = $1 AND valid"
            " GROUP BY candidate_id", campaign_id,
        )
        at = await progress.read_marks(conn, campaign_id)
    pg = {r["candidate_id"]: int(r["n"]) for r in rows}
    pending: dict[str, int] = defaultdict(int)
    for u in _unflushed(entries, at):
        pending[u.candidate_id] += 1
    drift = []
    for cand in sorted(set(redis_totals) | set(pg) | set(pending)):
        d = Drift(cand, redis_totals.get(cand, 0), pg.get(cand, 0), pending.get(cand, 0))
        if d.redis != d.expected:
            drift.append(d)
    return drift


NEWER_THAN_SNAPSHOT = """
SELECT v.candidate_id, count(*) AS n FROM votes v
JOIN unnest($2::int[], $3::bigint[], $4::bigint[]) AS b(shard, ms, seq) ON v.shard = b.shard
WHERE v.campaign_id = $1 AND v.valid AND v.cast_at >= to_timestamp($5)
  AND (split_part(v.stream_id, '-', 1)::bigint, split_part(v.stream_id, '-', 2)::bigint)
      > (b.ms, b.seq)
GROUP BY v.candidate_id
"""


@dataclass(frozen=True)
class _ShardState:
    shard: int
    tally: dict[str, int]
    length: int
    bound: tuple[int, int]
    """The newest stream id this snapshot covers (later votes are in neither side)."""
    entries: list[tuple[str, Unflushed]]
    """(stream id, vote) of every entry in the stream at that instant."""


async def _shard_states(
    redis: AnyRedis, campaign_id: str, shards: int | list[int], limit: int
) -> list[_ShardState]:
    """``shards``: how many (all of them), or which."""
    which = list(range(shards)) if isinstance(shards, int) else shards
    script = scripts.read_shard_state()
    replies = []
    for shard in which:  # one atomic read per slot; the script is a read
        keys_ = [keys.tally(campaign_id, shard), keys.ledger(campaign_id, shard)]
        replies.append(await script(redis, keys_, [limit]))
    states = []
    for shard, (flat, length, last, entries, sec, usec) in zip(which, replies, strict=True):
        tally = {str(flat[i]): int(flat[i + 1]) for i in range(0, len(flat), 2)}
        if last:
            ms, _, seq = str(last).partition("-")
            bound = (int(ms), int(seq))
        else:  # no stream yet: any vote after this instant is newer
            bound = (int(sec) * 1000 + int(usec) // 1000 - 1, 2**63 - 1)
        found = []
        for sid, raw in entries:
            e = entry.decode({str(raw[i]): str(raw[i + 1]) for i in range(0, len(raw), 2)})
            found.append((str(sid),
                          Unflushed(shard, e.voter_id, e.vote_id, e.candidate_id, e.day)))
        states.append(_ShardState(shard, tally, int(length), bound, found))
    return states


async def live_drift(
    redis: AnyRedis, conn: asyncpg.Connection, campaign_id: str, shards: int,
    limit: int = 50_000,
) -> list[Drift] | None:
    """``reconcile`` that holds while votes flow and the flusher commits, and cheap enough to
    run every few seconds: each shard group's tally and stream are read in one atomic step,
    PostgreSQL's ``tallies`` stand for its valid rows, minus the rows newer than that read.
    ``None`` when a stream holds more than ``limit`` entries (the flusher is far behind;
    the lag says so) — checking them all would cost more than it tells."""
    states = await _shard_states(redis, campaign_id, shards, limit)
    if any(s.length > limit for s in states):
        return None
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        rows = await conn.fetch(
            "SELECT candidate_id, votes FROM tallies WHERE campaign_id = $1", campaign_id)
        oldest = min(s.bound[0] for s in states) if states else 0
        newer = await conn.fetch(
            NEWER_THAN_SNAPSHOT, campaign_id, [s.shard for s in states],
            [s.bound[0] for s in states], [s.bound[1] for s in states],
            max(oldest / 1000 - 1, 0),
        )
        at = await progress.read_marks(conn, campaign_id)  # the same snapshot as the rows
    pg: dict[str, int] = defaultdict(int)
    for r in rows:
        pg[r["candidate_id"]] += int(r["votes"])
    for r in newer:
        pg[r["candidate_id"]] -= int(r["n"])
    pending: dict[str, int] = defaultdict(int)
    for s in states:
        for sid, u in s.entries:
            if marks.parse(sid) > at.get(s.shard, marks.ZERO):  # not committed yet
                pending[u.candidate_id] += 1
    redis_totals = store.sum_tallies(s.tally for s in states)
    drift = []
    for cand in sorted(set(redis_totals) | set(pg) | set(pending)):
        d = Drift(cand, redis_totals.get(cand, 0), pg.get(cand, 0), pending.get(cand, 0))
        if d.redis != d.expected:
            drift.append(d)
    return drift


async def votes_flowing(redis: AnyRedis, campaign_id: str, shards: int, window: float) -> bool:
    """Did any shard stream take a vote in the last ``window`` seconds?"""
    since = int((time.time() - window) * 1000)
    pipe = redis.pipeline(transaction=False)
    for shard in range(shards):
        pipe.xrevrange(keys.ledger(campaign_id, shard), "+", f"{since}-0", count=1)
    return any(await pipe.execute())


async def rebuild(
    redis: AnyRedis, conn: asyncpg.Connection, campaign_id: str, shards: int, today: str,
    expire_at: int,
) -> int:
    """Rewrite tallies and today's quotas from PostgreSQL + unflushed entries; returns votes."""
    tallies: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    quotas: dict[tuple[int, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    rows = await conn.fetch(
        "SELECT shard, candidate_id, count(*) AS n FROM votes WHERE campaign_id = $1 AND valid"
        " GROUP BY 1, 2", campaign_id,
    )
    for r in rows:
        tallies[r["shard"]][r["candidate_id"]] += int(r["n"])
    today_rows = await conn.fetch(
        "SELECT shard, voter_id, candidate_id, count(*) AS n FROM votes"
        " WHERE campaign_id = $1 AND day = $2 GROUP BY 1, 2, 3",
        campaign_id, dt.date.fromisoformat(today),
    )
    for r in today_rows:
        q = quotas[(r["shard"], r["voter_id"])]
        q[r["candidate_id"]] += int(r["n"])
        q["_n"] += int(r["n"])
    for u in await unflushed(redis, conn, campaign_id, shards):
        tallies[u.shard][u.candidate_id] += 1
        if u.day == today:
            q = quotas[(u.shard, u.voter_id)]
            q[u.candidate_id] += 1
            q["_n"] += 1
    pipe = redis.pipeline(transaction=False)
    for shard in range(shards):
        pipe.delete(keys.tally(campaign_id, shard))
        if tallies.get(shard):
            pipe.hset(keys.tally(campaign_id, shard), mapping=cast(Any, tallies[shard]))
    for (shard, voter), counts in quotas.items():
        key = keys.quota(campaign_id, shard, today, voter)
        pipe.delete(key)
        pipe.hset(key, mapping=cast(Any, counts))
        pipe.expireat(key, expire_at)
    await pipe.execute()
    return sum(sum(t.values()) for t in tallies.values())
