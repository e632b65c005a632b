"""The blocklist through HTTP: voters and networks, scope, expiry, removal, audit, workers."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest

from tests.conftest import ADMIN, OPS, Backend, Harness, client_for
from tests.integration.antifraud_support import (
    NO_LIMITS,
    VOTES,
    clients,
    eventually,
    issued,
    new_voter,
    problem_code,
    redis_totals,
    relaxed_settings,
    vote,
    voter_id,
)
from voting_service.app import create_app
from voting_service.redis import keys, store
from voting_service.settings import Settings

BLOCKLIST = "/api/v1/admin/blocklist"


@pytest.fixture
def settings(backend: Backend, pg_url: str) -> Settings:
    return relaxed_settings(backend, pg_url)


@pytest.fixture
def h(harness: Harness) -> Harness:
    return harness


async def block(h: Harness, **body: Any) -> dict[str, Any]:
    r = await h.client.post(BLOCKLIST, json={"reason": "刷票", **body}, headers=ADMIN)
    assert r.status_code == 201, r.text
    entry: dict[str, Any] = r.json()
    return entry


async def test_a_blocked_voter_is_refused_at_once_and_can_be_unblocked(h: Harness) -> None:
    await h.create_campaign(rules=NO_LIMITS)
    token = await h.voter()
    assert (await vote(h.client, token, "c001")).status_code == 200
    entry = await block(h, kind="voter", value=voter_id(h, token), campaign_id="t2026")
    assert entry["kind"] == "voter" and entry["created_by"].startswith("admin:")
    r = await vote(h.client, token, "c002")
    assert (r.status_code, problem_code(r)) == (403, "blocked")
    other = await h.voter()
    assert (await vote(h.client, other, "c002")).status_code == 200

    listed = (await h.client.get(BLOCKLIST, headers=OPS)).json()
    assert [e["id"] for e in listed] == [entry["id"]]
    assert listed[0]["reason"] == "刷票"
    r = await h.client.delete(f"{BLOCKLIST}/{entry['id']}", headers=ADMIN)
    assert r.status_code == 200, r.text
    assert r.json()["removed_by"].startswith("admin:")
    assert (await vote(h.client, token, "c002")).status_code == 200
    assert (await h.client.get(BLOCKLIST, headers=OPS)).json() == []
    everything = (await h.client.get(f"{BLOCKLIST}?all=1", headers=OPS)).json()
    assert [e["id"] for e in everything] == [entry["id"]], "removal is stamped, not deleted"
    r = await h.client.delete(f"{BLOCKLIST}/{entry['id']}", headers=ADMIN)
    assert (r.status_code, problem_code(r)) == (404, "not_found")

    audit = (await h.client.get("/api/v1/admin/audit", headers=ADMIN)).json()
    actions = [a["action"] for a in audit]
    assert "blocklist.add" in actions and "blocklist.remove" in actions
    added = next(a for a in audit if a["action"] == "blocklist.add")
    assert added["actor"].startswith("admin:") and added["request"]["reason"] == "刷票"


async def test_network_blocks_cover_their_cidr_only(h: Harness) -> None:
    await h.create_campaign(rules=NO_LIMITS)
    await h.create_campaign(id="other", rules=NO_LIMITS)
    await block(h, kind="ip", value="198.51.100.77/24", campaign_id="t2026")
    await block(h, kind="ip", value="2001:db8:5::/48")
    async with clients(h, ["198.51.100.9", "198.51.101.9", "2001:db8:5:1::1"]) as (
            inside, outside, v6):
        r = await vote(inside, issued(h), "c001")
        assert (r.status_code, problem_code(r)) == (403, "blocked")
        r = await inside.post("/api/v1/campaigns/t2026/voter")
        assert (r.status_code, problem_code(r)) == (403, "blocked"), "no new tokens either"
        assert (await vote(outside, await new_voter(outside), "c001")).status_code == 200
        r = await vote(inside, await new_voter(inside, "other"), "c001", cid="other")
        assert r.status_code == 200, "the /24 block was for t2026 only"
        for cid in ("t2026", "other"):
            r = await vote(v6, issued(h, cid), "c001", cid=cid)
            assert (r.status_code, problem_code(r)) == (403, "blocked")
    assert (await redis_totals(h)) == {"c001": 1}


async def test_bad_blocks_are_refused(h: Harness) -> None:
    await h.create_campaign(rules=NO_LIMITS)
    past = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)).isoformat()
    bad: list[dict[str, Any]] = [
        {"kind": "ip", "value": "0.0.0.0/0"},
        {"kind": "ip", "value": "not-an-ip"},
        {"kind": "voter", "value": "13800138000"},
        {"kind": "ip", "value": "192.0.2.1", "expires_at": past},
        {"kind": "ip", "value": "192.0.2.1", "campaign_id": "nope"},
        {"kind": "ip", "value": "192.0.2.1", "reason": ""},
        {"kind": "ip", "value": "192.0.2.1", "color": "red"},
    ]
    for body in bad:
        r = await h.client.post(BLOCKLIST, json={"reason": "x", **body}, headers=ADMIN)
        assert (r.status_code, problem_code(r)) == (400, "invalid_request"), body
    r = await h.client.post(BLOCKLIST, json={"kind": "ip", "value": "192.0.2.1", "reason": "x"},
                            headers=OPS)
    assert (r.status_code, problem_code(r)) == (403, "forbidden")
    r = await h.client.get(BLOCKLIST)
    assert (r.status_code, problem_code(r)) == (401, "unauthorized")
    for entry in ("abc", "99999999999999999999", "-1"):
        r = await h.client.delete(f"{BLOCKLIST}/{entry}", headers=ADMIN)
        assert (r.status_code, problem_code(r)) == (404, "not_found"), entry
    r = await h.client.get(f"{BLOCKLIST}?kind=cidr", headers=OPS)
    assert (r.status_code, problem_code(r)) == (400, "invalid_request")


async def test_an_expiring_block_is_active_until_it_ends(h: Harness) -> None:
    await h.create_campaign(rules=NO_LIMITS)
    token = await h.voter()
    until = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    await block(h, kind="voter", value=voter_id(h, token), expires_at=until.isoformat())
    await block(h, kind="ip", value="203.0.113.0/24", expires_at=until.isoformat())
    r = await vote(h.client, token, "c001")
    assert (r.status_code, problem_code(r)) == (403, "blocked")
    voter = voter_id(h, token)
    key = keys.blocked_voters("t2026", keys.shard_of(voter, h.settings.shards))
    ends = await h.redis.hget(key, voter)
    assert abs(int(str(ends)) - until.timestamp()) <= 2, "cast_vote.lua lifts it at this time"


async def test_a_block_for_every_campaign_reaches_campaigns_made_later(h: Harness) -> None:
    await h.create_campaign(rules=NO_LIMITS)
    partner_voter = "0123456789abcdef0123456789abcdef"
    await block(h, kind="voter", value=partner_voter)
    await h.create_campaign(id="next", rules=NO_LIMITS)
    shard = keys.shard_of(partner_voter, h.settings.shards)
    for cid in ("t2026", "next"):
        found = await h.redis.hget(keys.blocked_voters(cid, shard), partner_voter)
        assert found == "0", cid


async def test_200_concurrent_votes_of_a_blocked_voter_and_network_all_fail(h: Harness) -> None:
    await h.create_campaign(rules={**NO_LIMITS, "votes_per_day": 12})
    token = await h.voter()
    await block(h, kind="voter", value=voter_id(h, token))
    responses = await asyncio.gather(*(
        vote(h.client, token, f"c{i % 12 + 1:03d}") for i in range(200)))
    assert [(r.status_code, problem_code(r)) for r in responses] == [(403, "blocked")] * 200
    async with clients(h, ["192.0.2.50"]) as (client,):
        voters = [await new_voter(client) for _ in range(20)]
        await block(h, kind="ip", value="192.0.2.0/26")
        responses = await asyncio.gather(*(
            vote(client, voters[i % 20], f"c{i % 12 + 1:03d}") for i in range(200)))
    assert [(r.status_code, problem_code(r)) for r in responses] == [(403, "blocked")] * 200
    assert await redis_totals(h) == {}


async def test_spoofed_forwarded_for_neither_evades_nor_causes_a_block(h: Harness) -> None:
    await h.create_campaign(rules=NO_LIMITS)
    token = await h.voter()
    await block(h, kind="ip", value="203.0.113.7")  # the test client's real address
    r = await h.client.post(VOTES, json={"candidate_id": "c001"}, headers={
        "X-Voter-Token": token, "X-Forwarded-For": "192.0.2.1"})
    assert (r.status_code, problem_code(r)) == (403, "blocked")
    await block(h, kind="ip", value="192.0.2.0/24")
    async with clients(h, ["198.51.100.3"]) as (clean,):
        r = await clean.post(VOTES, json={"candidate_id": "c001"}, headers={
            "X-Voter-Token": await new_voter(clean), "X-Forwarded-For": "192.0.2.1"})
        assert r.status_code == 200, r.text


async def test_a_network_block_reaches_every_worker(
    h: Harness, backend: Backend, pg_url: str
) -> None:
    """A second worker (its own process state, same Redis) sees the block within its poll."""
    await h.create_campaign(rules=NO_LIMITS)
    second = create_app(relaxed_settings(backend, pg_url))
    async with second.router.lifespan_context(second), client_for(second) as client:
        tokens = [await new_voter(client) for _ in range(3)]
        assert (await vote(client, tokens[0], "c001")).status_code == 200
        await block(h, kind="ip", value="203.0.113.0/24")

        async def refused() -> bool:
            r = await vote(client, tokens[1], "c002")
            return r.status_code == 403 and problem_code(r) == "blocked"

        assert await eventually(refused), "the second worker never saw the block"
        # the voter hash needs no polling at all: the next vote after the block is refused
        voter_block = await block(h, kind="voter", value=voter_id(h, tokens[2]))
        assert voter_block["value"] == voter_id(h, tokens[2])
        listed = [e for e in (await h.client.get(BLOCKLIST, headers=ADMIN)).json()
                  if e["kind"] == "ip"]
        await h.client.delete(f"{BLOCKLIST}/{listed[0]['id']}", headers=ADMIN)

        async def allowed_again() -> bool:
            r = await vote(client, tokens[1], "c003")
            return r.status_code == 200

        assert await eventually(allowed_again)
        r = await vote(client, tokens[2], "c001")
        assert (r.status_code, problem_code(r)) == (403, "blocked")


async def test_blocks_come_back_when_redis_was_emptied(
    h: Harness, backend: Backend, pg_url: str
) -> None:
    await h.create_campaign(rules=NO_LIMITS)
    token = await h.voter()
    await block(h, kind="voter", value=voter_id(h, token))
    await block(h, kind="ip", value="198.51.100.0/24")
    if isinstance(h.redis, store.RedisCluster):
        await h.redis.flushall(target_nodes=store.RedisCluster.PRIMARIES)
    else:
        await h.redis.flushall()
    fresh = create_app(relaxed_settings(backend, pg_url))
    async with fresh.router.lifespan_context(fresh), client_for(fresh) as client:
        r = await vote(client, token, "c001")
        assert (r.status_code, problem_code(r)) == (403, "blocked")
        async with client_for(fresh, ip="198.51.100.5") as farm:
            r = await vote(farm, issued(h), "c001")
            assert (r.status_code, problem_code(r)) == (403, "blocked")
        assert (await vote(client, await new_voter(client), "c001")).status_code == 200
