"""Drift repair (issue 23 §5): a failover can leave the ledger holding votes Redis forgot
(their tally, quota and idempotency record gone). The flusher that holds the shard finds
the drift and puts them back while votes go on, once two measurements agree; the retry of
such a vote is then its first answer, not a second vote. Reported in ``/metrics`` and in
the console's health view."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.conftest import Harness, redis_tallies
from voting_service.ledger import health, reconcile, repair
from voting_service.ledger.flusher import Flusher
from voting_service.redis import keys
from voting_service.vote import voting
from voting_service.vote.registry import LiveCampaign
from voting_service.web import metrics
from voting_service.web.ops import api as ops_api

CID = "t2026"


async def forget(h: Harness, voter: str, vote_id: str, cand: str, day: str) -> None:
    """What a promoted stale replica lacks: the vote's tally, quota and idempotency record
    (the ledger row stays)."""
    shard = keys.shard_of(voter, h.settings.shards)
    quota = keys.quota(CID, shard, day, voter)
    await h.redis.hincrby(keys.tally(CID, shard), cand, -1)
    await h.redis.hincrby(quota, "_n", -1)
    await h.redis.hincrby(quota, cand, -1)
    await h.redis.hdel(quota, voting.record_field(vote_id))


async def test_drift_after_a_lost_write_is_repaired_from_the_ledger(harness: Harness) -> None:
    h = harness
    await h.create_campaign()
    svc: Any = h.app.state.services
    tokens = [await h.voter() for _ in range(4)]
    first = []
    for token in tokens:
        r = await h.vote(token, "c001")
        assert r.status_code == 200, r.text
        first.append(r.json()["vote_id"])
    flusher = Flusher(h.redis, h.settings.database_url or "", h.settings.shards, name="f1")
    try:
        assert await flusher.drain() == 4
        assert await flusher.repair() == [] and await flusher.repair() == [], "no drift"
        assert await repair.counts(h.redis) == {}

        token, vote_id = tokens[0], first[0]
        voter = svc.tokens.voter(token, CID)
        day = LiveCampaign(svc.registry.get(CID).c).day(time.time()).date
        await forget(h, voter, vote_id, "c001", day)
        r = await h.vote(tokens[1], "c002")  # votes go on: this one stays in the stream
        assert r.status_code == 200, r.text
        drift = await reconcile.reconcile(h.redis, h.pg, CID, h.settings.shards)
        assert [(d.candidate_id, d.redis, d.expected) for d in drift] == [("c001", 3, 4)]

        assert await flusher.repair() == [], "one measurement is not enough"
        done = await flusher.repair()
        assert [(d.moved, d.restored) for d in done] == [(1, 1)]
        assert await reconcile.reconcile(h.redis, h.pg, CID, h.settings.shards) == []
        assert await redis_tallies(h) == {"c001": 4, "c002": 1}
        shard = keys.shard_of(voter, h.settings.shards)
        quota = await h.redis.hgetall(keys.quota(CID, shard, day, voter))
        record = quota.pop(voting.record_field(vote_id))  # given back, with its answer
        assert quota == {"_n": "1", "c001": "1"}
        assert str(record).startswith("c001|4|"), record  # 5 votes a day, this one

        # the voter retries the vote the ledger holds: its first answer, not a second vote
        again = await h.vote(token, "c001", vote_id=vote_id)
        assert again.status_code == 200, again.text
        assert again.json()["vote_id"] == vote_id
        assert await flusher.drain() == 1  # c002's vote only
        assert await redis_tallies(h) == {"c001": 4, "c002": 1}
        assert await h.pg.fetchval(
            "SELECT count(*) FROM votes WHERE campaign_id = $1 AND vote_id = $2",
            CID, vote_id) == 1
        assert await flusher.repair() == [] and await flusher.repair() == []
    finally:
        await flusher.close()

    assert await repair.counts(h.redis) == {CID: {"found": 1, "tally": 1, "votes": 1}}
    snapshot = await health.measure(h.redis, None, [CID], h.settings.shards)
    assert snapshot.repaired(CID) == {"found": 1, "tally": 1, "votes": 1}
    text = metrics.exposition(lambda: snapshot).decode()
    assert f'voting_drift_found_total{{campaign="{CID}"}} 1.0' in text
    assert f'voting_drift_repaired_total{{campaign="{CID}",what="votes"}} 1.0' in text
    svc.health = snapshot
    view = ops_api.health_view(svc, CID)
    assert view is not None
    assert view["repairs"] == {"found": 1, "tally": 1, "votes": 1}



@pytest.mark.xfail(strict=True, reason=(
    "open (issue 23 §5): a retry that reaches Redis after it forgot the vote and before the "
    "repair gave its idempotency record back is counted again and ledgered twice — the "
    "ledger's key is the stream id, and the flusher does not look vote ids up (the open "
    "days have no index by voter); needs a vote-id check on flush or a strike-out of the "
    "later row by the repair"))
async def test_a_forgotten_vote_retried_before_the_repair_is_ledgered_once(
    harness: Harness,
) -> None:
    """The voter retries before any repair: Redis, having forgotten the vote, counts it
    again and appends a second entry with the same vote id. The ledger must still hold the
    vote once."""
    h = harness
    await h.create_campaign()
    svc: Any = h.app.state.services
    token = await h.voter()
    r = await h.vote(token, "c003")
    assert r.status_code == 200, r.text
    vote_id = r.json()["vote_id"]
    voter = svc.tokens.voter(token, CID)
    day = LiveCampaign(svc.registry.get(CID).c).day(time.time()).date
    flusher = Flusher(h.redis, h.settings.database_url or "", h.settings.shards, name="f2")
    try:
        assert await flusher.drain() == 1
        await forget(h, voter, vote_id, "c003", day)
        again = await h.vote(token, "c003", vote_id=vote_id)
        assert again.status_code == 200, again.text
        await flusher.drain()
        assert await h.pg.fetchval(
            "SELECT count(*) FROM votes WHERE campaign_id = $1 AND vote_id = $2",
            CID, vote_id) == 1, "the vote is in the ledger twice"
    finally:
        await flusher.close()
