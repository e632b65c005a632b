"""With ``VOTING_REDIS_REPLICA_ACKS`` ≥ 1 the flusher commits to PostgreSQL only what the
replicas hold (WAITAOF before each commit): a failover can then not take back a vote that
PostgreSQL already has."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import asyncpg
import pytest
from redis.asyncio import Redis

from voting_service import embedded
from voting_service.ledger.flusher import Flusher
from voting_service.redis import keys
from voting_service.vote import entry

SHARDS = 2


@pytest.fixture
async def primary_and_replica(tmp_path: Path) -> AsyncIterator[tuple[embedded.ValkeyServer,
                                                                     embedded.ValkeyServer]]:
    primary = embedded.ValkeyServer(tmp_path / "primary").start()
    replica = embedded.ValkeyServer(tmp_path / "replica").start()
    try:
        r = Redis.from_url(replica.url)
        await r.replicaof("127.0.0.1", primary.port)
        async with asyncio.timeout(20):
            while (await r.info("replication")).get("master_link_status") != "up":
                await asyncio.sleep(0.1)
        await r.aclose()
        p = Redis.from_url(primary.url)
        async with asyncio.timeout(30):  # the replica's AOF is written after its first sync
            while True:
                await p.set("probe", "1")
                if (await cast(Any, p).execute_command("WAITAOF", 0, 1, 1500))[1] == 1:
                    break
        await p.aclose()
        yield primary, replica
    finally:
        replica.stop()
        primary.stop()


async def add_votes(redis: Redis, shard: int, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        await redis.xadd(keys.ledger("rep", shard), {entry.FIELD: entry.pack(entry.Entry(
            f"vote-{i:06d}", "ab" * 16, "c001", "", "198.51.100.7", "2026-07-01", False))})


async def test_nothing_is_committed_that_the_replicas_do_not_hold(
    primary_and_replica: tuple[embedded.ValkeyServer, embedded.ValkeyServer],
    pg: asyncpg.Connection, migrated: str,
) -> None:
    primary, replica = primary_and_replica
    redis = Redis.from_url(primary.url, decode_responses=True)
    await redis.hset(keys.CONFIG_HASH, "rep", "{}")
    # a replica reports its AOF fsyncs on its next ack, which can take about a second
    flusher = Flusher(redis, migrated, SHARDS, name="f", replica_acks=1,
                      replica_timeout_ms=2500)
    try:
        await add_votes(redis, 0, 3)
        assert await flusher.drain() == 3, "the replica holds them: committed"

        replica.signal(signal.SIGSTOP)  # the replica stops acknowledging
        try:
            await add_votes(redis, 1, 2, start=3)
            with pytest.raises(OSError, match="replicas hold"):
                await flusher.drain()
            assert await pg.fetchval("SELECT count(*) FROM votes") == 3, "nothing more"
        finally:
            replica.signal(signal.SIGCONT)
        assert await flusher.drain() == 2, "once it has them, they are committed"
    finally:
        await flusher.close()
        await redis.aclose()
    assert await pg.fetchval("SELECT count(*) FROM votes") == 5
    assert await pg.fetchval("SELECT votes FROM tallies WHERE campaign_id = 'rep'") == 5
