"""The ledger's day partitions (migration 0006, ``ledger.partitions``): an older ledger moves
in whole, writers create a day's partition once however many race, and only finished days
get their lookup indexes, which the look-ups then use."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
from collections.abc import AsyncIterator

import asyncpg
import pytest

from tests.conftest import fresh_database
from voting_service.ledger import db, partitions

OLD_DAY = dt.date(2026, 7, 15)
NEXT_DAY = OLD_DAY + dt.timedelta(days=1)
NOW = dt.datetime(2026, 7, 17, 1, 0, tzinfo=dt.UTC)
"""Past the end of OLD_DAY everywhere (12:00 UTC on the 16th) and its grace hour; NEXT_DAY
is still open somewhere."""
COLUMNS = ["campaign_id", "voter_id", "vote_id", "candidate_id", "ip", "day", "cast_at",
           "stream_id", "shard"]
LOOKUPS = {"voter", "ip", "vote", "log"}


@pytest.fixture
async def fresh_url(migrated: str) -> str:
    """An empty database of its own (sealing looks at every partition there is)."""
    return await fresh_database(migrated, "partitions_test")


@pytest.fixture
async def fresh(fresh_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(fresh_url)
    try:
        yield conn
    finally:
        await conn.close()


def rows(day: dt.date, n: int, first: int = 0) -> list[tuple[object, ...]]:
    at = dt.datetime.combine(day, dt.time(9), dt.UTC)
    return [("c1", f"voter{i % 3}", f"vote{i:04d}", "c001", f"10.0.{i}.1", day,
             at + dt.timedelta(seconds=i), f"{int(at.timestamp() * 1000) + i}-0", i % 2)
            for i in range(first, first + n)]


async def write(conn: asyncpg.Connection, records: list[tuple[object, ...]]) -> None:
    await partitions.Known().ensure(conn, {r[5].isoformat() for r in records})  # type: ignore[attr-defined]
    await conn.copy_records_to_table("votes", records=records, columns=COLUMNS)


async def lookups(conn: asyncpg.Connection, table: str) -> set[str]:
    """The lookup indexes ``table`` has that are valid, by suffix."""
    names = await conn.fetch(
        "SELECT i.relname FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid"
        " WHERE x.indrelid = $1::regclass AND x.indisvalid", table)
    return {r["relname"].removeprefix(table + "_") for r in names} & LOOKUPS


async def test_an_unpartitioned_ledger_moves_into_day_partitions(
        fresh: asyncpg.Connection) -> None:
    assert await db.migrate(fresh, upto=5) == [1, 2, 3, 5]
    old = rows(OLD_DAY, 4) + rows(NEXT_DAY, 2, first=4)
    await fresh.copy_records_to_table("votes", records=old, columns=COLUMNS)
    assert await db.migrate(fresh, upto=6) == [6]  # later migrations are not its subject
    assert await fresh.fetchval("SELECT relkind::text FROM pg_class WHERE relname = 'votes'") == "p"
    found = await fresh.fetch(f"SELECT tableoid::regclass::text AS part, {', '.join(COLUMNS)},"
                              " valid FROM votes ORDER BY vote_id")
    assert [(*(r[c] for c in COLUMNS[:4]), str(r["ip"]), *(r[c] for c in COLUMNS[5:]))
            for r in found] == old
    assert [r["part"] for r in found] == ["votes_p20260715"] * 4 + ["votes_p20260716"] * 2
    assert all(r["valid"] for r in found)
    assert await fresh.fetchval("SELECT to_regclass('votes_unpartitioned')") is None


async def test_racing_writers_create_a_days_partition_once(
        fresh: asyncpg.Connection, fresh_url: str) -> None:
    await db.migrate(fresh)
    conns = [await asyncpg.connect(fresh_url) for _ in range(4)]
    try:
        names = await asyncio.gather(*(c.fetchval("SELECT votes_partition($1)", OLD_DAY)
                                       for c in conns))
    finally:
        for c in conns:
            await c.close()
    assert names == ["votes_p20260715"] * 4
    assert await fresh.fetchval(
        "SELECT count(*) FROM pg_inherits WHERE inhparent = 'votes'::regclass") == 1
    with pytest.raises(asyncpg.CheckViolationError):  # no partition: the COPY is refused
        await fresh.copy_records_to_table("votes", records=rows(NEXT_DAY, 1), columns=COLUMNS)


async def test_a_new_partition_does_not_wait_for_readers_of_the_ledger(
        fresh: asyncpg.Connection, fresh_url: str) -> None:
    await db.migrate(fresh)
    await write(fresh, rows(OLD_DAY, 3))
    reader = await asyncpg.connect(fresh_url)
    try:
        async with reader.transaction():  # a long export holds the ledger until it ends
            assert await reader.fetchval("SELECT count(*) FROM votes") == 3
            await fresh.execute("SET lock_timeout = '2s'")
            await write(fresh, rows(NEXT_DAY, 2, first=3))
    finally:
        await reader.close()
    assert await fresh.fetchval("SELECT count(*) FROM votes_p20260716") == 2


async def test_only_finished_days_are_sealed_and_their_lookups_use_the_indexes(
        fresh: asyncpg.Connection) -> None:
    await db.migrate(fresh)
    assert await partitions.first_open(fresh) == dt.date.max  # no day yet
    await write(fresh, rows(OLD_DAY, 30) + rows(NEXT_DAY, 5, first=30))
    assert await lookups(fresh, "votes_p20260715") == set()  # written without them
    assert await partitions.first_open(fresh) == OLD_DAY

    sealed = await partitions.seal(fresh, NOW)
    assert [(s.name, sorted(s.built)) for s in sealed] == [
        ("votes_p20260715", sorted(f"votes_p20260715_{x}" for x in LOOKUPS))]
    assert await lookups(fresh, "votes_p20260715") == LOOKUPS
    assert await lookups(fresh, "votes_p20260716") == set()  # not over in UTC−12 yet
    assert await partitions.seal(fresh, NOW) == []  # nothing left to build
    assert await partitions.first_open(fresh) == NEXT_DAY  # looked up by scanning from here

    await fresh.execute("SET enable_seqscan = off")  # the plan the index allows, on 30 rows
    for where, index in (("voter_id = 'voter1'", "voter"), ("ip <<= '10.0.7.0/24'", "ip"),
                         ("vote_id = 'vote0007'", "vote"),
                         ("log_index >= 256 AND log_index < 512", "log")):
        plan = "\n".join(r[0] for r in await fresh.fetch(
            f"EXPLAIN SELECT * FROM votes WHERE campaign_id = 'c1' AND {where}"))
        assert re.search(rf"votes_p20260715_{index}\b", plan), plan  # not ..._log_index_idx
    assert await fresh.fetchval("SELECT count(*) FROM votes WHERE voter_id = 'voter1'") == 12


async def test_a_build_that_failed_half_way_is_done_again(fresh: asyncpg.Connection) -> None:
    await db.migrate(fresh)
    await write(fresh, rows(OLD_DAY, 6))
    with pytest.raises(asyncpg.UniqueViolationError):  # leaves an invalid index behind
        await fresh.execute("CREATE UNIQUE INDEX CONCURRENTLY votes_p20260715_voter"
                            " ON votes_p20260715 (campaign_id)")
    assert await lookups(fresh, "votes_p20260715") == set()
    sealed = await partitions.seal(fresh, NOW)
    assert "votes_p20260715_voter" in sealed[0].built
    assert await lookups(fresh, "votes_p20260715") == LOOKUPS
    assert not await fresh.fetchval(
        "SELECT indisunique FROM pg_index WHERE indexrelid = 'votes_p20260715_voter'::regclass")


async def test_one_sealer_at_a_time_and_the_loop_stops(
        fresh: asyncpg.Connection, fresh_url: str) -> None:
    await db.migrate(fresh)
    await write(fresh, rows(dt.date(2020, 1, 1), 3))  # long over
    await fresh.execute("SELECT pg_advisory_lock($1)", partitions.LOCK_ID)
    assert await partitions.seal_once(fresh_url) is None  # another process is sealing
    await fresh.execute("SELECT pg_advisory_unlock($1)", partitions.LOCK_ID)

    stop = asyncio.Event()
    loop = asyncio.create_task(partitions.run(fresh_url, stop, every=0.05))
    for _ in range(200):
        if await lookups(fresh, "votes_p20200101") == LOOKUPS:
            break
        await asyncio.sleep(0.05)
    assert await lookups(fresh, "votes_p20200101") == LOOKUPS
    stop.set()
    await asyncio.wait_for(loop, 10)


async def test_a_publications_sealing_waits_for_the_pass_in_progress(
        fresh: asyncpg.Connection, fresh_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """An index the flusher's pass is building looks invalid in the catalogue, like a
    failed build; a publication that dropped it meanwhile deadlocked with the build (a 500
    after the publication had committed). It waits for the pass instead."""
    await db.migrate(fresh)
    await write(fresh, rows(OLD_DAY, 6))
    with pytest.raises(asyncpg.UniqueViolationError):  # as the catalogue shows a build
        await fresh.execute("CREATE UNIQUE INDEX CONCURRENTLY votes_p20260715_voter"
                            " ON votes_p20260715 (campaign_id)")
    building = await fresh.fetchval("SELECT 'votes_p20260715_voter'::regclass::oid")
    await fresh.execute("SELECT pg_advisory_lock($1)", partitions.LOCK_ID)  # the pass
    publisher = await asyncpg.connect(fresh_url)
    try:
        with caplog.at_level(logging.INFO, logger=partitions.__name__):
            task = asyncio.create_task(partitions.seal_days(publisher, [OLD_DAY], poll=0.01))
            for _ in range(1000):
                if task.done() or "waits for another" in caplog.text:
                    break
                await asyncio.sleep(0.01)
            assert not task.done(), "sealed beside another process's pass"
            assert await fresh.fetchval(
                "SELECT count(*) FROM pg_class WHERE oid = $1", building) == 1
            await fresh.execute("SELECT pg_advisory_unlock($1)", partitions.LOCK_ID)
            sealed = await asyncio.wait_for(task, 60)
        assert await fresh.fetchval("SELECT pg_try_advisory_lock($1)", partitions.LOCK_ID), \
            "the publication kept the lock"
        await fresh.execute("SELECT pg_advisory_unlock($1)", partitions.LOCK_ID)
    finally:
        await publisher.close()
    assert [s.name for s in sealed] == ["votes_p20260715"]
    assert await lookups(fresh, "votes_p20260715") == LOOKUPS


async def test_a_published_campaigns_open_days_are_sealed_on_request(
        fresh: asyncpg.Connection) -> None:
    await db.migrate(fresh)
    await write(fresh, rows(NEXT_DAY, 4))
    assert await partitions.seal(fresh, NOW) == []  # the day is not over everywhere
    await write(fresh, rows(OLD_DAY, 2, first=4))
    sealed = await partitions.seal(fresh, NOW, days=[NEXT_DAY, dt.date(2026, 7, 20)])
    assert [s.name for s in sealed] == ["votes_p20260716"]  # a day without votes: nothing
    assert await lookups(fresh, "votes_p20260716") == LOOKUPS
    assert await lookups(fresh, "votes_p20260715") == set()  # over, but not named: the
    # flusher's pass seals it, not the publication's request
