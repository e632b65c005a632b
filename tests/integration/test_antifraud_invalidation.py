"""Striking out votes: append-only, idempotent, flushed and unflushed votes alike, and the
ledger invariant (Redis = valid PostgreSQL rows + unflushed entries) kept throughout."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from typing import Any

import pytest

from tests.conftest import ADMIN, OPS, Backend, Harness
from tests.integration.antifraud_support import (
    CID,
    NO_LIMITS,
    clients,
    drain,
    eventually,
    new_voter,
    no_drift,
    problem_code,
    public_tallies,
    redis_totals,
    relaxed_settings,
    vote,
    voter_id,
)
from voting_service.ledger import reconcile
from voting_service.ledger.flusher import Flusher
from voting_service.redis import keys
from voting_service.settings import Settings

INVALIDATIONS = f"/api/v1/admin/campaigns/{CID}/invalidations"
RESULTS = f"/api/v1/admin/campaigns/{CID}/results"


@pytest.fixture
def settings(backend: Backend, pg_url: str) -> Settings:
    return relaxed_settings(backend, pg_url)


@pytest.fixture
def h(harness: Harness) -> Harness:
    return harness


async def invalidate(h: Harness, **criteria: Any) -> dict[str, Any]:
    r = await h.client.post(INVALIDATIONS, json={"reason": "刷票", **criteria}, headers=ADMIN)
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


async def cast_from(h: Harness, ip: str, candidate: str, n: int, **body: Any) -> list[str]:
    """``n`` new voters at ``ip`` vote for ``candidate``; their voter ids."""
    async with clients(h, [ip]) as (client,):
        tokens = [await new_voter(client) for _ in range(n)]
        for token in tokens:
            r = await vote(client, token, candidate, **body)
            assert r.status_code == 200, r.text
    return [voter_id(h, t) for t in tokens]


async def pg_valid(h: Harness) -> dict[str, int]:
    rows = await h.pg.fetch("SELECT candidate_id, count(*) AS n FROM votes"
                            " WHERE campaign_id = $1 AND valid GROUP BY 1", CID)
    return {r["candidate_id"]: int(r["n"]) for r in rows}


async def pg_tallies(h: Harness) -> dict[str, int]:
    rows = await h.pg.fetch("SELECT candidate_id, votes FROM tallies WHERE campaign_id = $1", CID)
    return {r["candidate_id"]: int(r["votes"]) for r in rows if r["votes"]}


async def results(h: Harness) -> dict[str, int]:
    r = await h.client.get(RESULTS, headers=OPS)
    assert r.status_code == 200, r.text
    return {c["candidate_id"]: c["votes"] for c in r.json()["candidates"] if c["votes"]}


async def test_invalidation_strikes_flushed_and_unflushed_votes_once(h: Harness) -> None:
    await h.create_campaign(rules=NO_LIMITS)
    await cast_from(h, "203.0.113.7", "c001", 4)        # ordinary
    await cast_from(h, "198.51.100.5", "c001", 5)       # brushed, then flushed
    assert await drain(h) == 9
    await cast_from(h, "198.51.100.6", "c001", 5)       # brushed, still in Redis
    await cast_from(h, "203.0.113.8", "c002", 3)        # ordinary, still in Redis
    assert await redis_totals(h) == {"c001": 14, "c002": 3}

    done = await invalidate(h, ip="198.51.100.0/24")
    assert done["votes_invalidated"] == 10
    assert done["by_candidate"] == {"c001": 10}
    assert done["tallies_updated"] is True
    assert await redis_totals(h) == {"c001": 4, "c002": 3}
    await no_drift(h)  # before the flusher has caught up …

    async def public_dropped() -> bool:
        return await public_tallies(h.client) == {"c001": 4, "c002": 3}

    assert await eventually(public_dropped, within=5.0)
    # the invalidation flushed every entry up to its cutoff, the 5 brushed ones as invalid
    assert sum([await h.redis.xlen(keys.ledger(CID, s)) for s in range(h.settings.shards)]) \
        == 0, "and trimmed them"
    assert await drain(h) == 0
    await no_drift(h)  # … and after
    assert await pg_valid(h) == {"c001": 4, "c002": 3}
    assert await pg_tallies(h) == {"c001": 4, "c002": 3}
    assert await results(h) == {"c001": 4, "c002": 3}
    rows = await h.pg.fetch("SELECT count(*) AS n, min(invalidation_id) AS i, "
                            "max(invalidation_id) AS j FROM votes WHERE NOT valid")
    assert (rows[0]["n"], rows[0]["i"], rows[0]["j"]) == (10, done["id"], done["id"])
    assert await h.pg.fetchval("SELECT count(*) FROM votes") == 17, "nothing is deleted"

    again = await invalidate(h, ip="198.51.100.0/24")
    assert again["votes_invalidated"] == 0 and again["id"] != done["id"]
    assert await redis_totals(h) == {"c001": 4, "c002": 3}
    await no_drift(h)

    listed = (await h.client.get(INVALIDATIONS, headers=OPS)).json()
    assert [(x["id"], x["votes_invalidated"]) for x in listed] == [
        (again["id"], 0), (done["id"], 10)]
    assert all(x["actor"].startswith("admin:") and x["reason"] == "刷票" for x in listed)
    assert listed[1]["criteria"]["ip"] == "198.51.100.0/24"
    audit = (await h.client.get("/api/v1/admin/audit", headers=ADMIN)).json()
    assert [a["request"]["votes_invalidated"] for a in audit
            if a["action"] == "invalidation.create"] == [0, 10]


async def test_criteria_voters_channel_candidate_and_time(h: Harness) -> None:
    await h.create_campaign(rules=NO_LIMITS)
    r = await h.client.post(f"/api/v1/admin/campaigns/{CID}/channels",
                            json={"id": "xinhua", "name": "新华"}, headers=ADMIN)
    assert r.status_code == 201, r.text
    named = await cast_from(h, "192.0.2.1", "c001", 3)
    await cast_from(h, "192.0.2.2", "c002", 2, channel="xinhua")
    await cast_from(h, "192.0.2.3", "c003", 2)
    await drain(h)
    before = dt.datetime.now(dt.UTC)
    await cast_from(h, "192.0.2.4", "c004", 2)

    assert (await invalidate(h, voter_ids=named[:2]))["votes_invalidated"] == 2
    assert (await invalidate(h, channel="xinhua"))["votes_invalidated"] == 2
    assert (await invalidate(h, candidate_id="c004", until=before.isoformat()))[
        "votes_invalidated"] == 0
    assert (await invalidate(h, candidate_id="c004", since=before.isoformat()))[
        "votes_invalidated"] == 2
    assert await redis_totals(h) == {"c001": 1, "c003": 2}
    await drain(h)
    await no_drift(h)
    assert await results(h) == {"c001": 1, "c003": 2}
    by_channel = (await h.client.get(RESULTS, headers=OPS)).json()["breakdowns"]["channel"]
    assert by_channel == {"direct": 3}


async def test_200_concurrent_identical_invalidations_strike_each_vote_once(h: Harness) -> None:
    await h.create_campaign(rules=NO_LIMITS)
    await cast_from(h, "203.0.113.7", "c005", 6)
    await cast_from(h, "198.51.100.40", "c005", 15)
    await drain(h)
    await cast_from(h, "198.51.100.41", "c005", 15)
    responses = await asyncio.gather(*(
        h.client.post(INVALIDATIONS, json={"reason": "bot farm", "ip": "198.51.100.0/24"},
                      headers=ADMIN) for _ in range(200)))
    assert [r.status_code for r in responses] == [201] * 200
    assert sum(r.json()["votes_invalidated"] for r in responses) == 30
    assert len({r.json()["id"] for r in responses}) == 200
    assert await redis_totals(h) == {"c005": 6}
    await no_drift(h)
    await drain(h)
    await no_drift(h)
    assert await pg_tallies(h) == {"c005": 6}


async def test_the_redis_step_is_finished_later_and_never_twice(h: Harness) -> None:
    """A crash between PostgreSQL's commit and the Redis tallies, replayed both ways."""
    await h.create_campaign(rules=NO_LIMITS)
    await cast_from(h, "198.51.100.1", "c006", 4)
    await cast_from(h, "203.0.113.7", "c006", 2)
    await drain(h)
    done = await invalidate(h, ip="198.51.100.1")
    assert await redis_totals(h) == {"c006": 2}
    per_shard = json.loads(await h.pg.fetchval(
        "SELECT per_shard FROM invalidations WHERE id = $1", done["id"]))

    # crashed after Redis but before PostgreSQL heard of it: replaying changes nothing
    await h.pg.execute("UPDATE invalidations SET redis_applied_at = NULL")
    listed = (await h.client.get(INVALIDATIONS, headers=OPS)).json()
    assert listed[0]["tallies_updated"] is True
    assert await redis_totals(h) == {"c006": 2}

    # crashed before Redis: the votes are back in Redis until the next request finishes it
    for shard, counts in per_shard.items():
        await h.redis.delete(keys.invalidation_applied(CID, int(shard), done["id"]))
        for cand, n in counts.items():
            await h.redis.hincrby(keys.tally(CID, int(shard)), cand, n)
    await h.pg.execute("UPDATE invalidations SET redis_applied_at = NULL")
    assert await redis_totals(h) == {"c006": 6}
    assert await reconcile_drift(h) == 4
    (await h.client.get(INVALIDATIONS, headers=OPS)).raise_for_status()
    assert await redis_totals(h) == {"c006": 2}
    await no_drift(h)


async def reconcile_drift(h: Harness) -> int:
    drift = await reconcile.reconcile(h.redis, h.pg, CID, h.settings.shards)
    return sum(d.redis - d.expected for d in drift)


async def test_bad_invalidations_are_refused(h: Harness) -> None:
    await h.create_campaign(rules=NO_LIMITS)
    bad: list[dict[str, Any]] = [
        {}, {"reason": "x"}, {"reason": "", "ip": "192.0.2.0/24"},
        {"reason": "x", "ip": "not-a-network"}, {"reason": "x", "voter_ids": ["nope"]},
        {"reason": "x", "candidate_id": "c001", "since": "2026-07-01T00:00:00"},
        {"reason": "x", "candidate_id": "c001", "since": "2026-07-02T00:00:00+08:00",
         "until": "2026-07-01T00:00:00+08:00"},
        {"reason": "x", "ip": "192.0.2.0/24", "delete": True},
    ]
    for body in bad:
        r = await h.client.post(INVALIDATIONS, json=body, headers=ADMIN)
        assert (r.status_code, problem_code(r)) == (400, "invalid_request"), body
    r = await h.client.post(INVALIDATIONS, json={"reason": "x", "ip": "192.0.2.0/24"},
                            headers=OPS)
    assert (r.status_code, problem_code(r)) == (403, "forbidden")
    r = await h.client.post("/api/v1/admin/campaigns/nope/invalidations",
                            json={"reason": "x", "ip": "192.0.2.0/24"}, headers=ADMIN)
    assert (r.status_code, problem_code(r)) == (404, "campaign_not_found")


async def test_invalidations_while_votes_flow_and_the_flusher_runs(h: Harness) -> None:
    """No pause needed: votes, the flusher and invalidations interleave, each vote is struck
    once, and Redis, PostgreSQL and the tallies table agree at the end."""
    await h.create_campaign(rules={**NO_LIMITS, "votes_per_day": 12})
    stop = asyncio.Event()
    flusher = Flusher(h.redis, h.settings.database_url or "", h.settings.shards)
    running = asyncio.create_task(flusher.run(stop))
    struck: list[int] = []
    try:
        async with clients(h, ["198.51.100.9", "203.0.113.50"]) as (bot, person):
            bots = [await new_voter(bot) for _ in range(30)]
            people = [await new_voter(person) for _ in range(10)]

            async def cast(client: Any, tokens: list[str]) -> None:
                for token in tokens:
                    for cand in ("c001", "c002", "c003"):
                        r = await vote(client, token, cand)
                        assert r.status_code == 200, r.text

            async def strike() -> None:
                for _ in range(8):
                    struck.append((await invalidate(h, ip="198.51.100.0/24"))[
                        "votes_invalidated"])
                    await asyncio.sleep(0.01)

            await asyncio.gather(cast(bot, bots), cast(person, people), strike())
        struck.append((await invalidate(h, ip="198.51.100.0/24"))["votes_invalidated"])
    finally:
        stop.set()
        await running
        await flusher.close()
    await drain(h)
    assert sum(struck) == 90
    people_counts = {"c001": 10, "c002": 10, "c003": 10}
    assert await redis_totals(h) == people_counts
    assert await pg_valid(h) == people_counts
    assert await pg_tallies(h) == people_counts
    assert await h.pg.fetchval("SELECT count(*) FROM votes WHERE NOT valid") == 90
    await no_drift(h)
