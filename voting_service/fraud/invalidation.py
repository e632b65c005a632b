"""Striking out brushed votes: append-only invalidations (DESIGN §6, admin).

An invalidation names votes by criteria (voters, IP/CIDR, channel, candidate, time range) and
applies to votes cast up to the moment it is made (its ``cutoff``). Votes are never deleted:
their ledger rows get ``valid = false`` and the invalidation's id.

The ledger invariant (Redis tally = valid PostgreSQL rows + unflushed stream entries) holds
throughout, without stopping votes or the flusher:
1. Matching entries still in the Redis ledger streams are read first, then — in one
   PostgreSQL transaction — inserted as *invalid* rows (``ON CONFLICT DO NOTHING``). When the
   flusher later writes the same vote, its insert conflicts and counts nothing; it acks the
   entry as usual. A vote the flusher committed meanwhile is caught by step 2.
2. Valid matching rows are marked invalid (``UPDATE … WHERE valid``) and the ``tallies``
   table loses them, in the same transaction. A vote is invalidated by one invalidation
   only, so the same request twice takes nothing off twice.
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
from ..ledger import db, publication
from ..ledger.flusher import STAGE_COLUMNS, entry_ms, to_record
from ..models import InvalidationIn
from ..settings import IPNetwork
from ..vote import identity, keys, scripts
from ..vote.entry import Entry, decode
from ..vote.store import AnyRedis

log = logging.getLogger(__name__)

LOCK = 7_406_531_002
"""Advisory lock (with the campaign's hash): invalidations of a campaign run one at a time."""
MARKER_TTL = 90 * 86400
STREAM_PAGE = 5000

INSERT_INVALID = f"""
WITH inserted AS (
    INSERT INTO votes ({", ".join(STAGE_COLUMNS)}, valid, invalidation_id)
    SELECT s.*, false, $11 FROM unnest($1::text[], $2::text[], $3::text[], $4::text[],
        $5::text[], $6::inet[], $7::date[], $8::timestamptz[], $9::text[], $10::integer[]) AS s
    ON CONFLICT (campaign_id, voter_id, vote_id, day) DO NOTHING
    RETURNING shard, candidate_id
)
SELECT shard, candidate_id, count(*) AS n FROM inserted GROUP BY 1, 2
"""
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

    def matches(self, e: Entry, cast_ms: int) -> bool:
        """The same condition on a ledger stream entry."""
        at = dt.datetime.fromtimestamp(cast_ms / 1000, dt.UTC)
        if at > self.cutoff or (self.since is not None and at < self.since):
            return False
        if self.voter_ids is not None and e.voter_id not in self.voter_ids:
            return False
        if self.channel is not None and e.channel != self.channel:
            return False
        if self.candidate_id is not None and e.candidate_id != self.candidate_id:
            return False
        if self.network is not None:
            try:
                addr = identity.address(e.ip)
            except ValueError:
                return False
            if addr not in self.network:
                return False
        return True

    def as_json(self) -> dict[str, Any]:
        return {
            "voter_ids": sorted(self.voter_ids) if self.voter_ids is not None else None,
            "ip": str(self.network) if self.network is not None else None,
            "channel": self.channel,
            "candidate_id": self.candidate_id,
            "since": self.since.isoformat() if self.since else None,
            "until": self.cutoff.isoformat(),
        }


async def unflushed_matching(
    redis: AnyRedis, criteria: Criteria, shards: int
) -> list[tuple[Any, ...]]:
    """Ledger rows (as the flusher would write them) of matching votes still in the streams."""
    records: list[tuple[Any, ...]] = []
    end = int(criteria.cutoff.timestamp() * 1000)
    for shard in range(shards):
        stream = keys.ledger(criteria.campaign_id, shard)
        start = "-"
        while True:
            raw = await redis.xrange(stream, start, f"{end}-18446744073709551615",
                                     count=STREAM_PAGE)
            entries = cast(list[tuple[str, dict[str, str]]], raw or [])
            for sid, fields in entries:
                if fields and criteria.matches(decode(fields), entry_ms(sid)):
                    records.append(to_record(criteria.campaign_id, shard, sid, fields))
            if len(entries) < STREAM_PAGE:
                break
            start = "(" + entries[-1][0]
    return records


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
    try:
        pending = await unflushed_matching(redis, criteria, shards)
    except (RedisError, OSError) as exc:
        raise Unavailable("Redis is unreachable; nothing was invalidated") from exc
    where, args = criteria.where()
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1::int, hashtext($2))",
                           LOCK % 2**31, campaign_id)
        await publication.ensure_unpublished(conn, campaign_id, "the ledger")
        inv_id = int(await conn.fetchval(
            "INSERT INTO invalidations (campaign_id, actor, reason, criteria, cutoff)"
            " VALUES ($1, $2, $3, $4::jsonb, $5) RETURNING id",
            campaign_id, actor, body.reason, json.dumps(criteria.as_json()), criteria.cutoff,
        ))
        from_stream: list[asyncpg.Record] = []
        if pending:
            columns = [list(column) for column in zip(*pending, strict=True)]
            from_stream = await conn.fetch(INSERT_INVALID, *columns, inv_id)
        args.append(inv_id)
        from_ledger = await conn.fetch(
            MARK_INVALID.format(id=len(args), where=where), *args)
        ledger_counts = _per_candidate(from_ledger)
        if ledger_counts:  # only these were in the tallies table
            await conn.execute(TAKE_OFF_TALLIES, campaign_id, list(ledger_counts),
                               list(ledger_counts.values()))
        per_shard = _per_shard([*from_ledger, *from_stream])
        by_candidate = _per_candidate([*from_ledger, *from_stream])
        total = by_candidate.total()
        await conn.execute(
            "UPDATE invalidations SET votes_invalidated = $2::bigint, by_candidate = $3::jsonb,"
            " per_shard = $4::jsonb, redis_applied_at = CASE WHEN $2::bigint = 0 THEN now() END"
            " WHERE id = $1",
            inv_id, total, json.dumps(by_candidate),
            json.dumps({str(s): c for s, c in per_shard.items()}),
        )
        await db.audit(conn, actor, "invalidation.create", f"{campaign_id}/{inv_id}",
                       msgspec.to_builtins(body) | {"votes_invalidated": total})
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
