"""Many votes at once, then the ledger: exact counts in Redis and PostgreSQL (DESIGN §3.6, §5).

Runs on a single node and on a 3-master cluster (the ``harness`` fixture's backends).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import Counter, defaultdict
from zoneinfo import ZoneInfo

import httpx
import pytest

from tests.conftest import Backend, Harness, client_for, make_settings, redis_tallies
from voting_service.app import create_app
from voting_service.ledger import reconcile
from voting_service.ledger.flusher import Flusher
from voting_service.redis import keys, store
from voting_service.settings import Settings

CANDIDATES = [f"c{i:03d}" for i in range(1, 13)]
OFFSETS = (0, 1, 3, 7)
"""Each voter votes for 4 different candidates, spread unevenly over the 12."""


@pytest.fixture
def settings(backend: Backend, pg_url: str) -> Settings:
    """A generous Redis deadline: 1,000 requests at once saturate this one in-process worker,
    and here we test exact counting, not the 1 s answer (see the overload test for that)."""
    return make_settings(backend, pg_url, redis_timeout=30.0)


def choices(voter_index: int) -> list[str]:
    return [CANDIDATES[(voter_index * 5 + k) % len(CANDIDATES)] for k in OFFSETS]


async def cast_many(h: Harness, voters: int) -> tuple[Counter[str], list[httpx.Response]]:
    tokens = list(await asyncio.gather(*(h.voter() for _ in range(voters))))
    assert len(set(tokens)) == voters
    plan = [(i, cand) for i in range(voters) for cand in choices(i)]
    responses = list(await asyncio.gather(*(h.vote(tokens[i], cand) for i, cand in plan)))
    bad = [(r.status_code, r.text) for r in responses if r.status_code != 200]
    assert not bad, bad[:5]
    # each voter's four answers counted its quota of 4 down to 3, 2, 1, 0 in some order
    left: dict[str, list[int]] = defaultdict(list)
    for (i, _), r in zip(plan, responses, strict=True):
        left[tokens[i]].append(r.json()["votes_left_today"])
    assert all(sorted(v) == [0, 1, 2, 3] for v in left.values()), list(left.values())[:5]
    for (_, cand), r in zip(plan, responses, strict=True):
        assert r.json()["candidate_id"] == cand
    return Counter(cand for _, cand in plan), responses


async def pg_votes(h: Harness) -> dict[str, int]:
    rows = await h.pg.fetch(
        "SELECT candidate_id, count(*) AS n FROM votes WHERE campaign_id = 't2026' AND valid"
        " GROUP BY 1")
    return {r["candidate_id"]: int(r["n"]) for r in rows}


async def pg_tallies(h: Harness) -> dict[str, int]:
    rows = await h.pg.fetch("SELECT candidate_id, votes FROM tallies WHERE campaign_id = 't2026'")
    return {r["candidate_id"]: int(r["votes"]) for r in rows}


async def backlog(h: Harness) -> int:
    pipe = h.redis.pipeline(transaction=False)
    for shard in range(h.settings.shards):
        pipe.xlen(keys.ledger("t2026", shard))
    return sum(int(n) for n in await pipe.execute())


async def assert_ledger_exact(h: Harness, expected: Counter[str], vote_ids: set[str]) -> None:
    assert await pg_votes(h) == dict(expected)
    assert await pg_tallies(h) == dict(expected)
    rows = await h.pg.fetch("SELECT voter_id, vote_id, shard, day FROM votes")
    assert len(rows) == sum(expected.values())
    assert {r["vote_id"] for r in rows} == vote_ids
    today = dt.datetime.now(ZoneInfo("Asia/Shanghai")).date()
    for r in rows:
        assert r["shard"] == keys.shard_of(r["voter_id"], h.settings.shards)
        assert abs((r["day"] - today).days) <= 1  # a test run may straddle midnight
    async with asyncio.timeout(30):
        drift = await reconcile.reconcile(h.redis, h.pg, "t2026", h.settings.shards)
    assert drift == []


async def test_thousand_concurrent_votes_are_exact(harness: Harness) -> None:
    h = harness
    await h.create_campaign(rules={"votes_per_day": 4})
    expected, responses = await cast_many(h, 250)
    assert sum(expected.values()) == 1000
    vote_ids = {r.json()["vote_id"] for r in responses}
    assert len(vote_ids) == 1000
    assert await redis_tallies(h) == dict(expected)
    assert await backlog(h) == 1000
    # before the flusher: every vote is an unflushed stream entry, and still no drift
    assert await reconcile.reconcile(h.redis, h.pg, "t2026", h.settings.shards) == []

    flusher = Flusher(h.redis, h.settings.database_url or "", h.settings.shards, name="f-one")
    try:
        assert await flusher.drain() == 1000
        assert flusher.stats.inserted == 1000
        await assert_ledger_exact(h, expected, vote_ids)
        assert await backlog(h) == 0, "committed entries are acknowledged and deleted"
        # draining again finds nothing and changes nothing
        assert await flusher.drain() == 0
    finally:
        await flusher.close()
    again = Flusher(h.redis, h.settings.database_url or "", h.settings.shards, name="f-two")
    try:
        assert await again.drain() == 0
    finally:
        await again.close()
    await assert_ledger_exact(h, expected, vote_ids)
    assert await redis_tallies(h) == dict(expected)


async def test_two_flushers_drain_one_backlog_concurrently(harness: Harness) -> None:
    h = harness
    await h.create_campaign(rules={"votes_per_day": 4})
    expected, responses = await cast_many(h, 100)
    vote_ids = {r.json()["vote_id"] for r in responses}
    url = h.settings.database_url or ""
    # small batches so that both flushers take many turns over the same streams
    one = Flusher(h.redis, url, h.settings.shards, name="f-one", batch=5)
    two = Flusher(h.redis, url, h.settings.shards, name="f-two", batch=5)
    try:
        assert await one.register() == 1
        assert await two.register() == 2, "each then takes half of the shards"
        async with asyncio.timeout(60):
            done = await asyncio.gather(one.drain(), two.drain())
        assert sum(done) == 400
        assert one.stats.flushed > 0 and two.stats.flushed > 0, "both took part"
        assert one.stats.inserted + two.stats.inserted == 400, "no entry inserted twice"
        await assert_ledger_exact(h, expected, vote_ids)
        assert await backlog(h) == 0
        assert list(await asyncio.gather(one.drain(), two.drain())) == [0, 0]
    finally:
        await one.close()
        await two.close()
    await assert_ledger_exact(h, expected, vote_ids)
    assert await redis_tallies(h) == dict(expected)


async def test_overload_keeps_the_invariant(harness: Harness, backend: Backend,
                                            pg_url: str) -> None:
    """With the real 1 s deadline, one worker swamped by 1,000 votes sheds some with 503.

    Acknowledged votes are all counted; a 503 vote may or may not have been counted
    (acknowledged ≤ counted ≤ acknowledged + unknown), and the ledger agrees with Redis.
    """
    h = harness
    await h.create_campaign(rules={"votes_per_day": 4})
    tokens = list(await asyncio.gather(*(h.voter() for _ in range(250))))
    strict = create_app(make_settings(backend, pg_url))  # default deadline (0.8 s)
    async with strict.router.lifespan_context(strict), client_for(strict) as client:
        plan = [(t, cand) for i, t in enumerate(tokens) for cand in choices(i)]
        responses = await asyncio.gather(*(
            client.post("/api/v1/campaigns/t2026/votes", json={"candidate_id": cand},
                        headers={"X-Voter-Token": t})
            for t, cand in plan))
    codes = Counter(r.status_code for r in responses)
    assert set(codes) <= {200, 503}, codes
    acked = [r.json()["vote_id"] for r in responses if r.status_code == 200]
    unknown = codes[503]
    for r in responses:
        if r.status_code == 503:
            assert r.json()["code"] == "unavailable"
    counted = sum((await redis_tallies(h)).values())
    assert len(acked) <= counted <= len(acked) + unknown, (len(acked), counted, unknown)

    flusher = Flusher(h.redis, h.settings.database_url or "", h.settings.shards)
    try:
        assert await flusher.drain() == counted
    finally:
        await flusher.close()
    in_pg = {r["vote_id"] for r in await h.pg.fetch("SELECT vote_id FROM votes")}
    assert set(acked) <= in_pg, "an acknowledged vote is missing from the ledger"
    assert len(in_pg) == counted
    assert await pg_votes(h) == await redis_tallies(h)
    assert await reconcile.reconcile(h.redis, h.pg, "t2026", h.settings.shards) == []


async def pause_redis(h: Harness, ms: int) -> None:
    """``CLIENT PAUSE``: Redis holds every command for ``ms`` (every primary of a cluster)."""
    if isinstance(h.redis, store.RedisCluster):
        await h.redis.client_pause(ms, target_nodes=store.RedisCluster.PRIMARIES)
    else:
        await h.redis.client_pause(ms)


async def test_votes_wait_for_a_connection_instead_of_failing(harness: Harness) -> None:
    """More vote batches in flight than the pool has connections (Redis slow for a moment,
    or the worker busy) must queue for a connection, not answer 503."""
    h = harness
    await h.create_campaign(rules={"votes_per_day": 4})
    tokens = list(await asyncio.gather(*(h.voter() for _ in range(151))))
    assert (await h.vote(tokens.pop(), "c002")).status_code == 200  # warms the tally cache
    await pause_redis(h, 1500)
    votes = []
    for token in tokens:  # one vote per event-loop turn: each its own pipeline
        votes.append(asyncio.create_task(h.vote(token, "c001")))
        await asyncio.sleep(0.003)
    responses = await asyncio.gather(*votes)
    codes = Counter(r.status_code for r in responses)
    assert codes == {200: 150}, (codes, [r.text for r in responses if r.status_code != 200][:2])
    assert await redis_tallies(h) == {"c001": 150, "c002": 1}
