"""A quiet flusher (issue #8.11): idle it blocks in XREAD instead of polling, and it stops
reading a closed campaign's streams once they are drained."""

from __future__ import annotations

import asyncio

import pytest

from tests.conftest import ADMIN, Backend, Harness, commands_run, make_settings, reset_stats
from voting_service.ledger.flusher import Flusher
from voting_service.redis import store
from voting_service.settings import Settings

CAMPAIGNS = 11


@pytest.fixture
def settings(backend: Backend, pg_url: str) -> Settings:
    """The web app's own health pass reads every shard's tally; here only the flusher's
    commands are counted, so that pass waits longer than the test."""
    return make_settings(backend, pg_url, health_interval=3600.0)


async def test_an_idle_flusher_sends_a_few_commands_whatever_the_campaigns(
    harness: Harness,
) -> None:
    h = harness
    for i in range(CAMPAIGNS):
        await h.create_campaign(id=f"idle{i:02d}")
    reader = store.connect(h.settings, socket_timeout=20)
    flusher = Flusher(h.redis, h.settings.database_url or "", h.settings.shards, name="quiet",
                      reader=reader, block_ms=10_000)
    stop = asyncio.Event()
    running = asyncio.create_task(flusher.run(stop))
    try:
        async with asyncio.timeout(20):
            while len(flusher.wanted()) < CAMPAIGNS * h.settings.shards \
                    or flusher.stats.backlog != 0 or not flusher._groups \
                    or not all(g.blocking and g.task for g in flusher._groups):
                await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)
        await reset_stats(h.redis)
        await asyncio.sleep(4)
        calls = await commands_run(h.redis)
    finally:
        stop.set()
        await running
        await flusher.close()
        await reader.aclose()
    streams = CAMPAIGNS * h.settings.shards
    # polling sent one read per stream per pass, twenty passes a second: 14,000 here; idle,
    # what remains is the campaign-list check, one lease renewal per stream every 5 s and,
    # in a Cluster, one blocking read per slot every 10 s. Other clients of the shared test
    # server can land in the window (once, in a full run on a slow machine: 42 GETs, 22
    # SETs and a new connection beside the flusher's calls): a margin of one call per
    # stream, still far below any polling
    assert sum(calls.values()) <= 3 * streams + 20, sorted(calls.items())
    assert calls.get("xread", 0) <= streams, calls


async def test_a_closed_campaign_is_read_until_drained_then_no_more(harness: Harness) -> None:
    h = harness
    await h.create_campaign()
    token = await h.voter()
    for cand in ("c001", "c002"):
        assert (await h.vote(token, cand)).status_code == 200
    r = await h.client.patch("/api/v1/admin/campaigns/t2026", json={"status": "closed"},
                             headers=ADMIN)
    assert r.status_code == 200, r.text
    flusher = Flusher(h.redis, h.settings.database_url or "", h.settings.shards, name="f")
    try:
        assert await flusher.drain() == 2, "votes cast before the close are flushed"
        assert flusher.wanted() == [], "then its streams are read no more"
        assert await flusher.drain() == 0
    finally:
        await flusher.close()
    assert await h.pg.fetchval("SELECT count(*) FROM votes") == 2
    r = await h.client.patch("/api/v1/admin/campaigns/t2026", json={"status": "open"},
                             headers=ADMIN)
    assert r.status_code == 200, r.text
    again = Flusher(h.redis, h.settings.database_url or "", h.settings.shards, name="f")
    try:
        await again.refresh()
        assert len(again.wanted()) == h.settings.shards, "reopened: read again"
    finally:
        await again.close()
