"""Anonymous voter tokens cost the address what votes cost: the same caps (on keys of their
own), a proof of work when the campaign asks for one, and nothing while the address is
blocked. Exact counts under 200 concurrent requests, on a single node and a cluster."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from tests.conftest import ADMIN, Backend, Harness
from tests.integration.antifraud_support import (
    CID,
    NO_LIMITS,
    clients,
    issued,
    problem_code,
    proof_for,
    redis_totals,
    relaxed_settings,
    vote,
)
from voting_service.errors import TooManyVoters
from voting_service.fraud import challenge, minting
from voting_service.redis import keys
from voting_service.settings import Settings

VOTER = f"/api/v1/campaigns/{CID}/voter"
MINT_CHALLENGE = f"/api/v1/campaigns/{CID}/challenge?for=voter"
EASY = {**NO_LIMITS, "challenge": "on", "challenge_max_number": 200}


@pytest.fixture
def settings(backend: Backend, pg_url: str) -> Settings:
    return relaxed_settings(backend, pg_url)


def assert_too_many_voters(r: httpx.Response, most: int) -> None:
    assert (r.status_code, problem_code(r)) == (429, "rate_limited"), r.text
    assert r.json()["title"] == TooManyVoters.title != "Too many votes from this network"
    assert 1 <= int(r.headers["retry-after"]) <= most


async def test_an_address_mints_at_most_its_per_minute_cap(harness: Harness) -> None:
    # 4 a minute: one more only every 15 s, far longer than this burst takes
    await harness.create_campaign(rules={**NO_LIMITS, "ip_per_minute": 4})
    responses = await asyncio.gather(*(harness.client.post(VOTER) for _ in range(200)))
    minted = [r.json()["token"] for r in responses if r.status_code == 201]
    assert len(minted) == 4
    for r in responses:
        if r.status_code != 201:
            assert_too_many_voters(r, 60)
    # minting has keys of its own: the address still has its four votes a minute
    codes = [(await vote(harness.client, t, "c001")).status_code for t in minted]
    assert codes == [200] * 4
    r = await vote(harness.client, issued(harness), "c001")
    assert (r.status_code, problem_code(r)) == (429, "rate_limited")
    assert r.json()["title"] == "Too many votes from this network"
    assert await redis_totals(harness) == {"c001": 4}


async def test_day_caps_of_address_and_network_hold_for_minting(harness: Harness) -> None:
    await harness.create_campaign(rules={**NO_LIMITS, "ip_per_day": 3, "net_per_day": 7})
    responses = await asyncio.gather(*(harness.client.post(VOTER) for _ in range(200)))
    assert [r.status_code for r in responses].count(201) == 3
    for r in responses:
        if r.status_code != 201:
            assert_too_many_voters(r, 86400)
            assert int(r.headers["retry-after"]) > 60, "a day cap lasts until local midnight"
    async with clients(harness, [f"198.51.100.{i % 250 + 1}" for i in range(200)]) as farm:
        responses = await asyncio.gather(*(c.post(VOTER) for c in farm))
    assert [r.status_code for r in responses].count(201) == 7
    async with clients(harness, ["198.51.101.1"]) as (neighbour,):
        assert (await neighbour.post(VOTER)).status_code == 201, "the next /24 is not affected"
    live = harness.app.state.services.registry.get(CID)
    day = str(live.day(time.time()).expire_at)
    # the network level's one field: "<day>|<count>|<GCRA time>" (ip_limit.lua)
    field = await harness.redis.hget(keys.mint_limits(CID, "198.51.100.0/24"), "")
    assert isinstance(field, str) and field.split("|")[:2] == [day, "7"]
    assert not await harness.redis.exists(keys.limits(CID, "198.51.100.0/24"))


async def test_a_blocked_address_gets_no_token_and_no_minting_challenge(
    harness: Harness,
) -> None:
    await harness.create_campaign(rules=EASY)
    r = await harness.client.post("/api/v1/admin/blocklist", headers=ADMIN, json={
        "kind": "ip", "value": "203.0.113.0/24", "reason": "刷票", "campaign_id": CID})
    assert r.status_code == 201, r.text
    for r in (await harness.client.post(VOTER), await harness.client.get(MINT_CHALLENGE)):
        assert (r.status_code, problem_code(r)) == (403, "blocked")
    async with clients(harness, ["198.51.100.1"]) as (elsewhere,):
        ch = await elsewhere.get(MINT_CHALLENGE)
        r = await elsewhere.post(VOTER, json={"proof": challenge.solve(ch.json())})
        assert r.status_code == 201, r.text


async def test_minting_needs_a_proof_issued_to_the_address_and_spends_it(
    harness: Harness,
) -> None:
    await harness.create_campaign(rules=EASY)
    for body in (None, {}, {"proof": None}, {"proof": "not even base64!"}):
        r = await harness.client.post(VOTER, json=body)
        assert (r.status_code, problem_code(r)) == (403, "challenge_failed"), body
    r = await harness.client.post(VOTER, json={"proof": "x", "extra": 1})
    assert (r.status_code, problem_code(r)) == (400, "invalid_request")

    ch = await harness.client.get(MINT_CHALLENGE)  # no credential needed: there is none yet
    assert ch.status_code == 200 and ch.headers["cache-control"] == "no-store"
    assert ch.json()["maxnumber"] == 200
    proof = challenge.solve(ch.json())
    r = await harness.client.post(VOTER, json={"proof": proof})
    assert r.status_code == 201, r.text
    token = r.json()["token"]
    r = await harness.client.post(VOTER, json={"proof": proof})
    assert (r.status_code, problem_code(r)) == (403, "challenge_failed")
    assert "already used" in r.json()["detail"]

    # bound to the address: another address cannot spend it, and the kinds do not mix
    async with clients(harness, ["198.51.100.1"]) as (other,):
        stolen = challenge.solve((await harness.client.get(MINT_CHALLENGE)).json())
        r = await other.post(VOTER, json={"proof": stolen})
        assert (r.status_code, problem_code(r)) == (403, "challenge_failed")
    r = await harness.client.post(VOTER, json={"proof": await proof_for(harness.client, token)})
    assert (r.status_code, problem_code(r)) == (403, "challenge_failed"), "a vote's proof"
    minted = challenge.solve((await harness.client.get(MINT_CHALLENGE)).json())
    r = await vote(harness.client, token, "c001", proof=minted)
    assert (r.status_code, problem_code(r)) == (403, "challenge_failed"), "a minting proof"
    r = await vote(harness.client, token, "c001", proof=await proof_for(harness.client, token))
    assert r.status_code == 200, r.text


async def test_200_concurrent_mints_with_one_proof_make_one_token(harness: Harness) -> None:
    await harness.create_campaign(rules=EASY)
    proof = challenge.solve((await harness.client.get(MINT_CHALLENGE)).json())
    responses = await asyncio.gather(*(
        harness.client.post(VOTER, json={"proof": proof}) for _ in range(200)))
    assert [r.status_code for r in responses].count(201) == 1
    assert {problem_code(r) for r in responses if r.status_code != 201} == {"challenge_failed"}


async def test_adaptive_minting_challenges_get_harder_as_the_address_mints(
    harness: Harness,
) -> None:
    await harness.create_campaign(rules={
        **NO_LIMITS, "challenge": "adaptive", "challenge_max_number": 100, "ip_per_day": 10,
        "soft_limit_percent": 50})
    early = challenge.solve((await harness.client.get(MINT_CHALLENGE)).json())
    levels = []
    for _ in range(7):
        issued_now = (await harness.client.get(MINT_CHALLENGE)).json()
        levels.append((issued_now["maxnumber"] // 100).bit_length() - 1)
        r = await harness.client.post(VOTER, json={"proof": challenge.solve(issued_now)})
        assert r.status_code == 201, r.text
    assert levels == sorted(levels) and levels[0] == 0 and levels[-1] >= 3, levels
    r = await harness.client.post(VOTER, json={"proof": early})
    assert (r.status_code, problem_code(r)) == (403, "challenge_failed")
    assert "busy" in r.json()["detail"]
    # minting pressure is not vote pressure: a vote's challenge is still the easy one
    assert minting.subject("203.0.113.7") == "mint:203.0.113.7/32"
    token = issued(harness)
    ch = await harness.client.get(f"/api/v1/campaigns/{CID}/challenge",
                                  headers={"X-Voter-Token": token})
    assert ch.json()["maxnumber"] == 100
    r = await vote(harness.client, token, "c001", proof=challenge.solve(ch.json()))
    assert r.status_code == 200, r.text
