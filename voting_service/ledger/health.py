"""How the vote's machinery is doing, as one snapshot the web process keeps fresh.

Redis and PostgreSQL up, Redis durability, and per campaign the ledger backlog (stream
entries not yet committed to PostgreSQL), the flusher lag (age of the oldest of them) and
the tally drift (Redis − (PostgreSQL + backlog), 0 when healthy). Every worker refreshes it
in the background every few seconds, so the console and ``/metrics`` read memory, never
the servers, and one scrape target reports what the flusher processes cannot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from ..redis import keys
from ..redis.store import AnyRedis
from . import durability, reconcile, repair

log = logging.getLogger(__name__)

MAX_LAG_SECONDS = 30.0
"""Flusher lag above which the snapshot calls the ledger behind (the alert's threshold)."""
DRIFT_LIMIT = 50_000
"""Streams longer than this are not drift-checked (the flusher is far behind anyway)."""
TIMEOUT = 2.0
"""Seconds one server gets to answer a health read before it counts as down."""

Connect = Callable[[], AbstractAsyncContextManager[asyncpg.Connection]]


@dataclass(frozen=True)
class CampaignHealth:
    campaign_id: str
    backlog: int
    """Ledger stream entries not yet committed to PostgreSQL (still in the streams)."""
    lag_seconds: float
    """Age of the oldest of them; 0 when the backlog is empty."""
    drift: int | None
    """Redis tallies − (PostgreSQL valid votes + backlog), summed over candidates;
    ``None`` when it could not be measured (PostgreSQL down, backlog too long)."""
    drifting: tuple[str, ...] = ()
    """Candidates whose own count differs (a sum of 0 can hide +1 and −1)."""


@dataclass(frozen=True)
class Health:
    at: float
    """Unix time of the snapshot; 0 = not measured yet."""
    redis_up: bool
    postgres_up: bool
    durability: durability.Durability
    campaigns: Mapping[str, CampaignHealth] = field(default_factory=dict)
    ledger_rows: int | None = None
    """Rows the flushers have inserted into the ledger (PostgreSQL's own statistics)."""
    repairs: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    """Campaign → the flushers' drift repairs so far: ``found`` (shards found drifting and
    repaired), ``tally`` (votes the tallies moved by), ``votes`` (votes given back their
    quota and idempotency record); ``ledger.repair``."""

    @classmethod
    def unknown(cls) -> Health:
        return cls(0.0, False, False, durability.Durability(False, False, "not checked yet"))

    @property
    def redis_durable(self) -> bool:
        return self.redis_up and self.durability.safe

    @property
    def backlog(self) -> int:
        return sum(c.backlog for c in self.campaigns.values())

    @property
    def lag_seconds(self) -> float:
        return max((c.lag_seconds for c in self.campaigns.values()), default=0.0)

    def problems(self) -> list[str]:
        """Stable codes of what is off (the console words them for people)."""
        found = []
        if not self.at:
            found.append("not_measured")
        if not self.redis_up:
            found.append("redis_down")
        elif not self.durability.safe:
            found.append("redis_not_durable")
        if not self.postgres_up:
            found.append("postgres_down")
        if self.lag_seconds > MAX_LAG_SECONDS:
            found.append("flusher_lagging")
        if any(c.drift or c.drifting for c in self.campaigns.values()):
            found.append("tally_drift")
        return found

    @property
    def ok(self) -> bool:
        return not self.problems()

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": self.at, "ok": self.ok, "problems": self.problems(),
            "redis": {"up": self.redis_up, "durable": self.redis_durable,
                      "durability": self.durability.reason},
            "postgres": {"up": self.postgres_up},
            "backlog": self.backlog, "lag_seconds": round(self.lag_seconds, 3),
            "campaigns": {
                cid: {"backlog": c.backlog, "lag_seconds": round(c.lag_seconds, 3),
                      "drift": c.drift, "drifting": list(c.drifting),
                      "repairs": self.repaired(cid)}
                for cid, c in self.campaigns.items()
            },
        }

    def repaired(self, campaign_id: str) -> dict[str, int]:
        found = self.repairs.get(campaign_id, {})
        return {k: int(found.get(k, 0)) for k in ("found", "tally", "votes")}


async def ledger_heads(
    redis: AnyRedis, campaign_id: str, shards: int
) -> tuple[int, int | None]:
    """Entries in the campaign's ledger streams and the oldest one's time (unix ms).

    Both hold whether committed entries are deleted after the commit or trimmed later up
    to a watermark: what is still in a stream is the backlog, its first id the oldest.
    """
    pipe = redis.pipeline(transaction=False)
    for shard in range(shards):
        pipe.xlen(keys.ledger(campaign_id, shard))
        pipe.xrange(keys.ledger(campaign_id, shard), "-", "+", count=1)
    results = await pipe.execute()
    backlog = sum(int(n) for n in results[0::2])
    oldest = [int(str(r[0][0]).split("-", 1)[0]) for r in results[1::2] if r]
    return backlog, min(oldest) if oldest else None


def lag_seconds(oldest_ms: int | None, now: float) -> float:
    return 0.0 if oldest_ms is None else max(0.0, now - oldest_ms / 1000)


async def _redis_state(redis: AnyRedis, replica_acks: int = 0,
                       ) -> tuple[bool, durability.Durability]:
    try:
        async with asyncio.timeout(TIMEOUT):
            await redis.ping()
            return True, await durability.check(redis, replica_acks)
    except Exception as exc:
        return False, durability.Durability(False, False, f"Redis is unreachable: {exc!r}")


async def _campaign(
    redis: AnyRedis, conn: asyncpg.Connection | None, campaign_id: str, shards: int,
) -> CampaignHealth:
    async with asyncio.timeout(TIMEOUT):
        backlog, oldest = await ledger_heads(redis, campaign_id, shards)
    drift: int | None = None
    drifting: tuple[str, ...] = ()
    if conn is not None:
        try:
            async with asyncio.timeout(TIMEOUT):
                found = await reconcile.live_drift(redis, conn, campaign_id, shards, DRIFT_LIMIT)
        except Exception as exc:
            log.warning("tally drift of %s not measured: %r", campaign_id, exc)
        else:
            if found is not None:
                drift = sum(d.redis - d.expected for d in found)
                drifting = tuple(d.candidate_id for d in found)
    return CampaignHealth(campaign_id, backlog, lag_seconds(oldest, time.time()), drift,
                          drifting)


LEDGER_ROWS = """
SELECT coalesce(sum(s.n_tup_ins), 0) FROM pg_stat_user_tables s
WHERE s.relid IN (SELECT relid FROM pg_partition_tree(to_regclass('votes')))
"""
"""Rows inserted into ``votes``: the day partitions hold the rows (a partitioned parent's own
``n_tup_ins`` stays 0), so the partitions are summed, the parent and any leftover too."""


async def measure(
    redis: AnyRedis, connect: Connect | None, campaign_ids: Iterable[str], shards: int,
    replica_acks: int = 0,
) -> Health:
    """One snapshot; a server that does not answer is reported down, never raised.
    ``replica_acks``: durable only if every primary's replicas acknowledge that many."""
    redis_up, found = await _redis_state(redis, replica_acks)
    campaigns: dict[str, CampaignHealth] = {}
    postgres_up = False
    rows: int | None = None
    repairs: dict[str, dict[str, int]] = {}
    async with contextlib.AsyncExitStack() as stack:
        conn: asyncpg.Connection | None = None
        if connect is not None:
            try:
                async with asyncio.timeout(TIMEOUT):
                    opened = await stack.enter_async_context(connect())
                    rows = int(await opened.fetchval(LEDGER_ROWS))
                conn = opened
                postgres_up = True
            except Exception as exc:
                log.warning("health: PostgreSQL is unreachable: %r", exc)
        if redis_up:
            try:
                async with asyncio.timeout(TIMEOUT):
                    repairs = await repair.counts(redis)
            except Exception as exc:
                log.warning("drift repair counts not read: %r", exc)
            for cid in campaign_ids:
                try:
                    campaigns[cid] = await _campaign(redis, conn, cid, shards)
                except Exception as exc:
                    log.warning("health of %s not measured: %r", cid, exc)
    return Health(time.time(), redis_up, postgres_up, found, campaigns, rows, repairs)


async def watch(
    redis: AnyRedis, connect: Connect | None, campaign_ids: Callable[[], Iterable[str]],
    shards: int, interval: float, publish: Callable[[Health], None], replica_acks: int = 0,
) -> None:
    """Refresh the snapshot every ``interval`` seconds until cancelled (a lifespan task)."""
    while True:
        try:
            publish(await measure(redis, connect, list(campaign_ids()), shards, replica_acks))
        except Exception:  # the loop must outlive any one bad pass
            log.exception("health snapshot failed")
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            # a client library swallowed the cancellation mid-pass: honour it here
            raise asyncio.CancelledError
        await asyncio.sleep(interval)
