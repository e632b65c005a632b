"""The citizens' pages and the embed widget in headless Chromium, against the real service.

Each test makes its own campaign; the service runs as a process on the session's Valkey and
PostgreSQL, and a second HTTP server plays the media site (another origin).
"""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
import pytest
from playwright.async_api import Browser, BrowserContext, Page, Request, Route, expect

from tests.conftest import ADMIN, campaign_payload
from tests.e2e.conftest import (
    PHONE,
    MediaSite,
    Problems,
    Service,
    new_phone,
    screenshot_path,
)
from voting_service.demo import demo_campaign

pytestmark = pytest.mark.e2e

BUDGET = 60 * 1024
VISIBLE = "#vs-list .card:not([hidden])"


async def open_page(ctx: BrowserContext, problems: Problems, url: str) -> Page:
    page = problems.watch(await ctx.new_page())
    await page.goto(url)
    return page


async def visible_ids(page: Page) -> list[str]:
    return [str(x) for x in await page.locator(VISIBLE).evaluate_all(
        "cards => cards.map(c => c.dataset.id)")]


async def test_list_loads_filters_and_sorts(
    service: Service, browser: Browser, phone: BrowserContext, problems: Problems
) -> None:
    cid = service.create_campaign()["id"]
    for candidate in ("c005", "c005", "c009"):
        assert service.cast(cid, candidate).status_code == 200
    page = await open_page(phone, problems, f"{service.url}/c/{cid}")

    await expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    rules = "每天可投 5 票，每位候选人每天限投 1 票"
    await expect(page.locator(".hero .rules")).to_have_text(rules)
    await expect(page.locator(".hero .when")).to_contain_text("（北京时间）")
    await expect(page.locator("#vs-total")).to_have_text("3")
    await expect(page.locator(VISIBLE)).to_have_count(12)
    await expect(page.locator("#vs-count")).to_have_text("共 12 位候选人")
    await expect(page.locator("[data-id=c005] .cnt b")).to_have_text("2")
    images = page.locator("#vs-list img")
    assert set(await images.evaluate_all("xs => xs.map(x => x.loading)")) == {"lazy"}

    await page.fill("#vs-q", "12号")
    await expect(page.locator(VISIBLE)).to_have_count(1)
    assert await visible_ids(page) == ["c012"]
    await page.fill("#vs-q", "候选人7")
    await expect(page.locator(VISIBLE)).to_have_count(1)
    assert await visible_ids(page) == ["c007"]
    await page.fill("#vs-q", "不存在的人")
    await expect(page.locator("#vs-empty")).to_be_visible()
    await page.fill("#vs-q", "")

    await page.select_option("#vs-region", "苏州市")
    await expect(page.locator(VISIBLE)).to_have_count(4)
    await page.select_option("#vs-industry", "装备制造")
    await expect(page.locator(VISIBLE)).to_have_count(2)
    assert await visible_ids(page) == ["c001", "c007"]
    await expect(page.locator("#vs-count")).to_have_text("共 2 位候选人")
    assert "region=" in page.url and "industry=" in page.url

    # the same address without JavaScript: the server applies the filters itself
    no_js = await browser.new_context(java_script_enabled=False, locale="zh-CN")
    try:
        plain = await no_js.new_page()
        await plain.goto(page.url)
        assert await visible_ids(plain) == ["c001", "c007"]
        await expect(plain.locator("noscript").first).to_be_attached()
    finally:
        await no_js.close()

    await page.select_option("#vs-region", "")
    await page.select_option("#vs-industry", "")
    await page.select_option("#vs-sort", "votes")
    await expect(page.locator(VISIBLE)).to_have_count(12)
    assert (await visible_ids(page))[:2] == ["c005", "c009"]
    await page.select_option("#vs-sort", "number")
    assert (await visible_ids(page))[:3] == ["c001", "c002", "c003"]
    assert problems.messages == []


async def test_english_by_query_or_browser_language(
    service: Service, browser: Browser, phone: BrowserContext, problems: Problems
) -> None:
    cid = service.create_campaign()["id"]
    page = await open_page(phone, problems, f"{service.url}/c/{cid}?lang=en")
    await expect(page.locator("html")).to_have_attribute("lang", "en")
    await expect(page.locator(".hero .rules")).to_have_text(
        "You have 5 votes a day, at most 1 per candidate per day")
    await expect(page.locator("[data-id=c001] button.vote")).to_have_text("Vote")

    english_phone = await new_phone(browser, locale="en-US")
    try:
        page = await open_page(english_phone, problems, f"{service.url}/c/{cid}")
        await expect(page.locator("html")).to_have_attribute("lang", "en")
        await page.click("button[data-vote=c002]")
        await expect(page.locator("#vs-toast")).to_have_text("Thank you! 4 votes left today")
        page = await open_page(english_phone, problems, f"{service.url}/c/{cid}?lang=zh")
        await expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    finally:
        await english_phone.close()
    assert problems.messages == []


async def test_vote_with_proof_of_work_updates_the_count(
    service: Service, phone: BrowserContext, problems: Problems
) -> None:
    cid = service.create_campaign(
        rules={"challenge": "on", "challenge_max_number": 20000})["id"]
    page = await open_page(phone, problems, f"{service.url}/c/{cid}")
    sent: list[dict[str, Any]] = []

    def record(request: Request) -> None:
        if request.url.endswith(("/votes", "/voter")):
            body = request.post_data_json
            assert isinstance(body, dict)
            sent.append(body)

    page.on("request", record)

    await page.click("button[data-vote=c003]")
    await expect(page.locator("#vs-toast")).to_have_text("投票成功！今日还可投 4 票")
    await expect(page.locator("[data-id=c003] .cnt b")).to_have_text("1")
    await expect(page.locator("#vs-total")).to_have_text("1")
    button = page.locator("button[data-vote=c003]")
    await expect(button).to_have_text("今日已投")
    await expect(button).to_be_disabled()
    assert service.votes(cid)["c003"] == 1

    # the new voter token and the vote each carried an ALTCHA solution, found by the Worker
    assert len(sent) == 2 and len(sent[1]["vote_id"]) == 32
    minted, proof = (json.loads(base64.b64decode(s["proof"])) for s in sent)
    assert proof["algorithm"] == "SHA-256" and isinstance(proof["number"], int)
    assert minted["salt"] != proof["salt"] and isinstance(minted["number"], int)
    assert any("pow.js" in w.url for w in page.workers)

    # after a reload the page still knows today's vote (kept on the phone, not the server)
    await page.reload()
    await expect(page.locator("button[data-vote=c003]")).to_have_text("今日已投")
    await expect(page.locator("button[data-vote=c004]")).to_have_text("投票")
    assert problems.messages == []


async def test_second_vote_for_the_same_candidate_says_already_voted(
    service: Service, phone: BrowserContext, problems: Problems
) -> None:
    cid = service.create_campaign()["id"]
    first = await open_page(phone, problems, f"{service.url}/c/{cid}")
    second = await open_page(phone, problems, f"{service.url}/c/{cid}")  # an older tab

    await first.click("button[data-vote=c002]")
    await expect(first.locator("#vs-toast")).to_have_text("投票成功！今日还可投 4 票")
    await second.click("button[data-vote=c002]")
    await expect(second.locator("#vs-toast")).to_have_text("今天已经为 TA 投过票了，明天再来吧")
    await expect(second.locator("button[data-vote=c002]")).to_have_text("今日已投")
    assert service.votes(cid)["c002"] == 1
    assert problems.messages == []


async def test_exhausted_quota_says_when_it_resets(
    service: Service, phone: BrowserContext, problems: Problems
) -> None:
    cid = service.create_campaign(rules={"votes_per_day": 2})["id"]
    page = await open_page(phone, problems, f"{service.url}/c/{cid}")
    toast = page.locator("#vs-toast")

    await page.click("button[data-vote=c001]")
    await expect(toast).to_have_text("投票成功！今日还可投 1 票")
    # the same voter spends the last vote elsewhere (another tab, the API): this page still
    # offers its buttons until the service refuses
    token = await page.evaluate(f"localStorage.getItem('vs:t:{cid}')")
    assert token and service.cast(cid, "c004", token=str(token)).status_code == 200
    await page.click("button[data-vote=c003]")
    # the quota resets at midnight in the campaign's time zone (Beijing)
    await expect(toast).to_have_text("今天的票已用完，明天 00:00（北京时间）恢复")
    used = page.locator("button[data-vote]", has_text="今日票已用完")
    await expect(used).to_have_count(11)  # every button but the one voted for
    await expect(page.locator("button[data-vote]:enabled")).to_have_count(0)
    await expect(page.locator("button[data-vote=c001]")).to_have_text("今日已投")
    await page.reload()
    await expect(used).to_have_count(11)
    await expect(page.locator("button[data-vote]:enabled")).to_have_count(0)
    assert service.votes(cid)["c003"] == 0
    assert problems.messages == []


async def test_last_vote_of_the_day_disables_every_button_in_english(
    service: Service, phone: BrowserContext, problems: Problems
) -> None:
    cid = service.create_campaign(rules={"votes_per_day": 2})["id"]
    page = await open_page(phone, problems, f"{service.url}/c/{cid}?lang=en")
    toast = page.locator("#vs-toast")
    await expect(page.locator(".hero .rules")).to_have_text(
        "You have 2 votes a day, at most 1 per candidate per day")
    await page.click("button[data-vote=c001]")
    await expect(toast).to_have_text("Thank you! 1 vote left today")
    await expect(page.locator("[data-id=c001] .cnt")).to_have_text("1 vote")
    await page.click("button[data-vote=c002]")
    await expect(toast).to_have_text(
        "Thank you! That was your last vote today; come back tomorrow")
    await expect(page.locator("button[data-vote]", has_text="None left today")).to_have_count(10)
    await page.reload()
    await expect(page.locator("button[data-vote]", has_text="None left today")).to_have_count(10)
    await expect(page.locator("button[data-vote]", has_text="Voted today")).to_have_count(2)
    await page.fill("#vs-q", "11")
    await expect(page.locator("#vs-count")).to_have_text("1 candidate")
    assert problems.messages == []


async def test_region_filter_lists_the_cities_in_official_order(
    service: Service, phone: BrowserContext, problems: Problems
) -> None:
    regions = ["宿迁市", "省总工会", "南京市", "镇江市", "无锡市", "连云港市", "苏州市"]
    cid = f"e2e{uuid.uuid4().hex[:10]}"
    payload = campaign_payload(cid=cid, candidates=len(regions))
    for cand, region in zip(payload["candidates"], regions, strict=True):
        cand["region"] = region
    r = service.client.post("/api/v1/admin/campaigns", json=payload, headers=ADMIN)
    assert r.status_code == 201, r.text
    page = await open_page(phone, problems, f"{service.url}/c/{cid}")
    options = await page.locator("#vs-region option").all_inner_texts()
    assert options[1:] == ["南京市", "无锡市", "苏州市", "连云港市", "镇江市", "宿迁市",
                           "省总工会"]
    assert problems.messages == []


async def test_paused_campaign_shows_closed(
    service: Service, phone: BrowserContext, problems: Problems
) -> None:
    cid = service.create_campaign()["id"]
    page = await open_page(phone, problems, f"{service.url}/c/{cid}")
    await expect(page.locator("#vs-state")).to_be_hidden()

    service.set_status(cid, "paused")  # while the page is open
    await page.click("button[data-vote=c001]")
    await expect(page.locator("#vs-toast")).to_have_text("投票已暂停，请稍后再来")
    await expect(page.locator("#vs-state")).to_have_text("投票已暂停，请稍后再来")
    await expect(page.locator("button[data-vote]:enabled")).to_have_count(0)

    await page.reload()
    await expect(page.locator("#vs-state")).to_have_text("投票已暂停")
    await expect(page.locator("button[data-vote]")).to_have_count(12)
    await expect(page.locator("button[data-vote]:enabled")).to_have_count(0)
    assert service.votes(cid)["c001"] == 0
    assert problems.messages == []


async def test_network_failure_is_retried_with_the_same_vote_id(
    service: Service, phone: BrowserContext, problems: Problems
) -> None:
    cid = service.create_campaign()["id"]
    page = await open_page(phone, problems, f"{service.url}/c/{cid}")
    attempts: list[str] = []

    async def drop_first(route: Route, request: Request) -> None:
        body = request.post_data_json
        assert isinstance(body, dict)
        attempts.append(body["vote_id"])
        if len(attempts) == 1:
            await route.abort("connectionreset")
        else:
            await route.continue_()

    await page.route("**/votes", drop_first)
    await page.click("button[data-vote=c006]")
    await expect(page.locator("#vs-toast")).to_have_text("投票成功！今日还可投 4 票")
    assert len(attempts) == 2 and attempts[0] == attempts[1]
    assert service.votes(cid)["c006"] == 1
    assert problems.messages == []


async def test_offline_vote_waits_and_is_sent_when_back_online(
    service: Service, phone: BrowserContext, problems: Problems
) -> None:
    cid = service.create_campaign()["id"]
    page = await open_page(phone, problems, f"{service.url}/c/{cid}")
    await phone.set_offline(True)
    await page.click("button[data-vote=c008]")
    await expect(page.locator("#vs-toast")).to_have_text("网络已断开，恢复连接后将自动重试")
    assert service.votes(cid)["c008"] == 0
    await phone.set_offline(False)
    await expect(page.locator("#vs-toast")).to_have_text("投票成功！今日还可投 4 票")
    assert service.votes(cid)["c008"] == 1
    assert problems.messages == []


async def test_sms_sign_in_then_vote(
    service: Service, phone: BrowserContext, problems: Problems
) -> None:
    cid = service.create_campaign(rules={"identity": ["sms"]})["id"]
    number = f"139{uuid.uuid4().int % 10**8:08d}"
    page = await open_page(phone, problems, f"{service.url}/c/{cid}")
    await page.click("button[data-vote=c001]")
    sheet = page.locator("#vs-sms")
    await expect(sheet).to_be_visible()
    await page.fill("#vs-phone", "12345")
    await page.click("#vs-send")
    await expect(page.locator("#vs-sms-err")).to_have_text("请输入正确的 11 位手机号")
    # typed with a full-width IME: the same handset, sent as ASCII digits
    full_width = str.maketrans("0123456789", "０１２３４５６７８９")
    await page.fill("#vs-phone", number.translate(full_width))
    await page.click("#vs-send")
    await expect(page.locator("#vs-sms-err")).to_have_text("验证码已发送，请注意查收")
    await expect(page.locator("#vs-send")).to_be_disabled()

    # the console sender prints the text message into the service's log
    masked = f"{number[:3]}****{number[-4:]}"
    code = ""
    for _ in range(100):
        found = re.findall(rf"\[sms\] to {re.escape(masked)}: .*\(code (\d+)\)",
                           service.log.read_text())
        if found:
            code = found[-1]
            break
        await page.wait_for_timeout(100)
    assert code, "no SMS code in the service log"
    await page.fill("#vs-code", "000000" if code != "000000" else "111111")
    await page.click("#vs-sms-form button[type=submit]")
    await expect(page.locator("#vs-sms-err")).to_have_text("验证码错误或已过期")
    await page.fill("#vs-code", code.translate(full_width))
    await page.click("#vs-sms-form button[type=submit]")
    await expect(sheet).to_be_hidden()
    await expect(page.locator("#vs-toast")).to_have_text("投票成功！今日还可投 4 票")

    # the phone keeps its SMS credential: the next vote asks nothing
    await page.click("button[data-vote=c002]")
    await expect(page.locator("#vs-toast")).to_have_text("投票成功！今日还可投 3 票")
    await expect(sheet).to_be_hidden()
    assert service.votes(cid)["c001"] == 1 and service.votes(cid)["c002"] == 1
    assert problems.messages == []


async def test_a_second_new_voter_from_a_capped_address_is_told_to_wait(
    service: Service, phone: BrowserContext, problems: Problems
) -> None:
    cid = service.create_campaign(rules={"ip_per_minute": 1})["id"]
    page = await open_page(phone, problems, f"{service.url}/c/{cid}")
    await page.click("button[data-vote=c001]")
    await expect(page.locator("#vs-toast")).to_have_text("投票成功！今日还可投 4 票")
    # the same phone without its token (cleared storage): minting another one waits a minute
    await page.evaluate("localStorage.clear()")
    await phone.clear_cookies()
    await page.reload()
    await page.click("button[data-vote=c002]")
    await expect(page.locator("#vs-toast")).to_have_text(
        re.compile(r"^当前网络新用户太多，请 [0-9]+ 秒后再试$"))
    await expect(page.locator("button[data-vote=c002]")).to_be_enabled()
    assert service.votes(cid).get("c002", 0) == 0
    assert problems.messages == []


async def test_candidate_page_has_deeds_link_preview_and_votes(
    service: Service, phone: BrowserContext, problems: Problems
) -> None:
    cid = service.create_campaign()["id"]
    page = await open_page(phone, problems, f"{service.url}/c/{cid}")
    await page.click("[data-id=c004] .nm a")
    await expect(page).to_have_url(f"{service.url}/c/{cid}/c004")
    await expect(page.locator("h1")).to_have_text("4号 候选人4")
    await expect(page.locator(".deeds")).to_contain_text("事迹")
    og = page.locator('meta[property="og:url"]')
    await expect(og).to_have_attribute("content", f"{service.url}/c/{cid}/c004")
    image = await page.locator('meta[property="og:image"]').get_attribute("content")
    assert image and image.startswith(f"{service.url}/static/photos/c004.svg")
    await expect(page.locator('meta[property="og:title"]')).to_have_attribute(
        "content", "4号 候选人4 · 测试投票")
    await expect(page.locator("#vs-share")).to_be_visible()

    await page.click("button[data-vote=c004]")
    await expect(page.locator("#vs-toast")).to_have_text("投票成功！今日还可投 4 票")
    await expect(page.locator(".one .cnt b")).to_have_text("1")
    assert problems.messages == []


async def test_small_screen_zoom_and_keyboard(
    service: Service, browser: Browser, problems: Problems
) -> None:
    cid = service.create_campaign(title="2026年“江苏最美工匠”网络投票")["id"]
    # 360 px wide, and the same phone at 200 % zoom (180 CSS pixels)
    for width, height, scale in ((360, 740, 2), (180, 370, 4)):
        ctx = await new_phone(browser, viewport={"width": width, "height": height},
                              device_scale_factor=scale)
        try:
            page = await open_page(ctx, problems, f"{service.url}/c/{cid}")
            assert await page.evaluate("document.documentElement.scrollWidth") <= width
            box = await page.locator("button[data-vote=c001]").bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width
            assert box["height"] >= 44  # a comfortable touch target
        finally:
            await ctx.close()

    desktop = await browser.new_context(locale="zh-CN", viewport={"width": 1024, "height": 768})
    try:
        page = await open_page(desktop, problems, f"{service.url}/c/{cid}")
        labels = await page.locator("button[data-vote]").evaluate_all(
            "bs => bs.map(b => b.getAttribute('aria-label'))")
        assert labels[0] == "为1号候选人1投票" and len(labels) == 12
        for _ in range(40):
            await page.keyboard.press("Tab")
            if await page.evaluate("document.activeElement.matches('button[data-vote]')"):
                break
        focused = await page.evaluate("document.activeElement.dataset.vote")
        assert focused == "c001"
        await page.keyboard.press("Enter")
        await expect(page.locator("#vs-toast")).to_have_text("投票成功！今日还可投 4 票")
        assert service.votes(cid)["c001"] == 1
    finally:
        await desktop.close()
    assert problems.messages == []


async def test_demo_first_load_fits_the_budget_and_screenshots(
    service: Service, media_site: MediaSite, phone: BrowserContext, problems: Problems,
    tmp_path: Path,
) -> None:
    cid = f"e2edemo{uuid.uuid4().hex[:6]}"
    demo = demo_campaign(campaign_id=cid)
    r = service.client.post("/api/v1/admin/campaigns", json=demo, headers=ADMIN)
    assert r.status_code == 201, r.text
    for i, candidate in enumerate(("c001", "c002", "c003", "c001", "c005", "c001", "c003")):
        assert service.cast(cid, candidate).status_code == 200, i

    page = problems.watch(await phone.new_page())
    loaded: list[Request] = []
    page.on("requestfinished", lambda r: loaded.append(r))
    await page.goto(f"{service.url}/c/{cid}")
    await page.wait_for_load_state("networkidle")

    first_load = [r for r in loaded if r.resource_type in ("document", "stylesheet", "script")]
    assert {r.resource_type for r in first_load} == {"document", "stylesheet", "script"}
    compressed = 0
    for request in first_load:
        response = await request.response()
        assert response is not None
        assert (await response.all_headers()).get("content-encoding") == "gzip", request.url
        compressed += (await request.sizes())["responseBodySize"]
    assert compressed <= BUDGET, f"first load is {compressed} bytes compressed"
    # nothing from a CDN or any other host
    assert all(r.url.startswith(service.url) for r in loaded), [r.url for r in loaded]
    await expect(page.locator(VISIBLE)).to_have_count(60)

    shot = screenshot_path(tmp_path, "list-390x844.png")
    await page.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000
    print(f"first load: {compressed} bytes compressed (budget {BUDGET})")

    # the widget in a media article, as a reader of the media platform sees it
    service.add_channel(cid, "jhnews", [media_site.listed])
    article = await open_page(
        phone, problems, f"{media_site.listed}/article?campaign={cid}&channel=jhnews")
    await article.wait_for_function("document.querySelector('iframe').style.height !== '640px'")
    frame = article.frame_locator("iframe")
    await expect(frame.locator(".card:not([hidden])")).to_have_count(10)
    # a viewport as tall as the article: Chromium paints a cross-site frame only in view
    height = await article.evaluate("document.documentElement.scrollHeight")
    await article.set_viewport_size({"width": PHONE["width"], "height": height})
    await frame.locator("#vs-embed").evaluate(
        "async () => { await document.fonts.ready; await Promise.all([...document.images]"
        ".filter(i => i.offsetParent && !i.complete)"
        ".map(i => new Promise(r => { i.onload = i.onerror = r; })));}")
    shot = screenshot_path(tmp_path, "embed-390.png")
    await article.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000
    assert problems.messages == []


async def _embed_results(service: Service, cid: str) -> dict[str, int]:
    """Flush the ledger to PostgreSQL and read the organiser's per-channel breakdown."""
    await service.drain()
    r = service.client.get(f"/api/v1/admin/campaigns/{cid}/results", headers=ADMIN)
    assert r.status_code == 200, r.text
    channels: dict[str, int] = r.json()["breakdowns"]["channel"]
    return channels


async def test_embed_on_a_listed_origin_votes_through_the_channel(
    service: Service, media_site: MediaSite, phone: BrowserContext, problems: Problems,
    tmp_path: Path,
) -> None:
    cid = service.create_campaign(title="2026年“江苏最美工匠”网络投票")["id"]
    service.add_channel(cid, "jhnews", [media_site.listed])
    page = await open_page(
        phone, problems, f"{media_site.listed}/article?campaign={cid}&channel=jhnews")
    frame = page.frame_locator("iframe")
    await expect(frame.locator(".card")).to_have_count(12)
    await expect(frame.locator(".card:not([hidden])")).to_have_count(10)

    # the iframe takes the height of its content (postMessage from the widget)
    iframe = page.locator("iframe")
    await page.wait_for_function("document.querySelector('iframe').style.height !== '640px'")
    content = await frame.locator("#vs-embed").evaluate("e => e.getBoundingClientRect().height")
    outer = await iframe.evaluate("f => f.getBoundingClientRect().height")
    assert abs(outer - content) <= 2

    await frame.locator("#vs-more").click()
    await expect(frame.locator(".card:not([hidden])")).to_have_count(12)
    await frame.locator("button[data-vote=c002]").click()
    await expect(frame.locator("[data-id=c002] .msg")).to_have_text("投票成功！今日还可投 4 票")
    await expect(frame.locator("[data-id=c002] .cnt b")).to_have_text("1")

    # third-party cookies do not reach the frame: the widget sent its token itself
    assert not [c for c in await phone.cookies(service.url) if c["name"].startswith("vs_voter_")]
    assert await _embed_results(service, cid) == {"jhnews": 1}

    assert problems.messages == []


async def test_embed_partner_token_votes_as_the_platform_user(
    service: Service, media_site: MediaSite, browser: Browser, problems: Problems
) -> None:
    cid = service.create_campaign()["id"]
    secret = service.add_channel(cid, "jhnews", [media_site.listed])
    token = jwt.encode({"iss": "jhnews", "aud": cid, "sub": "reader-42",
                        "exp": int(time.time()) + 3600}, secret, algorithm="HS256")
    url = (f"{media_site.listed}/article?campaign={cid}&channel=jhnews&candidate=c003"
           f"&partner-token={token}")
    messages = []
    for _ in range(2):  # two different phones, the same logged-in reader
        ctx = await new_phone(browser)
        try:
            page = await open_page(ctx, problems, url)
            frame = page.frame_locator("iframe")
            await expect(frame.locator(".card")).to_have_count(1)
            await frame.locator("button[data-vote=c003]").click()
            message = frame.locator("[data-id=c003] .msg")
            await expect(message).not_to_be_empty()
            messages.append(await message.text_content())
        finally:
            await ctx.close()
    assert messages == ["投票成功！今日还可投 4 票", "今天已经为 TA 投过票了，明天再来吧"]
    assert service.votes(cid)["c003"] == 1
    assert await _embed_results(service, cid) == {"jhnews": 1}
    assert problems.messages == []


async def test_embed_is_refused_on_an_unlisted_origin(
    service: Service, media_site: MediaSite, phone: BrowserContext
) -> None:
    cid = service.create_campaign()["id"]
    service.add_channel(cid, "jhnews", [media_site.listed])
    page = await phone.new_page()
    async with page.expect_console_message(lambda m: "frame-ancestors" in m.text) as refused:
        await page.goto(f"{media_site.unlisted}/article?campaign={cid}&channel=jhnews")
    assert media_site.listed in (await refused.value).text
    await expect(page.locator("iframe")).to_have_count(1)
    child = page.frames[1]
    assert await child.locator("#vs-embed").count() == 0
    assert await page.locator("iframe").evaluate("f => f.style.height") == "640px"
