"""The vote path through HTTP against real Redis (single node and cluster) and PostgreSQL."""

from __future__ import annotations

import asyncio

from tests.conftest import Harness
from voting_service.ledger.flusher import Flusher


async def test_vote_counts_and_flushes(harness: Harness) -> None:
    await harness.create_campaign()
    token = await harness.voter()
    r = await harness.vote(token, "c001")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["candidate_id"] == "c001"
    assert body["votes_left_today"] == 4
    assert body["candidate_votes"] == 1
    tallies = (await harness.client.get("/api/v1/campaigns/t2026/tallies")).json()
    assert tallies["total"] == 1
    assert {c["candidate_id"]: c["votes"] for c in tallies["candidates"]}["c001"] == 1

    flusher = Flusher(harness.redis, harness.settings.database_url or "", harness.settings.shards)
    try:
        assert await flusher.drain() == 1
    finally:
        await flusher.close()
    rows = await harness.pg.fetch("SELECT vote_id, candidate_id FROM votes")
    assert [(r["vote_id"], r["candidate_id"]) for r in rows] == [(body["vote_id"], "c001")]
    results = (await harness.client.get(
        "/api/v1/admin/campaigns/t2026/results",
        headers={"Authorization": "Bearer ops-token-for-tests-0123456789ab"},
    )).json()
    assert results["total"] == 1


async def test_hundred_concurrent_votes_of_one_voter_count_once(harness: Harness) -> None:
    await harness.create_campaign()
    token = await harness.voter()
    responses = await asyncio.gather(*(harness.vote(token, "c002") for _ in range(100)))
    codes = sorted(r.status_code for r in responses)
    assert codes.count(200) == 1
    assert codes.count(409) == 99
    assert {r.json()["code"] for r in responses if r.status_code == 409} == {"already_voted"}
