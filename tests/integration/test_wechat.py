"""WeChat sign-in (official-account web authorisation, ``snsapi_base``) through the app,
against a local stand-in of ``sns/oauth2/access_token`` over real HTTP."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.conftest import ADMIN, Backend, Harness, campaign_payload, client_for, drain
from tests.integration.antifraud_support import NO_LIMITS, problem_code
from tests.integration.provider_standins import WechatStandIn, wechat_oauth
from tests.integration.test_antifraud_sms import all_pg_text, all_redis_text
from voting_service.app import create_app
from voting_service.settings import ConfigurationError, Secret, Settings
from voting_service.vote import identity

CID = "t2026"
APP_ID, APP_SECRET = "wx5f0c1e2d3b4a5968", "standin-wechat-app-secret-0123"
CALLBACK_BASE = "https://vote.example.cn"
WECHAT_UA = ("Mozilla/5.0 (Linux; Android 14; V2302A) AppleWebKit/537.36 (KHTML, like Gecko) "
             "Version/4.0 Chrome/116.0.0.0 Mobile Safari/537.36 XWEB/1160083 "
             "MMWEBSDK/20240301 MicroMessenger/8.0.47.2560(0x28002F35) WeChat/arm64 "
             "NetType/WIFI Language/zh_CN")
PHONE_UA = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
            "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1")
OPENID = "oLVPpjqs9BhvzwPj5A-vTYAX3GLc"


@pytest.fixture
def standin() -> Iterator[WechatStandIn]:
    with wechat_oauth(APP_ID, APP_SECRET) as state:
        yield state


def wechat_settings(backend: Backend, pg_url: str, api: str, **overrides: Any) -> Settings:
    from tests.conftest import make_settings

    values: dict[str, Any] = {
        "wechat_app_id": APP_ID, "wechat_app_secret": Secret(APP_SECRET),
        "wechat_callback_base": CALLBACK_BASE, "wechat_api_base": api,
        "redis_timeout": 30.0, **overrides}
    return make_settings(backend, pg_url, **values)


@pytest.fixture
async def h(harness: Harness, backend: Backend, pg_url: str,
            standin: WechatStandIn) -> AsyncIterator[Harness]:
    settings = wechat_settings(backend, pg_url, standin.url)
    app = create_app(settings)
    async with app.router.lifespan_context(app), client_for(app) as client:
        for cid, modes in ((CID, ["wechat", "sms"]), ("anon", ["anonymous"])):
            r = await client.post("/api/v1/admin/campaigns", headers=ADMIN, json=campaign_payload(
                cid, rules={**NO_LIMITS, "identity": modes}))
            assert r.status_code == 201, r.text
        yield Harness(app, client, settings, harness.redis, harness.pg)


async def leave_for_wechat(client: httpx.AsyncClient, path: str = f"/c/{CID}") -> str:
    """Open a vote page inside WeChat: the answer sends the browser to the authorisation
    page; returns the ``state`` WeChat would hand back."""
    r = await client.get(path, headers={"User-Agent": WECHAT_UA})
    assert r.status_code == 302, r.text
    location = r.headers["location"]
    url = urlsplit(location)
    assert f"{url.scheme}://{url.netloc}{url.path}" == (
        "https://open.weixin.qq.com/connect/oauth2/authorize")
    assert url.fragment == "wechat_redirect"
    q = {k: v[0] for k, v in parse_qs(url.query).items()}
    assert list(q) == ["appid", "redirect_uri", "response_type", "scope", "state"]
    assert q["appid"] == APP_ID
    assert q["redirect_uri"] == f"{CALLBACK_BASE}/auth/wechat/callback"
    assert (q["response_type"], q["scope"]) == ("code", "snsapi_base")
    assert q["state"].isalnum() and len(q["state"]) <= 128
    assert r.headers["cache-control"] == "no-store"
    assert "vs_wx_state" in client.cookies
    return q["state"]


async def come_back(client: httpx.AsyncClient, code: str, state: str,
                    **headers: str) -> httpx.Response:
    return await client.get("/auth/wechat/callback", params={"code": code, "state": state},
                            headers=headers)


async def test_inside_wechat_the_page_signs_in_silently_and_the_openid_votes(
        h: Harness, standin: WechatStandIn, caplog: pytest.LogCaptureFixture) -> None:
    state = await leave_for_wechat(h.client, f"/c/{CID}/c003")
    standin.issue("071AbCdEfGh", OPENID)
    caplog.set_level(logging.INFO, logger="httpx")
    r = await come_back(h.client, "071AbCdEfGh", state)
    assert r.status_code == 303, r.text
    # httpx logs the exchange's URL at INFO: the AppSecret and the code are masked there
    [logged] = [m for m in caplog.messages if "/sns/oauth2/access_token" in m]
    assert f"appid={APP_ID}&secret=%2A%2A%2A&code=%2A%2A%2A&grant_type" in logged, logged
    assert APP_SECRET not in caplog.text and OPENID not in caplog.text
    assert r.headers["location"] == f"/c/{CID}/c003", "back to the page the voter opened"
    [asked] = standin.received
    assert asked == {"appid": APP_ID, "secret": APP_SECRET, "code": "071AbCdEfGh",
                     "grant_type": "authorization_code"}
    assert "vs_wx_state" not in h.client.cookies, "the state cookie is used once"
    token = h.client.cookies[f"vs_voter_{CID}"]
    # now signed in: the page renders instead of redirecting again
    r = await h.client.get(f"/c/{CID}", headers={"User-Agent": WECHAT_UA})
    assert r.status_code == 200
    r = await h.client.post(f"/api/v1/campaigns/{CID}/votes", json={"candidate_id": "c001"})
    assert r.status_code == 200, r.text
    voter = identity.voter_id(str(h.settings.pepper), "wechat", OPENID)
    assert h.app.state.services.tokens.credential(token, CID) == (voter, "wechat")

    # a second trip (another phone session, same WeChat user) is the same voter
    h.client.cookies.clear()
    state = await leave_for_wechat(h.client)
    standin.issue("071second", OPENID)
    assert (await come_back(h.client, "071second", state)).status_code == 303
    r = await h.client.post(f"/api/v1/campaigns/{CID}/votes", json={"candidate_id": "c001"})
    assert (r.status_code, problem_code(r)) == (409, "already_voted")

    await drain(h)
    assert [r["voter_id"] for r in await h.pg.fetch("SELECT voter_id FROM votes")] == [voter]
    assert OPENID not in await all_redis_text(h.redis)
    assert OPENID not in await all_pg_text(h.pg)


async def test_outside_wechat_the_page_offers_the_other_modes(h: Harness) -> None:
    r = await h.client.get(f"/c/{CID}", headers={"User-Agent": PHONE_UA})
    assert r.status_code == 200
    assert '"identity":["wechat","sms"]' in r.text
    assert '"wechat":"/auth/wechat/start?campaign_id=t2026' in r.text
    # a campaign that does not allow WeChat: no redirect even inside WeChat
    r = await h.client.get("/c/anon", headers={"User-Agent": WECHAT_UA})
    assert r.status_code == 200 and '"wechat":""' in r.text
    r = await h.client.get("/auth/wechat/start", params={"campaign_id": "anon"})
    assert (r.status_code, problem_code(r)) == (403, "forbidden")
    # after a failed sign-in the way back does not loop into WeChat again
    r = await h.client.get(f"/c/{CID}?wechat=0", headers={"User-Agent": WECHAT_UA})
    assert r.status_code == 200


async def test_the_state_must_be_this_browsers(h: Harness, standin: WechatStandIn) -> None:
    state = await leave_for_wechat(h.client)
    standin.issue("071good", OPENID)
    r = await come_back(h.client, "071good", state[:-1] + ("a" if state[-1] != "a" else "b"))
    assert (r.status_code, problem_code(r)) == (400, "wechat_state_invalid")
    # another browser with a code and state of this one's trip (login CSRF)
    async with client_for(h.app, ip="198.51.100.9") as other:
        r = await come_back(other, "071good", state)
        assert (r.status_code, problem_code(r)) == (400, "wechat_state_invalid")
    assert standin.received == [], "nothing is exchanged without the matching state"
    r = await come_back(h.client, "071good", state)
    assert r.status_code == 303


async def test_wechat_errors_are_clear_problems(h: Harness, standin: WechatStandIn) -> None:
    async def trip(code: str, **headers: str) -> httpx.Response:
        h.client.cookies.clear()
        return await come_back(h.client, code, await leave_for_wechat(h.client), **headers)

    r = await trip("not-a-code")
    assert (r.status_code, problem_code(r), r.json()["errcode"]) == (
        400, "wechat_code_invalid", 40029)
    standin.issue("071once", OPENID)
    assert (await trip("071once")).status_code == 303
    r = await trip("071once")
    assert (r.status_code, problem_code(r), r.json()["errcode"]) == (400, "wechat_code_used", 40163)
    # a page WeChat shows as a snapshot gets a virtual openid: it signs no one in
    standin.snapshot = True
    standin.issue("071snap", OPENID)
    r = await trip("071snap")
    assert (r.status_code, problem_code(r)) == (403, "wechat_snapshot_user")
    assert "vs_voter_" not in r.headers.get("set-cookie", "")
    standin.snapshot = False
    standin.limited = True
    r = await trip("071x")
    assert (r.status_code, problem_code(r)) == (429, "wechat_rate_limited")
    assert r.headers["retry-after"] == "60"
    standin.limited, standin.busy = False, True
    r = await trip("071y")
    assert (r.status_code, problem_code(r), r.json()["errcode"]) == (503, "wechat_unavailable", -1)
    # a browser gets a page that leads back to the vote page's other modes
    r = await trip("071z", Accept="text/html,application/xhtml+xml")
    assert r.status_code == 503 and r.headers["content-type"].startswith("text/html")
    assert 'data-code="wechat_unavailable"' in r.text and f"/c/{CID}?wechat=0" in r.text
    assert r.headers["cache-control"] == "no-store"
    assert standin.rejected == ["40029", "40163", "45011", "-1", "-1"]


async def test_a_wrong_app_secret_is_unavailable_not_a_crash(
        harness: Harness, backend: Backend, pg_url: str, standin: WechatStandIn) -> None:
    settings = wechat_settings(backend, pg_url, standin.url,
                               wechat_app_secret=Secret("not-the-secret"))
    app = create_app(settings)
    async with app.router.lifespan_context(app), client_for(app) as client:
        r = await client.post("/api/v1/admin/campaigns", headers=ADMIN, json=campaign_payload(
            CID, rules={**NO_LIMITS, "identity": ["wechat"]}))
        assert r.status_code == 201
        state = await leave_for_wechat(client)
        standin.issue("071s", OPENID)
        r = await come_back(client, "071s", state)
        assert (r.status_code, problem_code(r), r.json()["errcode"]) == (
            503, "wechat_unavailable", 40125)


async def test_without_settings_wechat_is_not_offered(harness: Harness) -> None:
    await harness.create_campaign(rules={**NO_LIMITS, "identity": ["wechat", "anonymous"]})
    r = await harness.client.get(f"/c/{CID}", headers={"User-Agent": WECHAT_UA})
    assert r.status_code == 200 and '"wechat":""' in r.text
    r = await harness.client.get("/auth/wechat/start", params={"campaign_id": CID})
    assert (r.status_code, problem_code(r)) == (404, "wechat_not_configured")
    r = await harness.client.get("/auth/wechat/callback", params={"code": "x", "state": "y"})
    assert (r.status_code, problem_code(r)) == (400, "wechat_state_invalid")


def test_wechat_settings_come_together() -> None:
    base = {"VOTING_SECRET_KEY": "k" * 20, "VOTING_PEPPER": "p" * 20}
    with pytest.raises(ConfigurationError, match="together"):
        Settings.from_env({**base, "VOTING_WECHAT_APP_ID": APP_ID})
    s = Settings.from_env({**base, "VOTING_WECHAT_APP_ID": APP_ID,
                           "VOTING_WECHAT_APP_SECRET": APP_SECRET,
                           "VOTING_WECHAT_CALLBACK_BASE": "https://vote.example.cn/"})
    assert s.wechat_enabled and s.wechat_callback_base == "https://vote.example.cn"
    assert s.wechat_api_base == "https://api.weixin.qq.com"
    assert APP_SECRET not in repr(s)


async def test_the_domain_check_file_is_served_when_configured(
        harness: Harness, backend: Backend, pg_url: str, standin: WechatStandIn) -> None:
    r = await harness.client.get("/MP_verify_a1B2c3D4e5F6g7H8.txt")
    assert (r.status_code, problem_code(r)) == (404, "not_found"), "off unless configured"
    settings = wechat_settings(backend, pg_url, standin.url,
                               wechat_mp_verify="MP_verify_a1B2c3D4e5F6g7H8.txt")
    app = create_app(settings)
    async with app.router.lifespan_context(app), client_for(app) as client:
        r = await client.get("/MP_verify_a1B2c3D4e5F6g7H8.txt")
        assert (r.status_code, r.text) == (200, "a1B2c3D4e5F6g7H8")
        assert r.headers["content-type"].startswith("text/plain")
        r = await client.get("/MP_verify_other.txt")
        assert r.status_code == 404
    with pytest.raises(ConfigurationError, match="MP_verify"):
        Settings.from_env({"VOTING_SECRET_KEY": "k" * 20, "VOTING_PEPPER": "p" * 20,
                           "VOTING_WECHAT_MP_VERIFY": "../etc/passwd"})
