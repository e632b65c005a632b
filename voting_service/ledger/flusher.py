"""Moves the vote ledger from the Redis shard streams into PostgreSQL, exactly once in effect.

One pass: ``XREADGROUP`` (own pending entries first, then new ones, plus ``XAUTOCLAIM`` of
entries a dead consumer left idle) → ``COPY`` into a staging table → ``INSERT … ON CONFLICT
DO NOTHING`` into the ledger → tally upserts from the rows actually inserted, in the same
transaction → commit → ``ack_entries.lua`` (XACK + XDEL). A crash anywhere before the ack
means redelivery, which the ledger's primary key makes harmless; the stream therefore holds
exactly the votes that are not yet known to be committed, and Redis memory stays bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
import socket
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from redis.exceptions import RedisError, ResponseError

from ..vote import entry, keys, scripts
from ..vote.store import AnyRedis

log = logging.getLogger(__name__)

CLAIM_IDLE_MS = 15_000
"""An entry pending this long on another consumer is taken over (its flusher died)."""
HEARTBEAT_TTL = 15

STAGE = """
CREATE TEMP TABLE IF NOT EXISTS vote_stage (
    campaign_id text, voter_id text, vote_id text, candidate_id text, channel text,
    ip inet, day date, cast_at timestamptz, stream_id text, shard integer
) ON COMMIT DELETE ROWS
"""
STAGE_COLUMNS = ["campaign_id", "voter_id", "vote_id", "candidate_id", "channel", "ip", "day",
                 "cast_at", "stream_id", "shard"]
MERGE = """
WITH inserted AS (
    INSERT INTO votes (campaign_id, voter_id, vote_id, candidate_id, channel, ip, day,
                       cast_at, stream_id, shard)
    SELECT campaign_id, voter_id, vote_id, candidate_id, channel, ip, day, cast_at,
           stream_id, shard
    FROM vote_stage
    ON CONFLICT (campaign_id, voter_id, vote_id, day) DO NOTHING
    RETURNING campaign_id, candidate_id
), counted AS (
    INSERT INTO tallies (campaign_id, candidate_id, votes)
    SELECT campaign_id, candidate_id, count(*) FROM inserted GROUP BY 1, 2
    ON CONFLICT (campaign_id, candidate_id) DO UPDATE SET votes = tallies.votes + EXCLUDED.votes
    RETURNING votes
)
SELECT (SELECT count(*) FROM inserted) AS inserted
"""


def entry_ms(stream_id: str) -> int:
    return int(stream_id.split("-", 1)[0])


def to_record(campaign_id: str, shard: int, stream_id: str, f: dict[str, str]) -> tuple[Any, ...]:
    e = entry.decode(f)
    return (
        campaign_id, e.voter_id, e.vote_id, e.candidate_id, e.channel, e.ip or None,
        dt.date.fromisoformat(e.day),
        dt.datetime.fromtimestamp(entry_ms(stream_id) / 1000, dt.UTC), stream_id, shard,
    )


@dataclass
class Stats:
    flushed: int = 0
    inserted: int = 0
    batches: int = 0
    backlog: int = 0
    lag_seconds: float = 0.0
    started: float = field(default_factory=time.monotonic)


Stream = tuple[str, int]  # (campaign id, shard)


class Flusher:
    def __init__(
        self,
        redis: AnyRedis,
        database_url: str,
        shards: int,
        *,
        name: str | None = None,
        batch: int = 2000,
        idle_sleep: float = 0.05,
        claim_idle_ms: int = CLAIM_IDLE_MS,
    ) -> None:
        self.redis = redis
        self.database_url = database_url
        self.shards = shards
        self.name = name or f"{socket.gethostname()}-{os.getpid()}"
        self.batch = batch
        self.idle_sleep = idle_sleep
        self.claim_idle_ms = claim_idle_ms
        self.stats = Stats()
        self._conn: asyncpg.Connection | None = None
        self._grouped: set[str] = set()
        self._campaigns: list[str] = []
        self._campaigns_at = 0.0
        self._pending_done: set[str] = set()
        self._claimed_at = 0.0
        self._read_pending = True

    async def _db(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            self._conn = await asyncpg.connect(self.database_url, timeout=5)
            await self._conn.execute(STAGE)
        return self._conn

    async def close(self) -> None:
        if self._conn is not None and not self._conn.is_closed():
            await self._conn.close()

    async def streams(self) -> list[Stream]:
        if time.monotonic() - self._campaigns_at > 2.0:
            self._campaigns = sorted(map(str, await self.redis.hkeys(keys.CONFIG_HASH)))
            self._campaigns_at = time.monotonic()
        found = [(cid, shard) for cid in self._campaigns for shard in range(self.shards)]
        for cid, shard in found:
            key = keys.ledger(cid, shard)
            if key not in self._grouped:
                try:
                    await self.redis.xgroup_create(key, keys.FLUSHER_GROUP, id="0", mkstream=True)
                except ResponseError as exc:
                    if "BUSYGROUP" not in str(exc):
                        raise
                self._grouped.add(key)
        return found

    async def _read(self, streams: list[Stream]) -> dict[Stream, list[tuple[str, dict[str, str]]]]:
        pipe = self.redis.pipeline(transaction=False)
        plan: list[tuple[Stream, str]] = []
        self._read_pending = any(keys.ledger(*s) not in self._pending_done for s in streams)
        claim = time.monotonic() - self._claimed_at > self.claim_idle_ms / 3000
        if claim:
            self._claimed_at = time.monotonic()
        for stream in streams:
            key = keys.ledger(*stream)
            # own pending entries first (after a restart), then new ones
            start = ">" if key in self._pending_done else "0"
            pipe.xreadgroup(keys.FLUSHER_GROUP, self.name, {key: start}, count=self.batch)
            plan.append((stream, "read"))
            if not claim:
                continue
            pipe.xautoclaim(key, keys.FLUSHER_GROUP, self.name, self.claim_idle_ms, "0-0",
                            count=self.batch)
            plan.append((stream, "claim"))
        results = await pipe.execute()
        out: dict[Stream, list[tuple[str, dict[str, str]]]] = defaultdict(list)
        for (stream, kind), result in zip(plan, results, strict=True):
            key = keys.ledger(*stream)
            if kind == "read":
                entries = result[0][1] if result else []
                if key not in self._pending_done and not entries:
                    self._pending_done.add(key)
            else:
                entries = result[1] if result else []
            out[stream].extend((sid, f) for sid, f in entries if f)
        return out

    async def _write(self, batch: dict[Stream, list[tuple[str, dict[str, str]]]]) -> int:
        records = []
        for (cid, shard), entries in batch.items():
            # an entry may come twice in one pass (own pending + claimed); ids are per stream
            unique = dict(entries)
            records += [to_record(cid, shard, sid, fields) for sid, fields in unique.items()]
        conn = await self._db()
        async with conn.transaction():
            await conn.copy_records_to_table("vote_stage", records=records, columns=STAGE_COLUMNS)
            inserted = await conn.fetchval(MERGE)
        return int(inserted)

    async def _ack(self, batch: dict[Stream, list[tuple[str, dict[str, str]]]]) -> None:
        pipe = self.redis.pipeline(transaction=False)
        script = scripts.ack_entries()
        for stream, entries in batch.items():
            ids = sorted({sid for sid, _ in entries})
            for i in range(0, len(ids), 1000):
                chunk = ids[i : i + 1000]
                pipe.execute_command("EVALSHA", script.sha, 1, keys.ledger(*stream),
                                     keys.FLUSHER_GROUP, *chunk)
        results = await pipe.execute(raise_on_error=False)
        if any(isinstance(r, Exception) for r in results):
            # NOSCRIPT after a Redis restart: fall back to EVAL, entry by stream
            for stream, entries in batch.items():
                await script(self.redis, [keys.ledger(*stream)],
                             [keys.FLUSHER_GROUP, *sorted({sid for sid, _ in entries})])

    async def run_once(self) -> int:
        """One pass over every stream; returns the number of entries committed."""
        streams = await self.streams()
        if not streams:
            return 0
        batch = {s: e for s, e in (await self._read(streams)).items() if e}
        if not batch:
            return 0
        count = sum(len(e) for e in batch.values())
        inserted = await self._write(batch)
        await self._ack(batch)
        self.stats.flushed += count
        self.stats.inserted += inserted
        self.stats.batches += 1
        return count

    async def measure(self) -> tuple[int, float]:
        """Backlog (entries not yet committed) and lag (age of the oldest, seconds)."""
        streams = await self.streams()
        pipe = self.redis.pipeline(transaction=False)
        for stream in streams:
            pipe.xlen(keys.ledger(*stream))
            pipe.xrange(keys.ledger(*stream), "-", "+", count=1)
        results = await pipe.execute()
        backlog = sum(int(n) for n in results[0::2])
        oldest = [entry_ms(r[0][0]) for r in results[1::2] if r]
        lag = max(0.0, time.time() - min(oldest) / 1000) if oldest else 0.0
        return backlog, lag

    async def heartbeat(self) -> None:
        backlog, lag = await self.measure()
        self.stats.backlog, self.stats.lag_seconds = backlog, lag
        elapsed = max(time.monotonic() - self.stats.started, 1e-9)
        info = {"name": self.name, "at": time.time(), "backlog": backlog, "lag_seconds": lag,
                "flushed": self.stats.flushed, "rows_per_second": self.stats.flushed / elapsed}
        await self.redis.set(keys.FLUSHER_HEARTBEAT + self.name, json.dumps(info),
                             ex=HEARTBEAT_TTL)
        log.info("flusher %s: backlog=%d lag=%.2fs flushed=%d batches=%d rate=%.0f/s",
                 self.name, backlog, lag, self.stats.flushed, self.stats.batches,
                 info["rows_per_second"])

    async def drain(self) -> int:
        """Flush until a pass finds nothing (``burst`` mode, used by tests and ``up``)."""
        total = 0
        while True:
            n = await self.run_once()
            total += n
            if n == 0 and self._caught_up():
                return total

    def _caught_up(self) -> bool:
        """The last pass read new entries (not re-read pending ones) from every stream."""
        return not self._read_pending

    async def run(self, stop: asyncio.Event, *, burst: bool = False) -> None:
        backoff = 0.1
        last_beat = 0.0
        while not stop.is_set():
            try:
                n = await self.run_once()
                if time.monotonic() - last_beat > 5.0:
                    await self.heartbeat()
                    last_beat = time.monotonic()
                backoff = 0.1
            except (RedisError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError,
                    TimeoutError) as exc:
                log.warning("flusher pass failed (%r); retrying in %.1fs", exc, backoff)
                if self._conn is not None:
                    self._conn.terminate()
                    self._conn = None
                await _sleep(stop, backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            if n == 0 and self._caught_up():
                if burst:
                    return
                await _sleep(stop, self.idle_sleep)


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def healthy(redis: AnyRedis, max_lag: float = 60.0) -> tuple[bool, str]:
    """For ``flusher --check``: a live flusher reported recently, with bounded lag."""
    names = [k async for k in redis.scan_iter(match=keys.FLUSHER_HEARTBEAT + "*")]
    if not names:
        return False, "no flusher heartbeat in the last 15 s"
    beats = [json.loads(v) for v in await asyncio.gather(*(redis.get(n) for n in names)) if v]
    worst = max((b["lag_seconds"] for b in beats), default=0.0)
    ok = bool(beats) and worst <= max_lag
    return ok, f"{len(beats)} flusher(s), lag {worst:.2f}s"
