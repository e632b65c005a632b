"""The ops console's routes over HTTP: sign-in, throttling, sessions, same-origin writes,
roles, audit, and the live figures (against real Redis, single node and cluster, and
PostgreSQL)."""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator
from typing import Any

import httpx
import msgspec
import pytest

from tests.conftest import (
    ADMIN_TOKEN,
    OPS_TOKEN,
    Backend,
    Harness,
    client_for,
    drain,
    make_settings,
    redis_tallies,
)
from tests.integration.antifraud_support import eventually
from tests.integration.test_antifraud_suspicious import history
from voting_service.app import create_app
from voting_service.ledger import health
from voting_service.services import Services
from voting_service.vote import keys
from voting_service.web.ops_session import COOKIE, LOGIN_FAILURES


def svc_of(h: Harness) -> Services:
    svc: Services = h.app.state.services
    return svc


async def sign_in(client: httpx.AsyncClient, token: str, **headers: str) -> httpx.Response:
    return await client.post("/ops/login", data={"token": token, "next": "/ops"},
                             headers=headers)


async def signed_in(h: Harness, token: str = ADMIN_TOKEN,
                    ip: str = "198.51.100.20") -> httpx.AsyncClient:
    client = client_for(h.app, ip)
    r = await sign_in(client, token)
    assert r.status_code == 303, r.text
    return client


@pytest.fixture
async def admin(harness: Harness) -> AsyncIterator[httpx.AsyncClient]:
    client = await signed_in(harness)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def ops(harness: Harness) -> AsyncIterator[httpx.AsyncClient]:
    client = await signed_in(harness, OPS_TOKEN, "198.51.100.21")
    try:
        yield client
    finally:
        await client.aclose()


def problem_code(r: httpx.Response) -> str:
    assert r.headers["content-type"].startswith("application/problem+json"), r.text
    code: str = r.json()["code"]
    return code


async def test_sign_in_sets_a_strict_httponly_expiring_cookie(harness: Harness) -> None:
    await harness.create_campaign()
    r = await harness.client.get("/ops")
    assert r.status_code == 200
    assert '<input id="token" name="token" type="password"' in r.text
    assert 'method="post" action="/ops/login"' in r.text
    assert r.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]

    r = await sign_in(harness.client, ADMIN_TOKEN)
    assert r.status_code == 303 and r.headers["location"] == "/ops"
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=")
    assert ADMIN_TOKEN not in cookie
    parts = {p.strip().split("=")[0].lower(): p.strip() for p in cookie.split(";")}
    assert "httponly" in parts and parts["samesite"].lower() == "samesite=strict"
    assert parts["max-age"] == "Max-Age=28800" and parts["path"] == "Path=/ops"
    assert "secure" not in parts  # plain http here

    r = await harness.client.get("/ops")
    assert r.status_code == 200 and 'data-cid="t2026"' in r.text
    assert 'data-testid="role"' in r.text


async def test_a_token_in_the_url_signs_nobody_in(harness: Harness) -> None:
    r = await harness.client.get(f"/ops?token={ADMIN_TOKEN}")
    assert r.status_code == 200 and "set-cookie" not in r.headers
    assert 'name="token"' in r.text
    r = await harness.client.get("/ops/api/campaigns")
    assert (r.status_code, problem_code(r)) == (401, "unauthorized")


async def test_the_cookie_is_secure_behind_a_trusted_tls_proxy(
    backend: Backend, pg_url: str, harness: Harness
) -> None:
    settings = make_settings(backend, pg_url,
                             trusted_proxies=(ipaddress.ip_network("203.0.113.0/24"),))
    app = create_app(settings)
    async with app.router.lifespan_context(app), client_for(app) as client:
        r = await sign_in(client, ADMIN_TOKEN, **{"X-Forwarded-Proto": "https"})
        assert r.status_code == 303
        assert "secure" in r.headers["set-cookie"].lower()
    async with client_for(harness.app) as untrusted:  # no trusted proxy: the header is ignored
        r = await sign_in(untrusted, ADMIN_TOKEN, **{"X-Forwarded-Proto": "https"})
        assert "secure" not in r.headers["set-cookie"].lower()


async def test_wrong_tokens_are_throttled_per_address(harness: Harness) -> None:
    async with client_for(harness.app, "198.51.100.77") as client:
        for _ in range(LOGIN_FAILURES):
            r = await sign_in(client, "not-the-token-0123456789")
            assert r.status_code == 401, r.text
            assert "set-cookie" not in r.headers
        r = await sign_in(client, ADMIN_TOKEN)  # even the right token waits now
        assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
        assert "set-cookie" not in r.headers
    async with client_for(harness.app, "198.51.100.78") as neighbour:
        assert (await sign_in(neighbour, ADMIN_TOKEN)).status_code == 303


async def test_logout_ends_the_session_even_for_a_kept_cookie(
    harness: Harness, admin: httpx.AsyncClient
) -> None:
    kept = admin.cookies.get(COOKIE, path="/ops")
    assert kept
    assert (await admin.get("/ops/api/campaigns")).status_code == 200
    r = await admin.post("/ops/logout")
    assert r.status_code == 303 and f'{COOKIE}=""' in r.headers["set-cookie"]
    async with client_for(harness.app, "198.51.100.20") as thief:
        thief.cookies.set(COOKIE, kept, path="/ops")
        r = await thief.get("/ops/api/campaigns")
        assert (r.status_code, problem_code(r)) == (401, "unauthorized")


async def test_a_session_ends_when_its_token_is_withdrawn(
    backend: Backend, pg_url: str, harness: Harness, admin: httpx.AsyncClient
) -> None:
    kept = admin.cookies.get(COOKIE, path="/ops")
    assert kept
    settings = make_settings(backend, pg_url, admin_tokens={OPS_TOKEN: "ops"})
    app = create_app(settings)
    async with app.router.lifespan_context(app), client_for(app) as client:
        client.cookies.set(COOKIE, kept, path="/ops")
        assert (await client.get("/ops/api/campaigns")).status_code == 401


async def test_pause_and_resume_take_effect_and_are_audited(
    harness: Harness, admin: httpx.AsyncClient
) -> None:
    await harness.create_campaign()
    token = await harness.voter()
    r = await admin.post("/ops/api/c/t2026/status", json={"status": "paused"})
    assert r.status_code == 200 and r.json()["state"] == "paused"
    r = await harness.vote(token, "c001")
    assert (r.status_code, problem_code(r)) == (403, "voting_closed")
    r = await admin.post("/ops/api/c/t2026/status", json={"status": "paused"})
    assert (r.status_code, problem_code(r)) == (400, "invalid_request")  # already paused
    r = await admin.post("/ops/api/c/t2026/status", json={"status": "open"})
    assert r.status_code == 200 and r.json()["state"] == "open"
    assert (await harness.vote(token, "c001")).status_code == 200

    rows = await harness.pg.fetch(
        "SELECT actor, action, request FROM audit_log WHERE target = 't2026'"
        " AND action LIKE 'campaign.%' ORDER BY id")
    actions = [(r["action"], msgspec.json.decode(r["request"])["status"]) for r in rows
               if r["action"] != "campaign.create"]
    assert actions == [("campaign.pause", "paused"), ("campaign.resume", "open")]
    assert all(r["actor"].startswith("admin:") and r["actor"].endswith("@console")
               for r in rows if r["action"] != "campaign.create")


async def test_writes_from_another_site_are_refused(
    harness: Harness, admin: httpx.AsyncClient
) -> None:
    await harness.create_campaign()
    for headers in ({"Sec-Fetch-Site": "cross-site"},
                    {"Origin": "https://evil.example", "Host": "testserver"}):
        r = await admin.post("/ops/api/c/t2026/status", json={"status": "paused"},
                             headers=headers)
        assert (r.status_code, problem_code(r)) == (403, "forbidden")
    r = await admin.post("/ops/logout", headers={"Sec-Fetch-Site": "cross-site"})
    assert r.status_code == 403
    assert svc_of(harness).registry.get("t2026").c.status == "open"
    r = await admin.post("/ops/api/c/t2026/status", json={"status": "paused"},
                         headers={"Sec-Fetch-Site": "same-origin"})
    assert r.status_code == 200


async def test_the_ops_role_reads_but_cannot_write(
    harness: Harness, ops: httpx.AsyncClient, admin: httpx.AsyncClient
) -> None:
    await harness.create_campaign()
    page = await ops.get("/ops/c/t2026")
    assert page.status_code == 200 and 'data-testid="total"' in page.text
    assert 'data-testid="pause"' not in page.text and 'data-testid="block-add"' not in page.text
    assert 'data-testid="readonly"' in page.text
    assert (await ops.get("/ops/api/c/t2026/live")).status_code == 200
    assert (await ops.get("/ops/api/c/t2026/blocklist")).status_code == 200
    writes: list[tuple[str, str, dict[str, Any] | None]] = [
        ("POST", "/ops/api/c/t2026/status", {"status": "paused"}),
        ("POST", "/ops/api/c/t2026/blocklist",
         {"kind": "ip", "value": "192.0.2.0/24", "reason": "x"}),
        ("POST", "/ops/api/c/t2026/invalidations",
         {"reason": "x", "criteria": {"candidate_id": "c001"}}),
        ("DELETE", "/ops/api/blocklist/1", None),
    ]
    for method, url, body in writes:
        r = await ops.request(method, url, json=body)
        assert (r.status_code, problem_code(r)) == (403, "forbidden"), url
    assert svc_of(harness).registry.get("t2026").c.status == "open"
    assert 'data-testid="pause"' in (await admin.get("/ops/c/t2026")).text


async def test_live_figures_count_votes_and_refusals_by_reason(
    harness: Harness, admin: httpx.AsyncClient
) -> None:
    await harness.create_campaign()
    tokens = [await harness.voter() for _ in range(3)]
    for token in tokens:
        assert (await harness.vote(token, "c002")).status_code == 200
    assert (await harness.vote(tokens[0], "c002")).status_code == 409
    assert (await harness.vote(tokens[0], "nobody")).status_code == 404
    timeline = svc_of(harness).timeline
    assert timeline is not None
    await timeline.ship()

    live = (await admin.get("/ops/api/c/t2026/live")).json()
    public = (await harness.client.get("/api/v1/campaigns/t2026/tallies")).json()
    assert live["total"] == public["total"] == 3
    assert dict((c, v) for c, v, _ in live["candidates"])["c002"] == 3
    sums: dict[str, int] = {}
    for fields in live["seconds"].values():
        for name, n in fields.items():
            sums[name] = sums.get(name, 0) + n
    assert sums == {"o|accepted": 3, "o|already_voted": 1, "o|candidate_not_found": 1,
                    "c|direct": 3, "i|anonymous": 3}

    later = (await admin.get(f"/ops/api/c/t2026/live?since={live['now']}")).json()
    assert later["since"] == live["now"] and later["total"] == 3
    listing = (await admin.get("/ops/api/campaigns")).json()
    assert [(x["id"], x["total"]) for x in listing] == [("t2026", 3)]


async def test_strike_out_blocklist_and_download_from_the_console(
    harness: Harness, admin: httpx.AsyncClient
) -> None:
    await harness.create_campaign()
    for _ in range(4):
        assert (await harness.vote(await harness.voter(), "c003")).status_code == 200
    await drain(harness)
    r = await admin.post("/ops/api/c/t2026/invalidations",
                         json={"reason": "机器刷票", "criteria": {"candidate_id": "c003"}})
    assert r.status_code == 201, r.text
    assert r.json()["votes_invalidated"] == 4
    assert (await redis_tallies(harness)).get("c003", 0) == 0
    r = await admin.post("/ops/api/c/t2026/invalidations",
                         json={"reason": "x", "criteria": {"bogus": 1}})
    assert (r.status_code, problem_code(r)) == (400, "invalid_request")

    r = await admin.post("/ops/api/c/t2026/blocklist",
                         json={"kind": "ip", "value": "192.0.2.9", "reason": "刷票", "hours": 2})
    assert r.status_code == 201, r.text
    entry = r.json()
    assert entry["campaign_id"] == "t2026" and entry["expires_at"] is not None
    listed = (await admin.get("/ops/api/c/t2026/blocklist")).json()
    assert [e["id"] for e in listed] == [entry["id"]]
    assert (await admin.delete(f"/ops/api/blocklist/{entry['id']}")).status_code == 200
    assert (await admin.get("/ops/api/c/t2026/blocklist")).json() == []

    r = await admin.get("/ops/c/t2026/export?format=csv")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    actors = {row["action"]: row["actor"] for row in await harness.pg.fetch(
        "SELECT action, actor FROM audit_log")}
    for action in ("invalidation.create", "blocklist.add", "blocklist.remove",
                   "results.export", "console.login"):
        assert actors[action].startswith("admin:") and actors[action].endswith("@console")


async def test_two_workers_add_up_and_a_pause_reaches_both(
    harness: Harness, admin: httpx.AsyncClient
) -> None:
    """A second app on the same Redis and PostgreSQL plays another worker."""
    await harness.create_campaign()
    other = create_app(harness.settings)
    async with other.router.lifespan_context(other), client_for(other) as second:
        for client in (harness.client, second, second):
            token = (await client.post("/api/v1/campaigns/t2026/voter")).json()["token"]
            r = await client.post("/api/v1/campaigns/t2026/votes", json={"candidate_id": "c004"},
                                  headers={"X-Voter-Token": token})
            assert r.status_code == 200, r.text
        for app in (harness.app, other):
            line = app.state.services.timeline
            assert line is not None
            await line.ship()
        live = (await admin.get("/ops/api/c/t2026/live")).json()
        accepted = sum(f.get("o|accepted", 0) for f in live["seconds"].values())
        assert accepted == 3

        # wrong tokens count on every worker: the throttle lives in Redis
        async with client_for(harness.app, "198.51.100.90") as a, \
                client_for(other, "198.51.100.90") as b:
            for i in range(LOGIN_FAILURES):
                r = await sign_in(a if i % 2 else b, "wrong-token-0123456789")
                assert r.status_code == 401
            assert (await sign_in(b, ADMIN_TOKEN)).status_code == 429

        assert (await admin.post("/ops/api/c/t2026/status",
                                 json={"status": "paused"})).status_code == 200
        token = (await second.post("/api/v1/campaigns/t2026/voter")).json()["token"]

        async def refused() -> bool:
            r = await second.post("/api/v1/campaigns/t2026/votes",
                                  json={"candidate_id": "c005"}, headers={"X-Voter-Token": token})
            return r.status_code == 403 and r.json()["code"] == "voting_closed"

        assert await eventually(refused, within=5.0)


async def test_suspicious_groups_in_chinese_and_struck_out_from_the_console(
    harness: Harness, admin: httpx.AsyncClient
) -> None:
    await harness.create_campaign()
    await history().write(harness)
    found = (await admin.get("/ops/api/c/t2026/suspicious")).json()
    spikes = [g for g in found["groups"] if g["signal"] == "candidate_spike"
              and g["evidence"]["candidate_id"] == "c002"]
    assert spikes, found["groups"]
    spike = spikes[0]
    assert spike["description"].startswith("2号候选人2在约")
    assert "voter_ids" not in spike
    english = (await admin.get("/ops/api/c/t2026/suspicious?lang=en")).json()
    assert any(g["description"] == g["summary"] for g in english["groups"])

    r = await admin.post("/ops/api/c/t2026/invalidations",
                         json={"reason": "集中刷票", "criteria": spike["criteria"]})
    assert r.status_code == 201, r.text
    # exactly the group's votes: the 5-minute grid may have cut the two-minute burst
    assert r.json()["votes_invalidated"] == spike["evidence"]["votes"] >= 30, (spike, r.json())
    after = (await admin.get("/ops/api/c/t2026/suspicious")).json()
    assert not [g for g in after["groups"] if g["signal"] == "candidate_spike"
                and g["evidence"].get("candidate_id") == "c002"]


async def test_the_health_panel_shows_the_web_process_snapshot(
    harness: Harness, admin: httpx.AsyncClient
) -> None:
    await harness.create_campaign()
    for _ in range(3):
        assert (await harness.vote(await harness.voter(), "c001")).status_code == 200
    svc = svc_of(harness)
    svc.health = health.Health.unknown()
    assert (await admin.get("/ops/api/c/t2026/live")).json()["health"] is None  # not yet

    svc.health = await health.measure(harness.redis, svc.db, ["t2026"], harness.settings.shards)
    shown = (await admin.get("/ops/api/c/t2026/live")).json()["health"]
    assert shown["redis_up"] and shown["postgres_up"] and shown["durable"]
    assert (shown["backlog"], shown["drift"], shown["problems"]) == (3, 0, [])
    assert shown["lag_seconds"] > 0

    await harness.redis.hincrby(keys.tally("t2026", 2), "c004", 2)  # a count nothing backs
    svc.health = await health.measure(harness.redis, svc.db, ["t2026"], harness.settings.shards)
    shown = (await admin.get("/ops/api/c/t2026/live")).json()["health"]
    assert shown["drift"] == 2 and shown["drifting"] == ["c004"]
    assert "tally_drift" in shown["problems"]
