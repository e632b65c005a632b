"""The flusher's pace: light traffic goes to PostgreSQL in a few larger transactions (one
pass per ``pass_interval`` at most), a backlog is written pass after pass with no wait."""

from __future__ import annotations

import asyncio
import math
import time

from tests.conftest import Harness
from voting_service.ledger.flusher import Flusher

VOTES_PER_VOTER = 5  # the test campaign's votes_per_day


async def _wait_flushed(flusher: Flusher, rows: int, seconds: float = 30) -> float:
    """Until ``rows`` are committed; returns the monotonic time they were."""
    async with asyncio.timeout(seconds):
        while flusher.stats.flushed < rows:
            await asyncio.sleep(0.01)
    return time.monotonic()


async def test_a_trickle_of_votes_is_committed_once_per_interval(harness: Harness) -> None:
    h = harness
    await h.create_campaign()
    tokens = [await h.voter() for _ in range(6)]
    interval = 0.2
    flusher = Flusher(h.redis, h.settings.database_url or "", h.settings.shards, name="pace",
                      pass_interval=interval)
    stop = asyncio.Event()
    started = time.monotonic()
    running = asyncio.create_task(flusher.run(stop))
    try:
        cast = 0
        for i in range(VOTES_PER_VOTER):
            for token in tokens:
                r = await h.vote(token, f"c{i + 1:03d}")
                assert r.status_code == 200, r.text
                cast += 1
                await asyncio.sleep(0.02)
        done = await _wait_flushed(flusher, cast)
    finally:
        stop.set()
        await running
        await flusher.close()
    # passes that wrote rows start at least `interval` apart: with no interval, each of
    # the 30 votes cast 20 ms apart got a transaction of its own
    assert flusher.stats.batches <= math.ceil((done - started) / interval) + 1, (
        flusher.stats.batches, done - started)
    assert flusher.stats.batches < cast / 2
    assert await h.pg.fetchval("SELECT count(*) FROM votes") == cast
    assert await h.pg.fetchval("SELECT count(DISTINCT vote_id) FROM votes") == cast


async def test_a_backlog_is_written_pass_after_pass_without_waiting(harness: Harness) -> None:
    h = harness
    await h.create_campaign()
    voters = 6
    for _ in range(voters):
        token = await h.voter()
        for i in range(VOTES_PER_VOTER):
            assert (await h.vote(token, f"c{i + 1:03d}")).status_code == 200
    total = voters * VOTES_PER_VOTER
    # each voter's votes are in one shard stream: with COUNT 2 a read of that stream is
    # full, so the flusher is behind and goes on at once; only a pass that finds every
    # stream short of COUNT waits, and this interval outlasts the test
    flusher = Flusher(h.redis, h.settings.database_url or "", h.settings.shards, name="pace",
                      batch=2, pass_interval=3600)
    stop = asyncio.Event()
    running = asyncio.create_task(flusher.run(stop))
    try:
        await _wait_flushed(flusher, total)
        assert flusher.stats.batches >= math.ceil(VOTES_PER_VOTER / 2)
    finally:
        stop.set()
        await running
        await flusher.close()
    assert await h.pg.fetchval("SELECT count(*) FROM votes") == total
