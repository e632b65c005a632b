"""The ops console's routes over HTTP: sign-in, throttling, sessions, same-origin writes,
roles, audit, and the live figures (against real Redis, single node and cluster, and
PostgreSQL)."""

from __future__ import annotations

import ipaddress
from typing import Any

import httpx
import msgspec

from tests.conftest import (
    ADMIN_TOKEN,
    Backend,
    Harness,
    client_for,
    drain,
    make_settings,
    redis_tallies,
)
from tests.integration.antifraud_support import eventually
from tests.integration.test_antifraud_suspicious import history
from tests.staff_support import PASSWORD, make_account, next_code, sign_in
from voting_service.app import create_app
from voting_service.ledger import health
from voting_service.redis import keys
from voting_service.services import Services
from voting_service.web.ops.session import COOKIE


def svc_of(h: Harness) -> Services:
    svc: Services = h.app.state.services
    return svc


def problem_code(r: httpx.Response) -> str:
    assert r.headers["content-type"].startswith("application/problem+json"), r.text
    code: str = r.json()["code"]
    return code


async def test_sign_in_sets_a_strict_httponly_expiring_cookie(harness: Harness) -> None:
    await harness.create_campaign()
    secret = await make_account(harness.pg, "zhang.wei")
    r = await harness.client.get("/ops")
    assert r.status_code == 200
    assert '<input id="name" name="name" type="text"' in r.text
    assert '<input id="password" name="password" type="password"' in r.text
    assert 'method="post" action="/ops/login"' in r.text
    assert r.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]

    r = await harness.client.post("/ops/login", data={
        "name": "zhang.wei", "password": PASSWORD, "next": "/ops"})
    assert r.status_code == 303 and r.headers["location"].startswith("/ops/2fa")
    step = r.headers["set-cookie"]
    assert "Max-Age=600" in step  # the password step lasts ten minutes
    # the password alone opens nothing
    assert (await harness.client.get("/ops/api/campaigns")).status_code == 401
    assert 'data-cid="t2026"' not in (await harness.client.get("/ops")).text

    r = await harness.client.post("/ops/2fa", data={"code": next_code(secret), "next": "/ops"})
    assert r.status_code == 303 and r.headers["location"] == "/ops"
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=") and PASSWORD not in cookie and secret not in cookie
    parts = {p.strip().split("=")[0].lower(): p.strip() for p in cookie.split(";")}
    assert "httponly" in parts and parts["samesite"].lower() == "samesite=strict"
    assert parts["max-age"] == "Max-Age=28800" and parts["path"] == "Path=/ops"
    assert "secure" not in parts  # plain http here

    r = await harness.client.get("/ops")
    assert r.status_code == 200 and 'data-cid="t2026"' in r.text
    assert 'data-testid="role"' in r.text and "zhang.wei" in r.text
    rows = await harness.pg.fetch("SELECT actor, action, target FROM audit_log"
                                  " WHERE action LIKE 'console.%' ORDER BY id")
    assert [(x["actor"], x["action"]) for x in rows] == [
        ("admin:zhang.wei@console", "console.sign_in")]


async def test_a_wrong_code_or_a_replayed_one_signs_nobody_in(harness: Harness) -> None:
    secret = await make_account(harness.pg, "chen.jing", "ops")
    r = await harness.client.post("/ops/login", data={"name": "chen.jing",
                                                      "password": PASSWORD})
    assert r.status_code == 303
    wrong = "000000" if next_code(secret) != "000000" else "111111"
    r = await harness.client.post("/ops/2fa", data={"code": wrong})
    assert r.status_code == 401 and 'data-testid="login-error"' in r.text
    assert (await harness.client.get("/ops/api/campaigns")).status_code == 401
    code = next_code(secret)
    r = await harness.client.post("/ops/2fa", data={"code": code})
    assert r.status_code == 303
    async with client_for(harness.app, "198.51.100.5") as other:
        r = await other.post("/ops/login", data={"name": "chen.jing", "password": PASSWORD})
        assert r.status_code == 303
        r = await other.post("/ops/2fa", data={"code": code})  # seen over a shoulder
        assert r.status_code == 401
    failed = await harness.pg.fetch("SELECT target, request FROM audit_log"
                                    " WHERE action = 'console.sign_in_failed' ORDER BY id")
    assert [(x["target"], msgspec.json.decode(x["request"])["reason"]) for x in failed] == [
        ("chen.jing", "code"), ("chen.jing", "code")]


async def test_a_token_in_the_url_signs_nobody_in(harness: Harness) -> None:
    r = await harness.client.get(f"/ops?token={ADMIN_TOKEN}")
    assert r.status_code == 200 and "set-cookie" not in r.headers
    assert 'name="password"' in r.text
    r = await harness.client.get("/ops/api/campaigns")
    assert (r.status_code, problem_code(r)) == (401, "unauthorized")
    # nor does a bearer token posted as a password: machines do not sign in to the console
    r = await harness.client.post("/ops/login", data={"name": "admin", "password": ADMIN_TOKEN})
    assert r.status_code == 401 and "set-cookie" not in r.headers


async def test_the_cookie_is_secure_behind_a_trusted_tls_proxy(
    backend: Backend, pg_url: str, harness: Harness
) -> None:
    secret = await make_account(harness.pg, "zhou.min")
    settings = make_settings(backend, pg_url,
                             trusted_proxies=(ipaddress.ip_network("203.0.113.0/24"),))
    app = create_app(settings)
    async with app.router.lifespan_context(app), client_for(app) as client:
        tls = {"X-Forwarded-Proto": "https"}
        r = await client.post("/ops/login", data={"name": "zhou.min", "password": PASSWORD},
                              headers=tls)
        assert r.status_code == 303 and "secure" in r.headers["set-cookie"].lower()
        # httpx keeps a Secure cookie off plain http: hand it over as the browser would
        step = r.cookies[COOKIE]
        client.cookies.clear()
        r = await client.post("/ops/2fa", data={"code": next_code(secret)},
                              headers=tls | {"Cookie": f"{COOKIE}={step}"})
        assert r.status_code == 303 and r.headers["location"] == "/ops"
        assert "secure" in r.headers["set-cookie"].lower()
    async with client_for(harness.app) as untrusted:  # no trusted proxy: the header is ignored
        r = await sign_in(untrusted, "zhou.min", secret, **{"X-Forwarded-Proto": "https"})
        assert "secure" not in r.headers["set-cookie"].lower()


async def test_wrong_passwords_are_throttled_per_address_and_per_account(
    harness: Harness
) -> None:
    secret = await make_account(harness.pg, "sun.li")
    limit = harness.settings.auth_per_address
    async with client_for(harness.app, "198.51.100.77") as client:
        for _ in range(limit):
            r = await sign_in(client, "sun.li", secret, password="not-the-password-0")
            assert r.status_code == 401, r.text
            assert "set-cookie" not in r.headers
        r = await sign_in(client, "sun.li", secret)  # even the right password waits now
        assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
        assert "set-cookie" not in r.headers
    async with client_for(harness.app, "198.51.100.78") as neighbour:
        assert (await sign_in(neighbour, "sun.li", secret)).status_code == 303
    # the account locks whichever networks the guesses come from
    tried = limit
    for i in range(harness.settings.auth_per_account - tried):
        async with client_for(harness.app, f"192.0.{i + 2}.9") as far:
            r = await sign_in(far, "sun.li", secret, password="not-the-password-0")
            assert r.status_code == 401
    async with client_for(harness.app, "203.0.113.200") as fresh:
        r = await sign_in(fresh, "sun.li", secret)
        assert r.status_code == 429 and int(r.headers["retry-after"]) > 0


async def test_a_disabled_account_is_refused_and_its_sessions_end(
    harness: Harness, admin: httpx.AsyncClient
) -> None:
    secret = await make_account(harness.pg, "ma.ops", "ops")
    async with client_for(harness.app, "198.51.100.40") as person:
        assert (await sign_in(person, "ma.ops", secret)).status_code == 303
        assert (await person.get("/ops/api/campaigns")).status_code == 200
        r = await admin.post("/ops/staff/accounts/ma.ops/disable",
                             headers={"Accept": "text/html"})
        assert r.status_code == 200 and 'data-testid="staff-done"' in r.text
        r = await person.get("/ops/api/campaigns")
        assert (r.status_code, problem_code(r)) == (401, "unauthorized")
    async with client_for(harness.app, "198.51.100.41") as again:
        r = await again.post("/ops/login", data={"name": "ma.ops", "password": PASSWORD})
        assert r.status_code == 403 and "set-cookie" not in r.headers
    actions = [x["action"] for x in await harness.pg.fetch(
        "SELECT action FROM audit_log WHERE target = 'ma.ops' ORDER BY id")]
    assert actions == ["console.sign_in", "account.disable", "console.sign_in_failed"]


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
    row = await harness.pg.fetchrow(
        "SELECT actor, request FROM audit_log WHERE action = 'console.sign_out'")
    assert row["actor"] == "admin:wang.admin@console"
    assert msgspec.json.decode(row["request"])["address"] == "198.51.100.20"


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
                   "results.export", "console.sign_in"):
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

        # wrong passwords count on every worker: the throttle lives in Redis
        secret = await make_account(harness.pg, "two.workers")
        async with client_for(harness.app, "198.51.100.90") as a, \
                client_for(other, "198.51.100.90") as b:
            for i in range(harness.settings.auth_per_address):
                r = await sign_in(a if i % 2 else b, "two.workers", secret, "wrong-password-0")
                assert r.status_code == 401
            assert (await sign_in(b, "two.workers", secret)).status_code == 429

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
