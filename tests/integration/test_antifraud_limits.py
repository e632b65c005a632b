"""Network limits (address and network, per minute and per day) and the voter's own quota,
through HTTP, with exact counts under 200 concurrent requests."""

from __future__ import annotations

import asyncio
import re

import httpx
import pytest

from tests.conftest import Backend, Harness, commands_run, reset_stats
from tests.integration.antifraud_support import (
    NO_LIMITS,
    VOTES,
    clients,
    drain,
    issued,
    new_voter,
    problem_code,
    redis_totals,
    relaxed_settings,
    vote,
)
from voting_service.settings import Settings

RATE_LIMIT = re.compile(r'^"daily";r=(\d+);t=(\d+)$')


@pytest.fixture
def settings(backend: Backend, pg_url: str) -> Settings:
    return relaxed_settings(backend, pg_url)


def tokens(h: Harness, n: int) -> list[str]:
    """Tokens minted without the minting limits: one address casts more votes here than it
    may mint tokens (minting has its own tests, test_minting)."""
    return [issued(h) for _ in range(n)]


def assert_rate_limited(r: httpx.Response, most: int) -> None:
    assert (r.status_code, problem_code(r)) == (429, "rate_limited")
    assert 1 <= int(r.headers["retry-after"]) <= most
    # anti-bot limits are never described to the client
    assert "ratelimit" not in {k.lower() for k in r.headers}
    assert "ratelimit-policy" not in {k.lower() for k in r.headers}


async def test_address_day_cap_is_exact_under_200_concurrent_votes(harness: Harness) -> None:
    await harness.create_campaign(rules={**NO_LIMITS, "ip_per_day": 37})
    voters = tokens(harness, 200)
    responses = await asyncio.gather(*(vote(harness.client, t, "c001") for t in voters))
    ok = [r for r in responses if r.status_code == 200]
    assert len(ok) == 37
    for r in responses:
        if r.status_code != 200:
            assert_rate_limited(r, 86400)
            assert int(r.headers["retry-after"]) > 60, "a day cap lasts until local midnight"
    assert await redis_totals(harness) == {"c001": 37}


async def test_address_minute_cap_is_exact_under_200_concurrent_votes(harness: Harness) -> None:
    # 4 a minute: one more only every 15 s, far longer than this burst takes
    await harness.create_campaign(rules={**NO_LIMITS, "ip_per_minute": 4})
    voters = tokens(harness, 200)
    responses = await asyncio.gather(*(vote(harness.client, t, "c002") for t in voters))
    assert [r.status_code for r in responses].count(200) == 4
    for r in responses:
        if r.status_code != 200:
            assert_rate_limited(r, 60)
    assert await redis_totals(harness) == {"c002": 4}


async def test_a_limited_vote_reads_no_clock_in_redis(
    harness: Harness, backend: Backend,
) -> None:
    """The limits run on the web tier's clock, which names the day already: its time goes
    with the call, on a single node (one script) and in a Cluster (two) alike, and no
    script calls TIME (``cast_vote.lua`` would, on its own, only for a blocked voter)."""
    await harness.create_campaign(rules={**NO_LIMITS, "ip_per_minute": 30, "ip_per_day": 100})
    voter = issued(harness)
    await reset_stats(harness.redis)
    r = await vote(harness.client, voter, "c003")
    assert r.status_code == 200, r.text
    calls = await commands_run(harness.redis)
    assert "time" not in calls and calls.get("hmget") == 2, calls  # the limits ran
    assert await redis_totals(harness) == {"c003": 1}


async def test_a_vote_runs_the_commands_its_scripts_name_and_no_more(
    harness: Harness, backend: Backend,
) -> None:
    """A voter's second vote of the day from the same address (its hashes exist: no expiry
    to set) runs eight commands, four of them writes: each write is one more command in the
    AOF's MULTI/EXEC and to every replica. Both limit levels are one hash (one HMGET, one
    HSET) where two strings a level took five commands; the idempotency record is a field
    of the quota hash (read by its HMGET, written by its HSET) where a key of its own took
    a GET and a SET; no TIME (the web tier's clock)."""
    await harness.create_campaign(rules={**NO_LIMITS, "ip_per_minute": 30, "ip_per_day": 100,
                                         "net_per_minute": 300, "net_per_day": 1000})
    voter = issued(harness)
    assert (await vote(harness.client, voter, "c001")).status_code == 200
    await reset_stats(harness.redis)
    r = await vote(harness.client, voter, "c002")
    assert r.status_code == 200, r.text
    calls = await commands_run(harness.redis)
    scripts_run = {k: v for k, v in calls.items() if k not in ("evalsha", "eval")}
    assert scripts_run == {
        "hmget": 2, "hset": 2,  # the limits' hash; the voter's quota and the vote's record
        "hget": 2,  # yesterday's quota hash (a retry after midnight); the blocklist
        "hincrby": 1, "xadd": 1,  # tally, ledger
    }, calls


async def test_network_cap_is_exact_across_200_addresses_of_one_slash_24(
    harness: Harness,
) -> None:
    await harness.create_campaign(rules={**NO_LIMITS, "ip_per_day": 5, "net_per_day": 50})
    async with clients(harness, [f"198.51.100.{i % 250 + 1}" for i in range(200)]) as farm:
        voters = tokens(harness, len(farm))
        responses = await asyncio.gather(*(
            vote(c, t, "c003") for c, t in zip(farm, voters, strict=True)))
    assert [r.status_code for r in responses].count(200) == 50
    for r in responses:
        if r.status_code != 200:
            assert_rate_limited(r, 86400)
    # the next network is not affected
    async with clients(harness, ["198.51.101.1"]) as (neighbour,):
        r = await vote(neighbour, await new_voter(neighbour), "c003")
        assert r.status_code == 200, r.text
    assert await redis_totals(harness) == {"c003": 51}


async def test_ipv6_networks_are_capped_per_slash_48(harness: Harness) -> None:
    await harness.create_campaign(rules={**NO_LIMITS, "ip_per_day": 2, "net_per_day": 3})
    same_48 = [f"2001:db8:7:{n:x}::1" for n in range(5)]  # five /64s of one /48
    async with clients(harness, [*same_48, "2001:db8:8::1"]) as (*inside, outside):
        codes = [(await vote(c, issued(harness), "c001")).status_code for c in inside]
        assert codes == [200, 200, 200, 429, 429]
        r = await vote(outside, await new_voter(outside), "c001")
        assert r.status_code == 200, r.text
    # and one /64 is one address: rotating inside it does not help
    await harness.create_campaign(id="v6", rules={**NO_LIMITS, "ip_per_day": 2})
    async with clients(harness, [f"2001:db8:9:1::{n:x}" for n in range(1, 5)]) as one_64:
        codes = [(await vote(c, issued(harness, "v6"), "c001", cid="v6")).status_code
                 for c in one_64]
    assert codes == [200, 200, 429, 429]


async def test_spoofed_forwarded_for_from_an_untrusted_peer_changes_nothing(
    harness: Harness,
) -> None:
    await harness.create_campaign(rules={**NO_LIMITS, "ip_per_day": 5})
    voters = tokens(harness, 200)
    responses = await asyncio.gather(*(
        harness.client.post(VOTES, json={"candidate_id": "c004"}, headers={
            "X-Voter-Token": t, "X-Forwarded-For": f"192.0.2.{i % 250 + 1}, 198.51.100.9",
            "X-Real-IP": f"192.0.2.{i % 250 + 1}"})
        for i, t in enumerate(voters)))
    assert [r.status_code for r in responses].count(200) == 5
    assert await drain(harness) == 5
    ips = {str(r["ip"]) for r in await harness.pg.fetch("SELECT ip FROM votes")}
    assert ips == {"203.0.113.7"}


async def test_voter_quota_is_exact_under_200_concurrent_votes_and_in_headers(
    harness: Harness,
) -> None:
    await harness.create_campaign(rules={**NO_LIMITS, "votes_per_day": 5})
    token = await harness.voter()
    responses = await asyncio.gather(*(
        vote(harness.client, token, f"c{i % 12 + 1:03d}") for i in range(200)))
    ok = [r for r in responses if r.status_code == 200]
    assert len(ok) == 5
    assert len({r.json()["candidate_id"] for r in ok}) == 5
    left = sorted(r.json()["votes_left_today"] for r in ok)
    assert left == [0, 1, 2, 3, 4]
    for r in ok:
        assert r.headers["ratelimit-policy"] == '"daily";q=5;w=86400'
        found = RATE_LIMIT.match(r.headers["ratelimit"])
        assert found is not None, r.headers["ratelimit"]
        assert int(found[1]) == r.json()["votes_left_today"]
        assert 0 < int(found[2]) <= 86400
    for r in responses:
        if r.status_code == 200:
            continue
        assert (r.status_code, problem_code(r)) in {
            (409, "already_voted"), (429, "daily_quota_exhausted")}
        assert r.headers["ratelimit-policy"] == '"daily";q=5;w=86400'
        if r.status_code == 429:
            assert RATE_LIMIT.match(r.headers["ratelimit"])[1] == "0"  # type: ignore[index]
            assert int(r.headers["retry-after"]) > 0
    assert sum((await redis_totals(harness)).values()) == 5


async def test_one_vote_per_candidate_per_day_under_200_concurrent_votes(
    harness: Harness,
) -> None:
    await harness.create_campaign(rules={**NO_LIMITS, "votes_per_day": 10})
    token = await harness.voter()
    responses = await asyncio.gather(*(vote(harness.client, token, "c005") for _ in range(200)))
    codes = [r.status_code for r in responses]
    assert codes.count(200) == 1
    assert codes.count(409) == 199
    assert {RATE_LIMIT.match(r.headers["ratelimit"])[1]  # type: ignore[index]
            for r in responses} == {"9"}
    assert await redis_totals(harness) == {"c005": 1}
