"""Striking out brushed votes: append-only invalidations (DESIGN §6, admin).

An invalidation names votes by criteria (voters, IP/CIDR, channel, candidate, time range) and
applies to votes cast up to the moment it is made (its ``cutoff``). Votes are never deleted:
their ledger rows get ``valid = false`` and the invalidation's id.

The ledger invariant (Redis tally = valid PostgreSQL rows + unflushed stream entries) holds
throughout, without stopping votes or the flusher:
1. In one PostgreSQL transaction, the campaign's flush marks are locked (flushers of its
   shards wait) and every stream entry up to the cutoff that is not flushed yet is flushed
   here, as the flusher would (``ledger.batch``: rows, tallies, marks). The flusher then
   reads on after the new marks; one that had read those entries already finds its marks
   moved, rolls back and reads on from PostgreSQL's marks.
2. Valid matching rows — now every matching vote up to the cutoff — are marked invalid
   (``UPDATE … WHERE valid``) and the ``tallies`` table loses them, in the same
   transaction. A vote is invalidated by one invalidation only, so the same request twice
   takes nothing off twice.
3. After the commit, each shard group's Redis tally loses its votes through
   ``apply_invalidation.lua``, which leaves a marker and so applies at most once. If Redis
   fails in between, the invalidation stays "pending" and is applied on the next request
   (or at start-up); until then ``reconcile`` reports the difference.
Invalidated votes do not give voters their daily votes back.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any, cast

import asyncpg
import msgspec
from redis.exceptions import RedisError

from ..errors import InvalidRequest, Unavailable
from ..ledger import batch, db, marks, publication, transparency
from ..ledger.batch import Batch
from ..models import InvalidationIn
from ..redis import keys, scripts
from ..redis.store import AnyRedis
from ..settings import IPNetwork
from ..vote import identity

log = logging.getLogger(__name__)

LOCK = 7_406_531_002
"""Advisory lock (with the campaign's hash): invalidations of a campaign run one at a time."""
MARKER_TTL = 90 * 86400
STREAM_PAGE = 5000

MARK_INVALID = """
WITH marked AS (
    UPDATE votes SET valid = false, invalidation_id = ${id}
    WHERE valid AND {where} RETURNING shard, candidate_id
)
SELECT shard, candidate_id, count(*) AS n FROM marked GROUP BY 1, 2
"""
TAKE_OFF_TALLIES = """
UPDATE tallies t SET votes = t.votes - d.n
FROM unnest($2::text[], $3::bigint[]) AS d(candidate_id, n)
WHERE t.campaign_id = $1 AND t.candidate_id = d.candidate_id
"""


@dataclass(frozen=True)
class Criteria:
    campaign_id: str
    cutoff: dt.datetime
    voter_ids: frozenset[str] | None = None
    network: IPNetwork | None = None
    channel: str | None = None
    candidate_id: str | None = None
    since: dt.datetime | None = None

    @classmethod
    def parse(cls, campaign_id: str, body: InvalidationIn, now: dt.datetime) -> Criteria:
        if body.voter_ids is None and body.ip is None and body.channel is None \
                and body.candidate_id is None:
            raise InvalidRequest("name the votes: voter_ids, ip, channel or candidate_id")
        for name, when in (("since", body.since), ("until", body.until)):
            if when is not None and when.tzinfo is None:
                raise InvalidRequest(f"{name} needs a UTC offset")
        network = None
        if body.ip is not None:
            try:
                network = identity.network(body.ip)
            except ValueError as exc:
                raise InvalidRequest(f"ip is not an address or CIDR: {body.ip!r}") from exc
        cutoff = now if body.until is None else min(body.until, now)
        if body.since is not None and body.since > cutoff:
            raise InvalidRequest("since is after until")
        return cls(
            campaign_id, cutoff,
            frozenset(body.voter_ids) if body.voter_ids is not None else None,
            network, body.channel, body.candidate_id, body.since,
        )

    def where(self) -> tuple[str, list[Any]]:
        """SQL condition on ``votes`` (without ``valid``) and its arguments."""
        args: list[Any] = [self.campaign_id, self.cutoff]
        where = ["campaign_id = $1", "cast_at <= $2"]
        if self.voter_ids is not None:
            args.append(sorted(self.voter_ids))
            where.append(f"voter_id = ANY(${len(args)}::text[])")
        if self.network is not None:
            args.append(str(self.network))
            where.append(f"ip <<= ${len(args)}::inet")
        if self.channel is not None:
            args.append(self.channel)
            where.append(f"channel = ${len(args)}")
        if self.candidate_id is not None:
            args.append(self.candidate_id)
            where.append(f"candidate_id = ${len(args)}")
        if self.since is not None:
            args.append(self.since)
            where.append(f"cast_at >= ${len(args)}")
        return " AND ".join(where), args

    def as_json(self) -> dict[str, Any]:
        return {
            "voter_ids": sorted(self.voter_ids) if self.voter_ids is not None else None,
            "ip": str(self.network) if self.network is not None else None,
            "channel": self.channel,
            "candidate_id": self.candidate_id,
            "since": self.since.isoformat() if self.since else None,
            "until": self.cutoff.isoformat(),
        }


async def flush_until_cutoff(
    conn: asyncpg.Connection, redis: AnyRedis, criteria: Criteria, shards: int
) -> Batch:
    """Inside the caller's transaction: lock the campaign's marks and write every unflushed
    entry cast up to the cutoff (the flusher's own batch path), so that step 2 sees them."""
    at = await marks.lock(conn, criteria.campaign_id, shards)
    end = int(criteria.cutoff.timestamp() * 1000)
    b = Batch()
    for shard in range(shards):
        stream = keys.ledger(criteria.campaign_id, shard)
        start = "(" + marks.to_id(at.get(shard, marks.ZERO))
        while True:
            raw = await redis.xrange(stream, start, f"{end}-18446744073709551615",
                                     count=STREAM_PAGE)
            page = cast(list[tuple[str, dict[str, str]]], raw or [])
            b.add((criteria.campaign_id, shard), at.get(shard, marks.ZERO), page)
            if len(page) < STREAM_PAGE:
                break
            start = "(" + page[-1][0]
    await batch.write(conn, b)
    return b


async def _trim(redis: AnyRedis, b: Batch) -> None:
    """Drop what step 1 flushed from the streams (the flusher would do it on its next
    commit; doing it here keeps the backlog exact sooner)."""
    try:
        pipe = redis.pipeline(transaction=False)
        for (cid, shard), (_, new) in sorted(b.moves.items()):
            pipe.execute_command("XTRIM", keys.ledger(cid, shard), "MINID",
                                 marks.trim_below(new))
        await pipe.execute()
    except (RedisError, OSError) as exc:
        log.info("invalidation: streams not trimmed yet (%r)", exc)


def _per_shard(rows: list[asyncpg.Record]) -> dict[int, dict[str, int]]:
    """``(shard, candidate_id, n)`` rows → shard → candidate → votes."""
    per_shard: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for r in rows:
        per_shard[int(r["shard"])][r["candidate_id"]] += int(r["n"])
    return per_shard


def _per_candidate(rows: list[asyncpg.Record]) -> Counter[str]:
    found: Counter[str] = Counter()
    for r in rows:
        found[r["candidate_id"]] += int(r["n"])
    return found


async def invalidate(
    conn: asyncpg.Connection, redis: AnyRedis, campaign_id: str, shards: int, actor: str,
    body: InvalidationIn,
) -> dict[str, Any]:
    criteria = Criteria.parse(campaign_id, body, dt.datetime.now(dt.UTC))
    await apply_pending(conn, redis, shards)
    where, args = criteria.where()
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1::int, hashtext($2))",
                           LOCK % 2**31, campaign_id)
        await publication.ensure_unpublished(conn, campaign_id, "the ledger")
        try:
            flushed = await flush_until_cutoff(conn, redis, criteria, shards)
        except (RedisError, OSError) as exc:
            raise Unavailable("Redis is unreachable; nothing was invalidated") from exc
        inv_id = int(await conn.fetchval(
            "INSERT INTO invalidations (campaign_id, actor, reason, criteria, cutoff)"
            " VALUES ($1, $2, $3, $4::jsonb, $5) RETURNING id",
            campaign_id, actor, body.reason, json.dumps(criteria.as_json()), criteria.cutoff,
        ))
        args.append(inv_id)
        from_ledger = await conn.fetch(
            MARK_INVALID.format(id=len(args), where=where), *args)
        by_candidate = _per_candidate(from_ledger)
        if by_candidate:
            await conn.execute(TAKE_OFF_TALLIES, campaign_id, list(by_candidate),
                               list(by_candidate.values()))
        per_shard = _per_shard(from_ledger)
        total = by_candidate.total()
        await conn.execute(
            "UPDATE invalidations SET votes_invalidated = $2::bigint, by_candidate = $3::jsonb,"
            " per_shard = $4::jsonb, redis_applied_at = CASE WHEN $2::bigint = 0 THEN now() END"
            " WHERE id = $1",
            inv_id, total, json.dumps(by_candidate),
            json.dumps({str(s): c for s, c in per_shard.items()}),
        )
        # the log names the votes it struck: the recount follows from the log alone
        await transparency.append_invalidation(conn, campaign_id, inv_id, body.reason)
        await db.audit(conn, actor, "invalidation.create", f"{campaign_id}/{inv_id}",
                       msgspec.to_builtins(body) | {"votes_invalidated": total})
    if flushed:
        await _trim(redis, flushed)
    applied = total == 0 or await _apply(conn, redis, campaign_id, inv_id, per_shard)
    return {
        "id": inv_id,
        "campaign_id": campaign_id,
        "votes_invalidated": total,
        "by_candidate": dict(by_candidate),
        "cutoff": criteria.cutoff.isoformat(),
        "tallies_updated": applied,
    }


async def _apply(
    conn: asyncpg.Connection, redis: AnyRedis, campaign_id: str, inv_id: int,
    per_shard: dict[int, dict[str, int]],
) -> bool:
    """Take the votes off the Redis tallies, each shard group at most once."""
    script = scripts.load("apply_invalidation")
    try:
        for shard, counts in per_shard.items():
            if not counts:
                continue
            pairs = [x for cand, n in sorted(counts.items()) for x in (cand, n)]
            await script(
                redis,
                [keys.tally(campaign_id, shard),
                 keys.invalidation_applied(campaign_id, shard, inv_id)],
                [MARKER_TTL, *pairs],
            )
    except (RedisError, OSError) as exc:
        log.warning("invalidation %d: Redis tallies not updated yet (%r)", inv_id, exc)
        return False
    await conn.execute(
        "UPDATE invalidations SET redis_applied_at = now() WHERE id = $1", inv_id
    )
    return True


async def apply_pending(conn: asyncpg.Connection, redis: AnyRedis, shards: int) -> int:
    """Finish invalidations committed in PostgreSQL whose Redis step did not happen."""
    rows = await conn.fetch(
        "SELECT id, campaign_id, per_shard FROM invalidations"
        " WHERE redis_applied_at IS NULL AND votes_invalidated > 0 ORDER BY id"
    )
    done = 0
    for r in rows:
        per_shard = {int(s): c for s, c in json.loads(r["per_shard"]).items()}
        if await _apply(conn, redis, r["campaign_id"], int(r["id"]), per_shard):
            done += 1
    return done


async def listing(conn: asyncpg.Connection, campaign_id: str) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT id, campaign_id, created_at, actor, reason, criteria, cutoff, votes_invalidated,"
        " by_candidate, redis_applied_at FROM invalidations WHERE campaign_id = $1"
        " ORDER BY id DESC", campaign_id,
    )
    out = []
    for r in rows:
        item = dict(r)
        item["criteria"] = json.loads(r["criteria"])
        item["by_candidate"] = json.loads(r["by_candidate"])
        item["tallies_updated"] = r["redis_applied_at"] is not None
        out.append(item)
    return out
