"""WeChat sign-in in a real browser: a phone whose User-Agent is WeChat's opens the vote
page, is sent through the (stand-in) authorisation page and back, and votes."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from playwright.async_api import Browser, expect

from tests.e2e.conftest import PEPPER, Problems, Service, new_phone, running_service
from tests.integration.provider_standins import WechatStandIn, wechat_oauth
from voting_service.embedded import free_port
from voting_service.vote import identity

APP_ID, APP_SECRET = "wx5f0c1e2d3b4a5968", "standin-wechat-app-secret-0123"
WECHAT_UA = ("Mozilla/5.0 (Linux; Android 14; V2302A) AppleWebKit/537.36 (KHTML, like Gecko) "
             "Version/4.0 Chrome/116.0.0.0 Mobile Safari/537.36 MicroMessenger/8.0.47.2560"
             "(0x28002F35) WeChat/arm64 NetType/WIFI Language/zh_CN")


@pytest.fixture(scope="module")
def wechat() -> Iterator[WechatStandIn]:
    with wechat_oauth(APP_ID, APP_SECRET) as state:
        yield state


@pytest.fixture(scope="module")
def wechat_service(single_url: str, migrated: str, wechat: WechatStandIn,
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    port = free_port()
    env = {"VOTING_WECHAT_APP_ID": APP_ID, "VOTING_WECHAT_APP_SECRET": APP_SECRET,
           "VOTING_WECHAT_CALLBACK_BASE": f"http://127.0.0.1:{port}",
           "VOTING_WECHAT_API_BASE": wechat.url,
           "VOTING_WECHAT_AUTHORIZE_URL": f"{wechat.url}/connect/oauth2/authorize"}
    log: Path = tmp_path_factory.mktemp("wechat") / "serve.log"
    with running_service(single_url, migrated, log, env=env, port=port) as svc:
        yield svc


async def test_inside_wechat_the_page_goes_through_the_authorisation_and_votes(
        wechat_service: Service, wechat: WechatStandIn, browser: Browser,
        problems: Problems) -> None:
    cid = wechat_service.create_campaign(rules={"identity": ["wechat", "sms"]})["id"]
    wechat.next_openid = "oBrowserUser" + cid[-8:]
    ctx = await new_phone(browser, user_agent=WECHAT_UA)
    try:
        page = problems.watch(await ctx.new_page())
        await page.goto(f"{wechat_service.url}/c/{cid}/c002")
        # back from WeChat on the page the voter opened, now with a voter cookie
        # (a browser keeps the authorisation URL's #wechat_redirect through the redirects)
        await expect(page).to_have_url(
            re.compile(re.escape(f"{wechat_service.url}/c/{cid}/c002") + "(#wechat_redirect)?$"))
        [visit] = wechat.authorized[-1:]
        assert visit["scope"] == "snsapi_base"
        assert visit["redirect_uri"] == f"{wechat_service.url}/auth/wechat/callback"
        await page.click("button[data-vote=c002]")
        await expect(page.locator("#vs-toast")).to_have_text("投票成功！今日还可投 4 票")
        await expect(page.locator("#vs-sms")).to_be_hidden()
        await wechat_service.drain()
        assert wechat_service.votes(cid)["c002"] == 1
        conn = await asyncpg.connect(wechat_service.database_url)
        try:
            voters = [r["voter_id"] for r in await conn.fetch(
                "SELECT voter_id FROM votes WHERE campaign_id = $1", cid)]
        finally:
            await conn.close()
        assert voters == [identity.voter_id(PEPPER, "wechat",
                                            wechat.next_openid)]
        assert problems.messages == []
    finally:
        await ctx.close()

    # the same page outside WeChat offers SMS, the campaign's other mode
    outside = await new_phone(browser)
    try:
        page = problems.watch(await outside.new_page())
        await page.goto(f"{wechat_service.url}/c/{cid}")
        await expect(page).to_have_url(f"{wechat_service.url}/c/{cid}")
        await page.click("button[data-vote=c001]")
        await expect(page.locator("#vs-sms")).to_be_visible()
    finally:
        await outside.close()
