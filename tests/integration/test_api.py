"""The HTTP contract of DESIGN §6 through the app, on a single node and on a cluster.

Every error is ``application/problem+json`` with ``code``, ``status`` and ``title``; odd input
gives a 4xx, never a 5xx.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import httpx
import jwt
import pytest

from tests.conftest import (
    ADMIN,
    OPS,
    Backend,
    Harness,
    campaign_payload,
    client_for,
    drain,
    make_settings,
    redis_tallies,
)
from voting_service.app import create_app
from voting_service.redis import keys, store

VOTES = "/api/v1/campaigns/t2026/votes"


def assert_problem(r: httpx.Response, status: int | tuple[int, ...], code: str) -> dict[str, Any]:
    statuses = (status,) if isinstance(status, int) else status
    assert r.status_code in statuses, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    body: dict[str, Any] = r.json()
    assert body["code"] == code, body
    assert body["status"] == r.status_code
    assert isinstance(body["title"], str) and body["title"]
    return body


def retry_after(r: httpx.Response) -> int:
    value = int(r.headers["retry-after"])
    assert 0 < value <= 86400, value
    return value


async def poll(
    attempt: Callable[[], Awaitable[httpx.Response]],
    done: Callable[[httpx.Response], bool],
    within: float = 2.0,
) -> httpx.Response:
    """Retry ``attempt`` until ``done`` or ``within`` seconds passed; return the last answer."""
    deadline = time.monotonic() + within
    while True:
        r = await attempt()
        if done(r) or time.monotonic() > deadline:
            return r
        await asyncio.sleep(0.05)


def code_of(r: httpx.Response) -> str:
    if r.status_code == 200:
        return "ok"
    return str(r.json().get("code"))


# --- health ----------------------------------------------------------------------------


async def test_health_and_readiness(harness: Harness) -> None:
    r = await harness.client.get("/healthz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}
    r = await harness.client.get("/readyz")
    assert r.status_code == 200, r.text
    assert r.json() == {"ready": True, "checks": {"redis": "ok", "postgres": "ok"}}


# --- invalid_request -------------------------------------------------------------------


async def test_invalid_request_bodies(harness: Harness) -> None:
    await harness.create_campaign()
    token = await harness.voter()
    headers = {"X-Voter-Token": token, "Content-Type": "application/json"}
    cases: dict[str, bytes] = {
        "malformed": b'{"candidate_id": "c001"',
        "not-json": b"candidate_id=c001",
        "array": b'["c001"]',
        "wrong-type": b'{"candidate_id": 1}',
        "null-candidate": b'{"candidate_id": null}',
        "wrong-vote-id": b'{"candidate_id": "c001", "vote_id": 42}',
        "bad-vote-id": b'{"candidate_id": "c001", "vote_id": "../../x"}',
        "unknown-field": b'{"candidate_id": "c001", "weight": 100}',
        "missing-candidate": b"{}",
        "non-utf8": b'{"candidate_id": "c\xff\xfe001"}',
        "empty": b"",
    }
    for name, body in cases.items():
        r = await harness.client.post(VOTES, content=body, headers=headers)
        assert_problem(r, 400, "invalid_request")
        assert r.status_code == 400, name
    assert (await redis_tallies(harness)) == {}, "nothing may be counted"
    # the same voter may still vote: nothing above used the quota
    r = await harness.vote(token, "c001")
    assert r.status_code == 200, r.text
    assert r.json()["votes_left_today"] == 4


async def test_body_over_2_kib_is_refused(harness: Harness) -> None:
    await harness.create_campaign()
    token = await harness.voter()
    big = b'{"candidate_id": "c001", "proof": "' + b"x" * 2100 + b'"}'
    headers = {"X-Voter-Token": token, "Content-Type": "application/json"}
    r = await harness.client.post(VOTES, content=big, headers=headers)
    assert_problem(r, (400, 413), "invalid_request")

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted while read
        for i in range(0, len(big), 256):
            yield big[i : i + 256]

    r = await harness.client.post(VOTES, content=chunks(), headers=headers)
    assert "content-length" not in r.request.headers
    assert_problem(r, (400, 413), "invalid_request")
    assert (await redis_tallies(harness)) == {}


async def test_body_just_under_the_limit_is_read(harness: Harness) -> None:
    await harness.create_campaign()
    token = await harness.voter()
    body = b'{"candidate_id": "c001"}' + b" " * (2048 - 24)
    assert len(body) == 2048
    r = await harness.client.post(VOTES, content=body, headers={"X-Voter-Token": token})
    assert r.status_code == 200, r.text


async def test_unknown_channel_is_invalid(harness: Harness) -> None:
    await harness.create_campaign()
    token = await harness.voter()
    r = await harness.vote(token, "c001", channel="nosuchchannel")
    assert_problem(r, 400, "invalid_request")


# --- voter_required --------------------------------------------------------------------


async def test_voter_required(harness: Harness) -> None:
    await harness.create_campaign()
    await harness.create_campaign(cid="other")
    other_token = await harness.voter("other")
    good = await harness.voter()
    harness.client.cookies.clear()  # the voter endpoint set cookies; test headers alone
    body = {"candidate_id": "c001"}
    cases: dict[str, dict[str, str]] = {
        "none": {},
        "garbage": {"X-Voter-Token": "garbage"},
        "empty": {"X-Voter-Token": ""},
        "tampered": {"X-Voter-Token": good[:-4] + ("AAAA" if good[-4:] != "AAAA" else "BBBB")},
        "other-campaign": {"X-Voter-Token": other_token},
        "basic-auth": {"Authorization": "Basic dXNlcjpwYXNz"},
        "bearer-empty": {"Authorization": "Bearer "},
        "bearer-garbage": {"Authorization": "Bearer not.a.jwt"},
        "token-scheme": {"Authorization": f"Token {good}"},
    }
    for name, headers in cases.items():
        r = await harness.client.post(VOTES, json=body, headers=headers)
        assert_problem(r, 401, "voter_required")
        assert r.status_code == 401, name
    # a cookie of another campaign is not this campaign's credential
    harness.client.cookies.set("vs_voter_t2026", other_token)
    assert_problem(await harness.client.post(VOTES, json=body), 401, "voter_required")
    harness.client.cookies.set("vs_voter_t2026", good)
    r = await harness.client.post(VOTES, json=body)
    assert r.status_code == 200, r.text
    assert (await redis_tallies(harness)) == {"c001": 1}


async def test_voter_endpoint_sets_the_cookie(harness: Harness) -> None:
    await harness.create_campaign()
    r = await harness.client.post("/api/v1/campaigns/t2026/voter")
    assert r.status_code == 201
    cookie = r.headers["set-cookie"]
    assert cookie.startswith("vs_voter_t2026=" + r.json()["token"])
    assert "httponly" in cookie.lower()
    assert "samesite=lax" in cookie.lower()


# --- voting_closed, not found ----------------------------------------------------------


async def test_voting_closed(harness: Harness) -> None:
    now = dt.datetime.now(dt.UTC)
    campaigns: dict[str, tuple[dict[str, Any], str]] = {
        "paused": ({"status": "paused"}, "paused"),
        "closed": ({"status": "closed"}, "closed"),
        "early": ({"opens_at": (now + dt.timedelta(hours=1)).isoformat()}, "upcoming"),
        "late": ({"opens_at": (now - dt.timedelta(days=3)).isoformat(),
                  "closes_at": (now - dt.timedelta(seconds=1)).isoformat()}, "closed"),
    }
    for cid, (changes, state) in campaigns.items():
        await harness.create_campaign(cid=cid, **changes)
        view = (await harness.client.get(f"/api/v1/campaigns/{cid}")).json()
        assert view["status"] == state, cid
        token = await harness.voter(cid)
        r = await harness.vote(token, "c001", cid=cid)
        assert_problem(r, 403, "voting_closed")
    for cid in campaigns:
        assert (await redis_tallies(harness, cid)) == {}
    # a draft is not found at all (test_drafts), and not listed
    await harness.create_campaign(cid="draft", status="draft")
    listed = {c["id"] for c in (await harness.client.get("/api/v1/campaigns")).json()}
    assert listed == {"paused", "closed", "early", "late"}, "drafts are not listed"


async def test_not_found(harness: Harness) -> None:
    await harness.create_campaign()
    token = await harness.voter()
    r = await harness.vote(token, "c001", cid="nope")
    assert_problem(r, 404, "campaign_not_found")
    for path in ("/api/v1/campaigns/nope", "/api/v1/campaigns/nope/candidates",
                 "/api/v1/campaigns/nope/candidates/c001", "/api/v1/campaigns/nope/tallies"):
        assert_problem(await harness.client.get(path), 404, "campaign_not_found")
    assert_problem(await harness.client.post("/api/v1/campaigns/nope/voter"), 404,
                   "campaign_not_found")
    r = await harness.vote(token, "c999")
    assert_problem(r, 404, "candidate_not_found")
    r = await harness.client.get("/api/v1/campaigns/t2026/candidates/c999")
    assert_problem(r, 404, "candidate_not_found")
    # a lone surrogate in the JSON: refused as input, never a 5xx
    r = await harness.client.post(VOTES, content=b'{"candidate_id": "\\ud800"}',
                                  headers={"X-Voter-Token": token})
    assert_problem(r, 400, "invalid_request")
    assert (await redis_tallies(harness)) == {}


# --- already_voted, daily quota --------------------------------------------------------


async def test_already_voted_and_daily_quota(harness: Harness) -> None:
    await harness.create_campaign()  # votes_per_day 5, per candidate 1
    token = await harness.voter()
    r = await harness.vote(token, "c001")
    assert r.status_code == 200
    body = assert_problem(await harness.vote(token, "c001"), 409, "already_voted")
    assert body["votes_left_today"] == 4
    lefts = []
    for cand in ("c002", "c003", "c004", "c005"):
        r = await harness.vote(token, cand)
        assert r.status_code == 200, r.text
        lefts.append(r.json()["votes_left_today"])
    assert lefts == [3, 2, 1, 0]
    r = await harness.vote(token, "c006")
    body = assert_problem(r, 429, "daily_quota_exhausted")
    wait = retry_after(r)
    assert body["votes_left_today"] == 0
    # seconds to the next midnight in Shanghai
    now = dt.datetime.now(dt.timezone(dt.timedelta(hours=8)))
    midnight = dt.datetime.combine(now.date() + dt.timedelta(days=1), dt.time(), now.tzinfo)
    assert abs(wait - (midnight - now).total_seconds()) <= 5
    # already voted for a candidate is still reported as such
    assert_problem(await harness.vote(token, "c001"), 409, "already_voted")
    tallies = await redis_tallies(harness)
    assert tallies == {f"c00{i}": 1 for i in range(1, 6)}


# --- rate limits -----------------------------------------------------------------------


async def voters(h: Harness, n: int, cid: str = "t2026") -> list[str]:
    """Tokens signed as ``POST /voter`` signs them, without the address's minting limits:
    these tests cast more votes from one address than it may mint tokens."""
    return [h.app.state.services.tokens.issue(cid) for _ in range(n)]


async def test_ip_per_minute(harness: Harness) -> None:
    limit = 5
    await harness.create_campaign(rules={"ip_per_minute": limit, "ip_per_day": 0})
    tokens = await voters(harness, limit + 3)
    responses = await asyncio.gather(*(harness.vote(t, "c001") for t in tokens))
    ok = [r for r in responses if r.status_code == 200]
    limited = [r for r in responses if r.status_code != 200]
    assert len(ok) == limit
    assert len(limited) == 3
    for r in limited:
        assert_problem(r, 429, "rate_limited")
        assert 1 <= retry_after(r) <= 60
    assert (await redis_tallies(harness)) == {"c001": limit}
    # another network is not affected
    async with client_for(harness.app, ip="198.51.100.20") as other:
        token = (await other.post("/api/v1/campaigns/t2026/voter")).json()["token"]
        r = await other.post(VOTES, json={"candidate_id": "c002"},
                             headers={"X-Voter-Token": token})
        assert r.status_code == 200, r.text


async def test_a_vote_refused_by_its_network_uses_none_of_its_address_allowance(
    harness: Harness,
) -> None:
    await harness.create_campaign(rules={"ip_per_minute": 3, "ip_per_day": 0,
                                         "net_per_minute": 2, "net_per_day": 0})
    codes = []
    for host in (1, 2, 3):
        async with client_for(harness.app, ip=f"198.51.100.{host}") as c:
            [token] = await voters(harness, 1)
            r = await c.post(VOTES, json={"candidate_id": "c001"},
                             headers={"X-Voter-Token": token})
            codes.append(r.status_code)
    assert codes == [200, 200, 429]
    live = harness.app.state.services.registry.get("t2026")
    day = str(live.day(time.time()).expire_at)
    levels = await harness.redis.hgetall(keys.limits("t2026", "198.51.100.0/24"))
    assert "3:" not in levels  # all or nothing: the refused vote was not counted anywhere
    assert str(levels["1:"]).split("|")[:2] == [day, "1"]  # <day>|<count>|<GCRA time>
    assert str(levels[""]).split("|")[:2] == [day, "2"]  # the network's own count


async def test_ip_per_day(harness: Harness) -> None:
    limit = 4
    await harness.create_campaign(rules={"ip_per_minute": 0, "ip_per_day": limit})
    tokens = await voters(harness, limit + 3)
    responses = [await harness.vote(t, "c003") for t in tokens]
    assert [r.status_code for r in responses] == [200] * limit + [429] * 3
    for r in responses[limit:]:
        assert_problem(r, 429, "rate_limited")
        assert retry_after(r) > 60, "the day limit lasts until local midnight"
    assert (await redis_tallies(harness)) == {"c003": limit}


async def test_forwarded_for_from_untrusted_peer_does_not_evade_limits(
    harness: Harness,
) -> None:
    limit = 3
    await harness.create_campaign(rules={"ip_per_minute": limit, "ip_per_day": 0})
    tokens = await voters(harness, 6)
    responses = [
        await harness.client.post(
            VOTES, json={"candidate_id": "c001"},
            headers={"X-Voter-Token": t, "X-Forwarded-For": f"198.51.100.{i}",
                     "X-Real-IP": f"198.51.100.{i}"},
        )
        for i, t in enumerate(tokens)
    ]
    assert [r.status_code for r in responses] == [200] * limit + [429] * 3
    rows = await drain(harness)
    assert rows == limit
    ips = {str(r["ip"]) for r in await harness.pg.fetch("SELECT ip FROM votes")}
    assert ips == {"203.0.113.7"}, "the ledger keeps the peer, not the forged header"


async def test_ipv6_addresses_of_one_slash_64_share_the_limit(harness: Harness) -> None:
    """Anyone holds a whole IPv6 /64: rotating addresses inside it must not evade the limit."""
    limit = 3
    await harness.create_campaign(rules={"ip_per_minute": limit, "ip_per_day": 0})
    tokens = await voters(harness, 6)
    codes = []
    for i, token in enumerate(tokens):
        async with client_for(harness.app, ip=f"2001:db8:1:2::{i + 1:x}") as client:
            r = await client.post(VOTES, json={"candidate_id": "c001"},
                                  headers={"X-Voter-Token": token})
            codes.append(r.status_code)
    assert codes == [200] * limit + [429] * 3


@pytest.fixture
async def proxied(
    backend: Backend, pg_url: str, redis: store.AnyRedis, pg: asyncpg.Connection
) -> AsyncIterator[Harness]:
    """The app behind a trusted proxy (the test client's peer address)."""
    settings = make_settings(
        backend, pg_url, trusted_proxies=(ipaddress.ip_network("203.0.113.0/24"),)
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app), client_for(app) as client:
        yield Harness(app, client, settings, redis, pg)


async def test_forwarded_for_from_trusted_proxy_is_believed(proxied: Harness) -> None:
    h = proxied
    await h.create_campaign(rules={"ip_per_minute": 2, "ip_per_day": 0})
    tokens = await voters(h, 6)

    async def vote(token: str, forwarded: str) -> int:
        r = await h.client.post(VOTES, json={"candidate_id": "c001"},
                                headers={"X-Voter-Token": token, "X-Forwarded-For": forwarded})
        return r.status_code

    # two clients behind the proxy, each with its own limit; a forged first hop changes nothing
    codes_a = [await vote(t, f"10.9.9.{i}, 198.51.100.1") for i, t in enumerate(tokens[:3])]
    codes_b = [await vote(t, "198.51.100.2") for t in tokens[3:]]
    assert codes_a == [200, 200, 429]
    assert codes_b == [200, 200, 429]
    await drain(h)
    ips = sorted(str(r["ip"]) for r in await h.pg.fetch("SELECT ip FROM votes"))
    assert ips == ["198.51.100.1", "198.51.100.1", "198.51.100.2", "198.51.100.2"]


# --- idempotency -----------------------------------------------------------------------


async def test_repeated_vote_id_returns_the_first_answer(harness: Harness) -> None:
    await harness.create_campaign()
    token = await harness.voter()
    first = await harness.vote(token, "c001", vote_id="retry-0123456789")
    assert first.status_code == 200, first.text
    assert first.json()["vote_id"] == "retry-0123456789"
    second_vote = await harness.vote(token, "c002", vote_id="other-0123456789")
    assert second_vote.json()["votes_left_today"] == 3
    for _ in range(3):
        again = await harness.vote(token, "c001", vote_id="retry-0123456789")
        assert again.status_code == 200, again.text
        assert again.json() == first.json()
        assert again.json()["votes_left_today"] == 4
    # a retry that names another candidate still gets the first answer and counts nothing
    other = await harness.vote(token, "c003", vote_id="retry-0123456789")
    assert other.status_code == 200
    assert other.json()["candidate_id"] == "c001"
    assert other.json()["votes_left_today"] == 4
    concurrent = await asyncio.gather(
        *(harness.vote(token, "c001", vote_id="retry-0123456789") for _ in range(20))
    )
    assert {r.status_code for r in concurrent} == {200}
    assert (await redis_tallies(harness)) == {"c001": 1, "c002": 1}
    assert await drain(harness) == 2
    rows = await harness.pg.fetch("SELECT vote_id, candidate_id FROM votes ORDER BY vote_id")
    assert [(r["vote_id"], r["candidate_id"]) for r in rows] == [
        ("other-0123456789", "c002"), ("retry-0123456789", "c001")]


async def test_retry_after_a_pause_or_a_limit_gets_the_first_answer(harness: Harness) -> None:
    """A client retrying an accepted vote must learn it was counted, even if the network hit
    its limit or the campaign paused in between; a new vote_id is refused as usual."""
    await harness.create_campaign(rules={"ip_per_minute": 1, "ip_per_day": 0})
    token = await harness.voter()
    first = await harness.vote(token, "c001", vote_id="landed-0123456789")
    assert first.status_code == 200, first.text
    limited = await harness.vote(token, "c002", vote_id="fresh-0123456789a")
    assert limited.status_code == 429 and limited.json()["code"] == "rate_limited"
    retry = await harness.vote(token, "c001", vote_id="landed-0123456789")
    assert retry.status_code == 200 and retry.json() == first.json()

    r = await harness.client.patch("/api/v1/admin/campaigns/t2026", json={"status": "paused"},
                                   headers=ADMIN)
    assert r.status_code == 200
    closed = await harness.vote(token, "c003", vote_id="fresh-0123456789b")
    assert closed.status_code == 403 and closed.json()["code"] == "voting_closed"
    retry = await harness.vote(token, "c001", vote_id="landed-0123456789")
    assert retry.status_code == 200 and retry.json() == first.json()
    assert (await redis_tallies(harness)) == {"c001": 1}


async def test_concurrent_first_votes_with_one_vote_id_count_once(harness: Harness) -> None:
    await harness.create_campaign()
    token = await harness.voter()
    responses = await asyncio.gather(
        *(harness.vote(token, "c004", vote_id="burst-0123456789") for _ in range(30))
    )
    assert {r.status_code for r in responses} == {200}
    assert len({r.text for r in responses}) == 1
    assert (await redis_tallies(harness)) == {"c004": 1}


# --- odd paths -------------------------------------------------------------------------


async def test_odd_paths_give_4xx_problems(harness: Harness) -> None:
    await harness.create_campaign()
    token = await harness.voter()
    cases: list[tuple[str, str]] = [
        ("GET", "/api/v1/campaigns/%00"),
        ("GET", "/api/v1/campaigns/%00/candidates"),
        ("POST", "/api/v1/campaigns/%00/votes"),
        ("POST", "/api/v1/campaigns/%00/voter"),
        ("GET", "/api/v1/campaigns/" + "x" * 8000),
        ("GET", "/api/v1/campaigns/t2026/candidates/" + "y" * 8000),
        ("GET", "/api/v1/campaigns/t2026/candidates/%00"),
        ("GET", "/api/v1/campaigns/t2026/candidates/%ff%fe"),
        ("GET", "/api/v1/campaigns/t2026/candidates/%ED%A0%80"),
        ("GET", "/api/v1/campaigns/t2026/candidates/..%2F..%2Fetc%2Fpasswd"),
        ("GET", "/api/v1/campaigns/%2e%2e/tallies"),
        ("GET", "/nope"),
        ("GET", "/api/v2/campaigns"),
        ("GET", "/api/v1/campaigns/t2026/votes"),
        ("DELETE", "/api/v1/campaigns/t2026"),
        ("PUT", "/api/v1/campaigns/t2026/votes"),
        ("GET", "/api/v1/campaigns/t2026/voter"),
        ("DELETE", "/api/v1/admin/campaigns/t2026"),
        ("POST", "/api/v1/admin/campaigns/t2026/results"),
        ("GET", "/%ff"),
    ]
    for method, path in cases:
        r = await harness.client.request(method, path, headers={"X-Voter-Token": token},
                                         json={"candidate_id": "c001"})
        assert 400 <= r.status_code < 500, (method, path[:80], r.status_code, r.text[:200])
        assert r.headers["content-type"].startswith("application/problem+json"), (method, path)
        body = r.json()
        assert body["status"] == r.status_code and body["code"] and body["title"]
    r = await harness.client.get("/nope")
    assert_problem(r, 404, "not_found")
    r = await harness.client.get("/api/v1/campaigns/t2026/votes")
    assert_problem(r, 405, "method_not_allowed")
    assert "POST" in r.headers["allow"]
    # a NUL or bytes that are not UTF-8 in a query value: refused at the edge, for every route
    r = await harness.client.get("/api/v1/campaigns/t2026/candidates?region=%ff&q=%00")
    assert_problem(r, 400, "invalid_request")
    r = await harness.client.get("/api/v1/campaigns/t2026/candidates?region=nowhere")
    assert r.status_code == 200
    assert r.json()["candidates"] == []


# --- admin -----------------------------------------------------------------------------


async def test_admin_auth_and_roles(harness: Harness) -> None:
    payload = campaign_payload()
    base = "/api/v1/admin/campaigns"
    for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789abcdef"},
                    {"Authorization": "Basic YWRtaW46YWRtaW4="}, {"Authorization": "Bearer"}):
        r = await harness.client.post(base, json=payload, headers=headers)
        assert_problem(r, 401, "unauthorized")
        assert r.headers["www-authenticate"] == "Bearer"
        assert_problem(await harness.client.get(base, headers=headers), 401, "unauthorized")
    assert_problem(await harness.client.post(base, json=payload, headers=OPS), 403, "forbidden")
    assert (await harness.client.get(base, headers=ADMIN)).json() == []

    r = await harness.client.post(base, json=payload, headers=ADMIN)
    assert r.status_code == 201, r.text
    assert r.json()["id"] == "t2026"
    assert_problem(await harness.client.post(base, json=payload, headers=ADMIN), 409, "conflict")

    patch = {"status": "paused"}
    assert_problem(await harness.client.patch(f"{base}/t2026", json=patch, headers=OPS), 403,
                   "forbidden")
    assert_problem(await harness.client.patch(f"{base}/t2026", json=patch), 401, "unauthorized")
    assert_problem(await harness.client.patch(f"{base}/nope", json=patch, headers=ADMIN), 404,
                   "campaign_not_found")
    assert_problem(await harness.client.patch(f"{base}/t2026", json={"status": "gone"},
                                              headers=ADMIN), 400, "invalid_request")
    assert_problem(await harness.client.patch(
        f"{base}/t2026", json={"closes_at": "2000-01-01T00:00:00Z"}, headers=ADMIN),
        400, "invalid_request")
    channel = {"id": "xhby", "name": "新华报业"}
    assert_problem(await harness.client.post(f"{base}/t2026/channels", json=channel,
                                             headers=OPS), 403, "forbidden")
    assert_problem(await harness.client.get("/api/v1/admin/audit", headers=OPS), 403,
                   "forbidden")

    # ops reads
    for path in (base, f"{base}/t2026", f"{base}/t2026/results", f"{base}/t2026/channels"):
        r = await harness.client.get(path, headers=OPS)
        assert r.status_code == 200, (path, r.text)
    results = (await harness.client.get(f"{base}/t2026/results", headers=OPS)).json()
    assert results["total"] == 0
    assert len(results["candidates"]) == 12
    assert_problem(await harness.client.get(f"{base}/nope/results", headers=OPS), 404,
                   "campaign_not_found")
    audit = (await harness.client.get("/api/v1/admin/audit", headers=ADMIN)).json()
    # the wrong tokens above are audited too (each one checked, the throttle permitting)
    assert [a["action"] for a in audit if a["action"] != "token.refused"] == ["campaign.create"]
    created = next(a for a in audit if a["action"] == "campaign.create")
    assert created["actor"].startswith("admin:")
    assert {a["request"]["address"] for a in audit if a["action"] == "token.refused"} == {
        "203.0.113.7"}
    assert ADMIN["Authorization"].split()[1] not in str(audit)


async def test_admin_rejects_bad_campaigns(harness: Harness) -> None:
    base = "/api/v1/admin/campaigns"
    bad = [
        campaign_payload(timezone="Mars/Olympus"),
        campaign_payload(opens_at="2026-07-01T00:00:00"),
        campaign_payload(closes_at="2000-01-01T00:00:00+08:00"),
        campaign_payload(extra="x"),
        campaign_payload() | {"candidates": [{"id": "a", "number": 1, "name": "x"}] * 2},
        campaign_payload(rules={"votes_per_day": 0}),
    ]
    for payload in bad:
        r = await harness.client.post(base, json=payload, headers=ADMIN)
        assert_problem(r, 400, "invalid_request")
    assert (await harness.client.get(base, headers=ADMIN)).json() == []
    r = await harness.client.post(base, content=b"{" * 10, headers=ADMIN)
    assert_problem(r, 400, "invalid_request")


async def test_pause_reaches_another_worker_within_2_seconds(harness: Harness) -> None:
    await harness.create_campaign()
    tokens = await voters(harness, 2)
    other_app = create_app(harness.settings)  # a second worker, sharing Redis
    async with other_app.router.lifespan_context(other_app), client_for(other_app) as other:

        def vote_on_other(token: str) -> Callable[[], Awaitable[httpx.Response]]:
            return lambda: other.post(VOTES, json={"candidate_id": "c001"},
                                      headers={"X-Voter-Token": token})

        r = await harness.client.patch("/api/v1/admin/campaigns/t2026",
                                       json={"status": "paused"}, headers=ADMIN)
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "paused"
        # the worker that took the change knows at once
        assert_problem(await harness.vote(tokens[0], "c001"), 403, "voting_closed")
        r = await poll(vote_on_other(tokens[1]), lambda r: code_of(r) == "voting_closed")
        assert_problem(r, 403, "voting_closed")
        assert (await other.get("/api/v1/campaigns/t2026")).json()["status"] == "paused"

        r = await harness.client.patch("/api/v1/admin/campaigns/t2026",
                                       json={"status": "open"}, headers=ADMIN)
        assert r.status_code == 200
        r = await poll(
            lambda: other.post(VOTES, json={"candidate_id": "c002"},
                               headers={"X-Voter-Token": tokens[0]}),
            lambda r: r.status_code == 200,
        )
        assert r.status_code == 200, r.text
    tallies = await redis_tallies(harness)
    assert tallies["c002"] == 1
    # until the other worker saw the pause (≤ 2 s) it may have taken tokens[1]'s vote
    assert tallies.get("c001", 0) <= 1


# --- channels and partner tokens -------------------------------------------------------


def partner_token(secret: str, **changes: Any) -> str:
    claims: dict[str, Any] = {"iss": "xhby", "aud": "t2026", "sub": "user-1001",
                              "exp": int(time.time()) + 3600}
    claims.update(changes)
    return jwt.encode(claims, secret, algorithm="HS256")


async def test_partner_channel_votes(harness: Harness) -> None:
    await harness.create_campaign()
    r = await harness.client.post(
        "/api/v1/admin/campaigns/t2026/channels",
        json={"id": "xhby", "name": "新华报业", "allowed_origins": ["https://news.example"]},
        headers=ADMIN,
    )
    assert r.status_code == 201, r.text
    secret = r.json()["secret"]
    assert len(secret) >= 32
    r = await harness.client.post("/api/v1/admin/campaigns/t2026/channels",
                                  json={"id": "xhby", "name": "again"}, headers=ADMIN)
    assert_problem(r, 409, "conflict")
    listed = (await harness.client.get("/api/v1/admin/campaigns/t2026/channels",
                                       headers=OPS)).json()
    assert listed == [{"id": "xhby", "name": "新华报业",
                       "allowed_origins": ["https://news.example"]}]
    assert secret not in str(listed)
    public = (await harness.client.get("/api/v1/campaigns/t2026")).json()
    assert secret not in str(public)
    harness.client.cookies.clear()

    def bearer(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    r = await harness.client.post(VOTES, json={"candidate_id": "c007"},
                                  headers=bearer(partner_token(secret)))
    assert r.status_code == 200, r.text
    assert r.json()["votes_left_today"] == 4
    # the same platform user is the same voter, whatever token the platform signs next
    r = await harness.client.post(VOTES, json={"candidate_id": "c007"},
                                  headers=bearer(partner_token(secret, exp=int(time.time()) + 60)))
    assert_problem(r, 409, "already_voted")
    wrong = "wrong-secret-0123456789abcdefghijklmnop"
    for token in (partner_token(wrong), partner_token(secret, aud="other"),
                  partner_token(secret, iss="nochannel"),
                  partner_token(secret, exp=int(time.time()) + 2 * 86400)):
        r = await harness.client.post(VOTES, json={"candidate_id": "c008"},
                                      headers=bearer(token))
        assert_problem(r, 401, "voter_required")
    r = await harness.client.post(VOTES, json={"candidate_id": "c008", "channel": "direct"},
                                  headers=bearer(partner_token(secret, sub="user-1002")))
    assert_problem(r, 400, "invalid_request")
    # an anonymous voter may name the channel it came through
    token = await harness.voter()
    r = await harness.vote(token, "c008", channel="xhby")
    assert r.status_code == 200, r.text

    assert (await redis_tallies(harness)) == {"c007": 1, "c008": 1}
    assert await drain(harness) == 2
    rows = await harness.pg.fetch("SELECT candidate_id, channel FROM votes ORDER BY candidate_id")
    assert [(r["candidate_id"], r["channel"]) for r in rows] == [("c007", "xhby"),
                                                                 ("c008", "xhby")]
    raw = await harness.pg.fetch("SELECT voter_id FROM votes")
    assert all("user-1001" not in r["voter_id"] for r in raw)
    results = (await harness.client.get("/api/v1/admin/campaigns/t2026/results",
                                        headers=OPS)).json()
    assert results["total"] == 2
    assert results["breakdowns"]["channel"] == {"xhby": 2}


# --- candidates, counts ----------------------------------------------------------------

PEOPLE = [
    # id, number, name, region, industry
    ("w01", 1, "王建国", "南京市", "电子信息"),
    ("w02", 2, "李秀英", "苏州市", "传统工艺"),
    ("w03", 3, "王小明", "苏州市", "电子信息"),
    ("w04", 12, "张伟", "无锡市", "装备制造"),
    ("w05", 21, "陈静", "南京市", "装备制造"),
]


def people() -> list[dict[str, Any]]:
    return [{"id": i, "number": n, "name": name, "region": region, "industry": industry,
             "gender": "男", "employer": "某厂", "occupation": "技师", "summary": f"{name}简介",
             "deeds": f"{name}的事迹" * 50, "photo_url": f"/static/{i}.jpg"}
            for i, n, name, region, industry in PEOPLE]


async def test_candidate_filters(harness: Harness) -> None:
    r = await harness.client.post("/api/v1/admin/campaigns",
                                  json=campaign_payload() | {"candidates": people()},
                                  headers=ADMIN)
    assert r.status_code == 201, r.text
    token = await harness.voter()
    assert (await harness.vote(token, "w03")).status_code == 200

    async def ids(query: str) -> list[str]:
        r = await harness.client.get(f"/api/v1/campaigns/t2026/candidates{query}")
        assert r.status_code == 200, r.text
        return [c["id"] for c in r.json()["candidates"]]

    assert await ids("") == ["w01", "w02", "w03", "w04", "w05"]
    assert await ids("?region=苏州市") == ["w02", "w03"]
    assert await ids("?industry=电子信息") == ["w01", "w03"]
    assert await ids("?region=南京市&industry=装备制造") == ["w05"]
    assert await ids("?q=王") == ["w01", "w03"]
    assert await ids("?q=李秀英") == ["w02"]
    assert await ids("?q=12") == ["w04"]
    assert await ids("?q=1") == ["w01"]
    assert await ids("?q=%20%2021%20") == ["w05"]
    assert await ids("?region=南京市&q=王") == ["w01"]
    assert await ids("?region=上海市") == []
    assert await ids("?q=赵") == []

    listed = (await harness.client.get("/api/v1/campaigns/t2026/candidates")).json()
    first = listed["candidates"][0]
    assert set(first) == {"id", "number", "name", "gender", "region", "industry", "employer",
                          "occupation", "summary", "photo_url", "votes", "recommender",
                          "recommender_kind", "deed_type", "honors", "video_url", "status"}
    assert {c["id"]: c["votes"] for c in listed["candidates"]}["w03"] == 1
    detail = (await harness.client.get("/api/v1/campaigns/t2026/candidates/w03")).json()
    assert detail["deeds"] == "王小明的事迹" * 50
    assert detail["name"] == "王小明"
    assert detail["votes"] == 1


async def test_tallies_and_campaign_view(harness: Harness) -> None:
    await harness.create_campaign()
    for cand in ("c001", "c001", "c002"):
        assert (await harness.vote(await harness.voter(), cand)).status_code == 200
    # the tally cache lives about a second
    r = await poll(lambda: harness.client.get("/api/v1/campaigns/t2026/tallies"),
                   lambda r: r.json()["total"] == 3)
    tallies = r.json()
    assert tallies["campaign_id"] == "t2026"
    assert tallies["total"] == 3
    assert len(tallies["candidates"]) == 12
    counts = {c["candidate_id"]: c["votes"] for c in tallies["candidates"]}
    assert (counts["c001"], counts["c002"], counts["c003"]) == (2, 1, 0)
    dt.datetime.fromisoformat(tallies["as_of"])
    view = (await harness.client.get("/api/v1/campaigns/t2026")).json()
    assert view["status"] == "open"
    assert view["rules"] == {"votes_per_day": 5, "per_candidate_per_day": 1,
                             "identity": ["anonymous", "partner"], "challenge": "off"}
    assert view["candidate_count"] == 12
    assert "ip_per_minute" not in str(view)


async def test_hidden_counts(harness: Harness) -> None:
    await harness.create_campaign(show_counts=False)
    token = await harness.voter()
    r = await harness.vote(token, "c001")
    assert r.status_code == 200
    assert "candidate_votes" not in r.json()
    assert_problem(await harness.client.get("/api/v1/campaigns/t2026/tallies"), 403, "forbidden")
    assert_problem(await harness.client.get("/api/v1/campaigns/t2026/live"), 403, "forbidden")
    listed = (await harness.client.get("/api/v1/campaigns/t2026/candidates")).json()
    assert listed["candidates"]
    assert all("votes" not in c for c in listed["candidates"])
    detail = (await harness.client.get("/api/v1/campaigns/t2026/candidates/c001")).json()
    assert "votes" not in detail
    assert "deeds" in detail
    # the organisers still see the count
    assert (await redis_tallies(harness)) == {"c001": 1}


async def test_every_vote_outcome_is_told_to_the_observers(harness: Harness) -> None:
    """Metrics and the ops timeline subscribe to ``services.outcomes``: each vote request is
    noted once, with the refusal's problem code, the identity mode and the channel."""
    from voting_service.services import Services
    from voting_service.vote.outcomes import Outcome

    svc: Services = harness.app.state.services
    heard: list[Outcome] = []
    svc.outcomes.subscribe(heard.append)
    await harness.create_campaign()
    token = await harness.voter()
    assert (await harness.vote(token, "c001")).status_code == 200
    assert (await harness.vote(token, "c001")).status_code == 409
    assert (await harness.vote(token, "nobody")).status_code == 404
    r = await harness.client.post("/api/v1/campaigns/nope/votes", json={"candidate_id": "c001"})
    assert r.status_code == 404
    assert [(o.campaign_id, o.outcome, o.mode) for o in heard] == [
        ("t2026", "accepted", "anonymous"),
        ("t2026", "already_voted", "anonymous"),
        ("t2026", "candidate_not_found", "anonymous"),
        ("", "campaign_not_found", ""),
    ]
    assert all(o.seconds > 0 for o in heard)
