"""Security headers, CORS and the cross-site check of ``SecurityMiddleware`` on the real app."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from tests.conftest import ADMIN, Backend, Harness, client_for, make_settings
from voting_service.app import create_app
from voting_service.redis import store
from voting_service.web.server.security import API_CSP, SecurityMiddleware, normalize_origin

LISTED = "https://news.example.com"
WILDCARD_HOST = "https://m.example.org"
EVIL = "https://evil.example"


async def with_channel(harness: Harness) -> None:
    await harness.create_campaign()
    r = await harness.client.post(
        "/api/v1/admin/campaigns/t2026/channels",
        json={"id": "media", "name": "媒体", "allowed_origins": [
            f"{LISTED}/", "https://*.example.org", "https://bad.example; script-src *"]},
        headers=ADMIN,
    )
    assert r.status_code == 201, r.text


async def test_every_api_response_has_the_baseline_headers(harness: Harness) -> None:
    await harness.create_campaign()
    for r in (await harness.client.get("/api/v1/campaigns/t2026"),
              await harness.client.get("/api/v1/campaigns/nope"),
              await harness.vote(await harness.voter(), "c001")):
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["referrer-policy"] == "strict-origin-when-cross-origin"
        assert r.headers["content-security-policy"] == API_CSP
        assert r.headers["x-frame-options"] == "DENY"
        assert "strict-transport-security" not in r.headers
        assert "access-control-allow-origin" not in r.headers


async def test_hsts_over_https_and_behind_a_trusted_proxy_only(harness: Harness) -> None:
    transport = httpx.ASGITransport(app=harness.app, client=("203.0.113.7", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as tls:
        r = await tls.get("/healthz")
    assert r.headers["strict-transport-security"] == "max-age=31536000"

    # X-Forwarded-Proto counts only from a trusted proxy
    r = await harness.client.get("/healthz", headers={"X-Forwarded-Proto": "https"})
    assert "strict-transport-security" not in r.headers
    behind_proxy = SecurityMiddleware(
        harness.app, trusted_proxies=[ipaddress.ip_network("203.0.113.0/24")])
    transport = httpx.ASGITransport(app=behind_proxy, client=("203.0.113.7", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as proxied:
        r = await proxied.get("/healthz", headers={"X-Forwarded-Proto": "https"})
    assert r.headers["strict-transport-security"] == "max-age=31536000"


async def test_pages_allow_only_their_own_scripts(harness: Harness) -> None:
    await harness.create_campaign()
    for path in ("/", "/c/t2026", "/c/t2026/c001", "/c/nope"):
        r = await harness.client.get(path)
        csp = r.headers["content-security-policy"]
        assert "script-src 'self';" in csp and "unsafe-inline" not in csp, path
        assert "unsafe-eval" not in csp and csp.endswith("frame-ancestors 'none'"), path
        assert r.headers["x-frame-options"] == "DENY"
        # no inline code the policy would have to allow: only src= or JSON data scripts
        for tag in re.findall(r"<script\b[^>]*>", r.text):
            assert "src=" in tag or 'type="application/json"' in tag, tag
        assert not re.search(r"\son[a-z]+=", r.text) and " style=" not in r.text


async def test_embed_is_framed_only_by_the_channels_origins(harness: Harness) -> None:
    await with_channel(harness)
    r = await harness.client.get("/embed/t2026?channel=media")
    assert r.status_code == 200
    csp = r.headers["content-security-policy"]
    # the malformed origin is dropped, not pasted into the header
    assert csp.endswith(f"frame-ancestors {LISTED} https://*.example.org")
    assert "x-frame-options" not in r.headers
    for path in ("/embed/t2026?channel=other", "/embed/t2026", "/embed/nope?channel=media"):
        r = await harness.client.get(path)
        assert r.status_code == 404, path
        assert r.headers["content-security-policy"].endswith("frame-ancestors 'none'")


@pytest.mark.parametrize("path", ["", "/candidates", "/candidates/c001", "/tallies"])
async def test_cors_only_for_listed_origins_on_read_paths(harness: Harness, path: str) -> None:
    await with_channel(harness)
    url = f"/api/v1/campaigns/t2026{path}"
    for origin, allowed in ((LISTED, True), (WILDCARD_HOST, True), (EVIL, False),
                            ("https://example.org", False), ("null", False)):
        r = await harness.client.get(url, headers={"Origin": origin})
        assert r.status_code == 200
        assert r.headers.get("access-control-allow-origin") == (origin if allowed else None)
        assert "Origin" in r.headers.get_list("vary")
        assert "access-control-allow-credentials" not in r.headers
    preflight = await harness.client.options(url, headers={
        "Origin": LISTED, "Access-Control-Request-Method": "GET"})
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == LISTED
    assert preflight.headers["access-control-allow-methods"] == "GET"


async def test_no_cors_on_state_changing_paths(harness: Harness) -> None:
    await with_channel(harness)
    for url in ("/api/v1/campaigns/t2026/votes", "/api/v1/campaigns/t2026/voter"):
        r = await harness.client.options(url, headers={
            "Origin": LISTED, "Access-Control-Request-Method": "POST"})
        assert "access-control-allow-origin" not in r.headers
    token = await harness.voter()
    r = await harness.client.post(
        "/api/v1/campaigns/t2026/votes", json={"candidate_id": "c001"},
        headers={"X-Voter-Token": token, "Origin": LISTED, "Sec-Fetch-Site": "cross-site"},
    )
    assert r.status_code == 403 and "access-control-allow-origin" not in r.headers


@pytest.mark.parametrize(("headers", "accepted"), [
    ({}, True),  # no browser page: a server or a script
    ({"Sec-Fetch-Site": "same-origin", "Origin": "http://testserver"}, True),
    ({"Origin": "http://testserver"}, True),  # a browser without Sec-Fetch-*
    ({"Sec-Fetch-Site": "cross-site", "Origin": EVIL}, False),
    ({"Sec-Fetch-Site": "same-site", "Origin": "http://sub.testserver"}, False),
    ({"Sec-Fetch-Site": "cross-site", "Origin": LISTED}, False),  # media pages use the iframe
    ({"Origin": EVIL}, False),
    ({"Origin": "null"}, False),
    ({"Sec-Fetch-Site": "cross-site"}, False),
])
async def test_state_changing_requests_must_be_same_origin(
    harness: Harness, headers: dict[str, str], accepted: bool
) -> None:
    await with_channel(harness)
    token = await harness.voter()
    r = await harness.client.post(
        "/api/v1/campaigns/t2026/votes", json={"candidate_id": "c002"},
        headers={"X-Voter-Token": token, **headers},
    )
    tallies = (await harness.client.get("/api/v1/campaigns/t2026/tallies")).json()
    counted = {c["candidate_id"]: c["votes"] for c in tallies["candidates"]}["c002"]
    if accepted:
        assert r.status_code == 200, r.text
        assert counted == 1
    else:
        assert r.status_code == 403
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["code"] == "forbidden"
        assert counted == 0
    # the same check guards minting voters and the admin API
    r = await harness.client.post("/api/v1/campaigns/t2026/voter", headers=headers)
    assert r.status_code == (201 if accepted else 403)
    r = await harness.client.patch("/api/v1/admin/campaigns/t2026", json={"status": "open"},
                                   headers={**ADMIN, **headers})
    assert r.status_code == (200 if accepted else 403)


@pytest.mark.parametrize(("raw", "expected"), [
    ("https://News.Example.com/", "https://news.example.com"),
    ("https://a.example:443", "https://a.example"),
    ("http://a.example:80", "http://a.example"),
    ("http://localhost:8080", "http://localhost:8080"),
    ("https://*.example.org", "https://*.example.org"),
    ("http://[::1]:9000", "http://[::1]:9000"),
    ("https://a.example/path", None),
    ("https://a.example; script-src *", None),
    ("https://a.example 'unsafe-inline'", None),
    ("https://user@a.example", None),
    ("javascript:alert(1)", None),
    ("ftp://a.example", None),
    ("null", None),
    ("*", None),
])
def test_normalize_origin(raw: str, expected: str | None) -> None:
    assert normalize_origin(raw) == expected


# --- Secure cookies behind a TLS-terminating proxy -------------------------------------


@pytest.fixture
async def behind_tls_proxy(
    backend: Backend, pg_url: str, redis: store.AnyRedis, pg: asyncpg.Connection
) -> AsyncIterator[Harness]:
    """The app behind a trusted proxy (the test client's peer) that terminates TLS."""
    settings = make_settings(
        backend, pg_url, trusted_proxies=(ipaddress.ip_network("203.0.113.0/24"),))
    app = create_app(settings)
    async with app.router.lifespan_context(app), client_for(app) as client:
        yield Harness(app, client, settings, redis, pg)


def _voter_cookie(r: httpx.Response) -> str:
    [cookie] = [v for k, v in r.headers.multi_items() if k == "set-cookie"]
    assert cookie.startswith("vs_voter_t2026="), cookie
    return cookie.lower()


async def test_cookies_are_secure_when_a_trusted_proxy_says_https(
    behind_tls_proxy: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    h = behind_tls_proxy
    await h.create_campaign(rules={"identity": ["anonymous", "sms"]})
    voter = "/api/v1/campaigns/t2026/voter"
    for proto, secure in (("https", True), ("HTTPS", True), ("http", False),
                          ("https, http", False), ("http, https", True), (None, False)):
        headers = {"X-Forwarded-Proto": proto} if proto else {}
        cookie = _voter_cookie(await h.client.post(voter, headers=headers))
        assert ("; secure" in cookie) is secure, (proto, cookie)
        assert "; httponly" in cookie and "samesite=lax" in cookie
    # the SMS sign-in's cookie follows the same rule
    start = await h.client.post("/api/v1/auth/sms/start",
                                json={"phone": "13800138000", "campaign_id": "t2026"})
    assert start.status_code == 202, start.text
    [code] = re.findall(r"\(code ([0-9]{6})\)", capsys.readouterr().out)
    r = await h.client.post("/api/v1/auth/sms/verify", headers={"X-Forwarded-Proto": "https"},
                            json={"phone": "13800138000", "code": code, "campaign_id": "t2026"})
    assert r.status_code == 200, r.text
    assert "; secure" in _voter_cookie(r)


async def test_forwarded_proto_from_an_untrusted_peer_sets_no_secure(harness: Harness) -> None:
    await harness.create_campaign()
    r = await harness.client.post("/api/v1/campaigns/t2026/voter",
                                  headers={"X-Forwarded-Proto": "https"})
    assert "; secure" not in _voter_cookie(r)
    transport = httpx.ASGITransport(app=harness.app, client=("203.0.113.7", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as tls:
        r = await tls.post("/api/v1/campaigns/t2026/voter")
    assert "; secure" in _voter_cookie(r), "a TLS socket is https without any proxy"
