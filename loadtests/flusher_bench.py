"""Flusher throughput into PostgreSQL, and flusher lag under load.

Three ways of moving the same ledger rows into ``votes``, side by side:

* the flusher end to end (``Flusher.drain``: XREAD → marks moved + text COPY + tally
  upserts in one transaction, the next read overlapped → XTRIM MINID) on a backlog written
  straight into the shard streams in the format ``cast_vote.lua`` writes;
* its PostgreSQL half alone: the same transactions (``ledger.batch.commit``) of the size a
  flusher pass makes, encoded before the clock starts;
* plain ``asyncpg`` ``executemany`` of ``INSERT … ON CONFLICT DO NOTHING`` (no tallies).

Each starts on empty ``votes``/``tallies``/``flush_marks`` tables (the benchmark's own
database).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import random
import statistics
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from voting_service import gc_tuning
from voting_service.ledger import batch as batches
from voting_service.ledger import marks, progress
from voting_service.ledger.batch import Batch
from voting_service.ledger.flusher import Flusher
from voting_service.redis import keys
from voting_service.redis.store import AnyRedis
from voting_service.vote import entry

PRIMARY_KEY = """
SELECT a.attname FROM pg_index i
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
WHERE i.indrelid = 'votes'::regclass AND i.indisprimary
ORDER BY array_position(i.indkey::int2[], a.attnum)
"""


async def insert_statement(conn: asyncpg.Connection) -> str:
    """``INSERT … ON CONFLICT (<the ledger's primary key>) DO NOTHING`` of the flusher's
    columns, read from the schema so that it follows the migrations."""
    key = [r["attname"] for r in await conn.fetch(PRIMARY_KEY)]
    values = ", ".join(f"${i}" for i in range(1, len(batches.COLUMNS) + 1))
    return (f"INSERT INTO votes ({', '.join(batches.COLUMNS)}) VALUES ({values}) "
            f"ON CONFLICT ({', '.join(key)}) DO NOTHING")


@dataclass
class Entry:
    shard: int
    fields: dict[str, str]


def ledger_entries(count: int, voter_ids: list[str], candidates: int, ips: list[str],
                   shards: int, day: str, seed: int = 5) -> list[Entry]:
    """Entries as ``cast_vote.lua`` XADDs them: one packed field (``vote.entry``)."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        voter = voter_ids[i % len(voter_ids)]
        signed = rng.random() < 0.2
        out.append(Entry(keys.shard_of(voter, shards), {entry.FIELD: entry.pack(entry.Entry(
            uuid.UUID(int=rng.getrandbits(128), version=4).hex, voter,
            f"c{rng.randrange(candidates) + 1:03d}", "xinhua" if signed else "",
            ips[rng.randrange(len(ips))], day, signed))}))
    return out


BULK_XADD = """
for i = 1, #ARGV do
  redis.call('XADD', KEYS[1], '*', 'e', ARGV[i])
end
return #ARGV
"""
"""XADDs a chunk of ledger entries server-side: filling a 200,000-entry backlog one XADD a
command from Python took longer than flushing it."""


async def fill_backlog(redis: AnyRedis, campaign_id: str, entries: list[Entry],
                       chunk: int = 1000) -> float:
    """XADD every entry into its shard stream; returns the seconds it took."""
    started = time.monotonic()
    by_shard: dict[int, list[Entry]] = {}
    for e in entries:
        by_shard.setdefault(e.shard, []).append(e)
    pipe = redis.pipeline(transaction=False)
    for shard, mine in sorted(by_shard.items()):
        for i in range(0, len(mine), chunk):
            args = [e.fields[entry.FIELD] for e in mine[i : i + chunk]]
            pipe.eval(BULK_XADD, 1, keys.ledger(campaign_id, shard), *args)
            if len(pipe) >= 20:
                await pipe.execute()
    await pipe.execute()
    return time.monotonic() - started


def stream_ids(entries: list[Entry]) -> list[str]:
    """Made-up stream ids one millisecond apart, in order."""
    base = int(time.time() * 1000) - len(entries)
    return [f"{base + i}-0" for i in range(len(entries))]


def records(campaign_id: str, entries: list[Entry]) -> list[tuple[Any, ...]]:
    """The rows the flusher would COPY (``batch.COLUMNS``), with made-up stream ids."""
    out = []
    for e, sid in zip(entries, stream_ids(entries), strict=True):
        x = entry.decode(e.fields)
        out.append((x.vote_id, x.voter_id, x.candidate_id, x.channel, x.ip or None,
                    dt.date.fromisoformat(x.day), x.channel_signed, campaign_id, e.shard, sid,
                    batches.cast_at(marks.parse(sid)[0])))
    return out


def transactions(campaign_id: str, entries: list[Entry], rows: int) -> list[Batch]:
    """The flusher's transactions over ``entries``, ``rows`` a transaction, from zero marks."""
    at: dict[int, marks.Mark] = {}
    out: list[Batch] = []
    ids = stream_ids(entries)
    for i in range(0, len(entries), rows):
        b = Batch()
        by_shard: dict[int, list[tuple[str, dict[str, str]]]] = {}
        for e, sid in zip(entries[i : i + rows], ids[i : i + rows], strict=True):
            by_shard.setdefault(e.shard, []).append((sid, e.fields))
        for shard, found in sorted(by_shard.items()):
            b.add((campaign_id, shard), at.get(shard, marks.ZERO), found)
            at[shard] = marks.parse(found[-1][0])
        out.append(b)
    return out


@dataclass
class Throughput:
    method: str
    rows: int
    seconds: float
    complete: bool
    """False when the time bound stopped it before every row was in."""
    inserted: int = 0
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"method": self.method, "rows": self.rows, "seconds": round(self.seconds, 3),
                "rows_per_s": round(self.rate, 1), "complete": self.complete,
                "inserted": self.inserted, **self.notes}


async def empty_tables(pg_url: str) -> None:
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute("TRUNCATE votes, tallies, flush_marks")
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()


async def count_rows(pg_url: str, campaign_id: str) -> int:
    conn = await asyncpg.connect(pg_url)
    try:
        return int(await conn.fetchval(
            "SELECT count(*) FROM votes WHERE campaign_id = $1", campaign_id))
    finally:
        await conn.close()


async def flusher_drain(redis: AnyRedis, pg_url: str, campaign_id: str, shards: int,
                        max_seconds: float, reader: AnyRedis | None = None,
                        log_positions: bool = True) -> Throughput:
    """``Flusher.drain`` of the backlog; the campaign must be listed in ``cfg:campaigns``.
    ``log_positions``: the rows take transparency log positions (the default, as deployed)."""
    flusher = Flusher(redis, pg_url, shards, name="bench-flusher", reader=reader,
                      log_positions=log_positions)
    await flusher.refresh()  # leases and marks taken before the clock starts
    backend = (await flusher._db()).get_server_pid()  # its PostgreSQL backend's process
    gc_tuning.settle()  # as `voting-service flusher` does once it has started
    stages = _time_stages(flusher, ("_collect", "_write", "trim"))
    complete = True
    cpu = (time.process_time(), run_ns(backend))
    started = time.monotonic()
    try:
        async with asyncio.timeout(max_seconds):
            await flusher.drain()
    except TimeoutError:
        complete = False
    finally:
        elapsed = time.monotonic() - started
        spent = (time.process_time() - cpu[0], (run_ns(backend) - cpu[1]) / 1e9)
        await flusher.close()
    per_row = 1e6 / max(flusher.stats.flushed, 1)
    return Throughput("flusher end to end: XREAD + marks/COPY/tallies + XTRIM",
                      flusher.stats.flushed, elapsed, complete,
                      await count_rows(pg_url, campaign_id),
                      {"batches": flusher.stats.batches,
                       "rows_per_batch": round(flusher.stats.flushed
                                               / max(flusher.stats.batches, 1)),
                       "stage_seconds": {k.strip("_"): round(v, 3) for k, v in stages.items()},
                       "cpu_us_per_row": {"flusher": round(spent[0] * per_row, 3),
                                          "postgres": round(spent[1] * per_row, 3)}})


def run_ns(pid: int) -> int:
    """Nanoseconds process ``pid`` has run on a CPU (``/proc/<pid>/schedstat``, its main
    thread; 0 where the file is missing). Less moved by a neighbour than wall time, not
    immune: under a load average of 8 a row's CPU rose by up to a half."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])
    return 0


def _time_stages(obj: object, names: tuple[str, ...]) -> dict[str, float]:
    """Wrap the named coroutine methods of ``obj`` (if it has them) to add up their time:
    where a flusher pass spends it — Redis read, PostgreSQL write, Redis ack."""
    spent: dict[str, float] = {}
    for name in names:
        method = getattr(obj, name, None)
        if method is None or not asyncio.iscoroutinefunction(method):
            continue
        spent[name] = 0.0

        def wrapped(*args: Any, _m: Any = method, _n: str = name, **kwargs: Any) -> Any:
            async def run() -> Any:
                started = time.perf_counter()
                try:
                    return await _m(*args, **kwargs)
                finally:
                    spent[_n] += time.perf_counter() - started
            return run()

        setattr(obj, name, wrapped)
    return spent


async def copy_marks(pg_url: str, campaign_id: str, entries: list[Entry], batch: int,
                     max_seconds: float, log_positions: bool = True) -> Throughput:
    """The flusher's PostgreSQL transactions alone (marks, COPY, tallies), ``batch`` rows
    each, encoded before the clock starts; ``log_positions`` as the flusher's."""
    todo = transactions(campaign_id, entries, batch)
    conn = await asyncpg.connect(pg_url)
    done = 0
    try:
        await marks.load(conn, campaign_id, max(e.shard for e in entries) + 1)
        wal = await conn.fetchval(WAL_AT)
        started = time.monotonic()
        for b in todo:
            if time.monotonic() - started >= max_seconds:
                break
            await batches.commit(conn, b, log=log_positions)
            done += b.rows
        elapsed = time.monotonic() - started
        wal_bytes = int(await conn.fetchval(f"SELECT pg_wal_lsn_diff(({WAL_AT}), $1)", wal))
    finally:
        await conn.close()
    return Throughput("PostgreSQL only: marks + text COPY + tallies", done, elapsed,
                      done == len(entries), await count_rows(pg_url, campaign_id),
                      {"rows_per_tx": batch,
                       "wal_bytes_per_row": round(wal_bytes / max(done, 1), 1)})


WAL_AT = "SELECT pg_current_wal_insert_lsn()"
"""Where PostgreSQL's WAL ends: the bytes a row writes do not depend on the machine's speed
(other sessions of the benchmark's own server are idle meanwhile)."""


async def executemany(pg_url: str, rows: list[tuple[Any, ...]], batch: int,
                      max_seconds: float) -> Throughput:
    """Plain ``executemany`` INSERT … ON CONFLICT DO NOTHING, ``batch`` rows a transaction."""
    conn = await asyncpg.connect(pg_url)
    done = 0
    try:
        insert = await insert_statement(conn)
        started = time.monotonic()
        while done < len(rows) and time.monotonic() - started < max_seconds:
            chunk = rows[done : done + batch]
            async with conn.transaction():
                await conn.executemany(insert, chunk)
            done += len(chunk)
        elapsed = time.monotonic() - started
    finally:
        await conn.close()
    return Throughput("asyncpg executemany INSERT…ON CONFLICT DO NOTHING", done, elapsed,
                      done == len(rows), await count_rows(pg_url, rows[0][7]),
                      {"rows_per_tx": batch})


@dataclass
class LagSampler:
    """Samples ``progress.all_campaigns`` (backlog, age of the oldest unflushed vote)."""

    redis: AnyRedis
    pg_url: str
    shards: int
    interval: float = 0.25
    samples: list[tuple[float, int, float]] = field(default_factory=list)

    async def run(self, stop: asyncio.Event) -> None:
        conn = await asyncpg.connect(self.pg_url)
        started = time.monotonic()
        try:
            while not stop.is_set():
                found = await progress.all_campaigns(self.redis, conn, self.shards)
                self.samples.append((time.monotonic() - started, found.backlog,
                                     found.lag_seconds))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.interval)
        finally:
            await conn.close()

    def summary(self) -> dict[str, Any]:
        lags = sorted(s[2] for s in self.samples)
        if not lags:
            return {"samples": 0}
        p95 = lags[min(len(lags) - 1, round(0.95 * (len(lags) - 1)))]
        return {"samples": len(lags), "lag_max_s": round(lags[-1], 3),
                "lag_p95_s": round(p95, 3), "lag_median_s": round(statistics.median(lags), 3),
                "backlog_max": max(s[1] for s in self.samples)}


def today(timezone: str = "Asia/Shanghai") -> str:
    from zoneinfo import ZoneInfo

    return dt.datetime.now(ZoneInfo(timezone)).date().isoformat()
