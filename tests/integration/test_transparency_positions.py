"""The log positions the flusher's commit gives the ledger rows (``batch.write``): dense, in
ledger order, once per committed row, also across a failed and retried pass; and how the
open day's rows are found by position (the BRIN of migration 0031, summarized by the tree
builder, then the sealed day's b-tree)."""

from __future__ import annotations

import asyncio
import datetime as dt

import asyncpg
import pytest

from voting_service.ledger import batch, marks, partitions, transparency
from voting_service.vote import entry

CID = "pos2026"
DAY = dt.date(2031, 3, 1)
"""Days of their own (a test seals one; partitions outlive a test's emptied tables)."""
LOCKED_DAY = dt.date(2031, 3, 2)
PEPPER = "pepper"


def raw(shard: int, n: int, first_ms: int = 1_784_000_000_000,
        day: dt.date = DAY) -> list[batch.RawEntry]:
    """``n`` entries of one shard stream as ``cast_vote.lua`` writes them."""
    return [(f"{first_ms + i}-{i % 3}", [entry.FIELD, entry.pack(entry.Entry(
        f"v{shard}x{i:05d}", f"voter{i % 50}", f"c{i % 7}", "", f"10.0.{shard}.{i % 250}",
        day.isoformat(), False))]) for i in range(n)]


def one_batch(streams: dict[int, int], old: dict[int, marks.Mark] | None = None,
              first_ms: int = 1_784_000_000_000, day: dt.date = DAY) -> batch.Batch:
    b = batch.Batch()
    for shard, n in streams.items():
        b.add((CID, shard), (old or {}).get(shard, marks.ZERO), raw(shard, n, first_ms, day))
    return b


async def positions(conn: asyncpg.Connection) -> list[tuple[int, int, str]]:
    """(log_index, shard, stream_id) of the ledger, in log order."""
    return [(r[0], r[1], r[2]) for r in await conn.fetch(
        "SELECT log_index, shard, stream_id FROM votes WHERE campaign_id = $1"
        " ORDER BY log_index", CID)]


async def test_a_failed_pass_gives_its_positions_back_and_its_retry_takes_them_once(
        pg: asyncpg.Connection) -> None:
    await marks.load(pg, CID, 2)
    b = one_batch({0: 4, 1: 3})

    async def fail() -> None:
        raise OSError("the replicas did not acknowledge: not committed")

    with pytest.raises(OSError):
        await batch.commit(pg, b, fail)
    assert await pg.fetchval("SELECT count(*) FROM votes") == 0
    assert await pg.fetchval("SELECT size FROM log_state WHERE campaign_id = $1", CID) is None

    async with pg.transaction():  # another writer takes the log's end meanwhile
        assert await transparency.append(pg, CID, "results", b"results\n{}\n") == 0
    await batch.commit(pg, b)  # the retried pass
    found = await positions(pg)
    assert [p for p, _, _ in found] == list(range(1, 8))  # dense after the other leaf
    assert [p[2] for p in found] == [line.split("\t")[9] for line in b.lines]
    assert [s for _, s, _ in found] == [0, 0, 0, 0, 1, 1, 1]  # the batch's line order

    with pytest.raises(marks.MarkMoved):  # the same pass once more: its marks have moved
        await batch.commit(pg, b)
    assert await positions(pg) == found
    assert await pg.fetchval("SELECT size FROM log_state WHERE campaign_id = $1", CID) == 8

    later = one_batch({1: 2}, {1: marks.parse(raw(1, 3)[-1][0])}, 1_784_000_000_100)
    await batch.commit(pg, later)
    assert [p for p, _, _ in await positions(pg)] == list(range(1, 10))


async def plan_of_leaves(conn: asyncpg.Connection, start: int, end: int) -> str:
    keys = transparency._Pseudonym(PEPPER, CID)
    return "\n".join(r[0] for r in await conn.fetch(
        "EXPLAIN " + transparency.LEAVES, CID, keys.outer, keys.inner, start, end))


async def test_the_builder_summarizes_the_open_days_brin_and_look_ups_use_it(
        pg: asyncpg.Connection) -> None:
    part = partitions.name_of(DAY)
    await marks.load(pg, CID, 2)
    await batch.commit(pg, one_batch({0: 1500, 1: 1500}))
    open_indexes = [r["part"] for r in await pg.fetch(transparency.OPEN_LOG_INDEXES)]
    assert f"public.{part}" in open_indexes
    async with pg.transaction():
        assert await transparency.build(pg, CID, PEPPER) == 3000 // 256 * 256
        assert await transparency.summarize(pg) == 0  # the build summarized every range
    assert await pg.fetchval("SELECT count(*) FROM pg_stats WHERE tablename = $1"
                             " AND attname = 'log_index'", part) == 1  # and analyzed it
    plan = await plan_of_leaves(pg, 1024, 1280)
    assert f"Bitmap Index Scan on {part}_log_index_idx" in plan, plan
    assert f"Seq Scan on {part}" not in plan, plan
    t = await transparency.tree(pg, CID, PEPPER)
    assert len(await t.fetch_leaves(1024, 1280)) == 256

    await partitions.seal(pg, days=[DAY])  # the finished day gets the b-tree
    assert f"public.{part}" not in [r["part"] for r in await pg.fetch(
        transparency.OPEN_LOG_INDEXES)]
    await pg.execute("SET enable_bitmapscan = off")  # the BRIN answers bitmap scans only
    await pg.execute("SET enable_seqscan = off")
    plan = await plan_of_leaves(pg, 1024, 1280)
    assert f"Index Scan using {part}_log on {part}" in plan, plan


async def test_summarizing_waits_for_no_lock_and_leaves_the_lock_timeout_as_it_was(
        pg: asyncpg.Connection, migrated: str) -> None:
    part = partitions.name_of(LOCKED_DAY)
    await marks.load(pg, CID, 1)
    await batch.commit(pg, one_batch({0: 600}, day=LOCKED_DAY))
    other = await asyncpg.connect(migrated)
    try:
        async with other.transaction():  # what a sealing pass's index build holds
            await other.execute(f'LOCK TABLE "{part}" IN SHARE UPDATE EXCLUSIVE MODE')
            async with pg.transaction(), asyncio.timeout(60):  # waiting would hang: fail
                await pg.execute("SET LOCAL lock_timeout = 0")  # the caller's: wait forever
                assert await transparency.summarize(pg) == 0  # skipped, not waited for
                assert await pg.fetchval("SHOW lock_timeout") == "0"
                assert await transparency.build(pg, CID, PEPPER) == 512
        async with pg.transaction():
            await pg.execute("SET LOCAL lock_timeout = '5s'")
            await transparency.summarize(pg)  # the lock is gone: done now
            assert await pg.fetchval("SHOW lock_timeout") == "5s"
            assert await pg.fetchval("SELECT brin_summarize_new_values($1::regclass)",
                                     f"{part}_log_index_idx") == 0
    finally:
        await other.close()
    assert "Bitmap Index Scan" in await plan_of_leaves(pg, 256, 512)
