"""The organisers' year in headless Chromium: a candidate's facts and video on the detail
page, a withdrawn candidate, and the published results page with the voter's own lookup."""

from __future__ import annotations

import asyncio
import io
import struct
import wave

import pytest
from playwright.async_api import BrowserContext, Route, expect

from tests.conftest import ADMIN
from tests.e2e.conftest import Problems, Service

pytestmark = pytest.mark.e2e
VIDEO = "https://media.example.cn/v/c001.mp4"


def tone() -> bytes:
    """Half a second of a 440 Hz tone as WAV: a media file Chromium plays in ``<video>``."""
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"".join(struct.pack("<h", 8000 if (i // 9) % 2 else -8000)
                               for i in range(4000)))
    return out.getvalue()


def with_facts(service: Service) -> str:
    payload = service.create_campaign(candidates=3, year=2026)
    cid = str(payload["id"])
    cands = payload["candidates"]
    cands[0].update(recommender="南京市", deed_type="技术创新",
                    honors=["全国劳动模范", "江苏省五一劳动奖章"], video_url=VIDEO)
    cands[1].update(recommender="省总工会")
    r = service.client.patch(f"/api/v1/admin/campaigns/{cid}", json={"candidates": cands},
                             headers=ADMIN)
    assert r.status_code == 200, r.text
    return cid


async def test_detail_page_shows_recommender_honours_and_plays_the_video(
    service: Service, phone: BrowserContext, problems: Problems
) -> None:
    cid = with_facts(service)
    r = service.client.patch(f"/api/v1/admin/campaigns/{cid}/candidates/c002", headers=ADMIN,
                             json={"status": "withdrawn", "reason": "本人申请"})
    assert r.status_code == 200, r.text
    media = tone()

    async def serve_video(route: Route) -> None:
        await route.fulfill(status=200, body=media, content_type="audio/wav")

    await phone.route(VIDEO, serve_video)
    page = problems.watch(await phone.new_page())
    await page.goto(f"{service.url}/c/{cid}/c001")
    await expect(page.locator(".facts .rec")).to_have_text("南京市")
    await expect(page.locator(".honors li")).to_have_text(["全国劳动模范", "江苏省五一劳动奖章"])
    video = page.locator("video#vs-video")
    await expect(video).to_have_attribute("src", VIDEO)
    assert await page.locator("iframe").count() == 0, "our own <video>, no third-party player"
    await video.evaluate("v => { v.muted = true; return v.play(); }")
    await page.wait_for_function(
        "document.querySelector('#vs-video').currentTime > 0", timeout=10_000)

    await page.goto(f"{service.url}/c/{cid}")
    gone = page.locator("[data-id=c002]")
    await expect(gone.locator(".gone")).to_have_text("已退出")
    assert await gone.locator("button[data-vote]").count() == 0
    await page.goto(f"{service.url}/c/{cid}/c002")
    await expect(page.locator(".one .gone")).to_have_text("已退出")
    assert problems.messages == []


async def test_results_page_after_publication_finds_the_votes_this_phone_cast(
    service: Service, phone: BrowserContext, problems: Problems
) -> None:
    cid = with_facts(service)
    page = problems.watch(await phone.new_page())
    await page.goto(f"{service.url}/c/{cid}")
    await page.click("button[data-vote=c003]")
    await expect(page.locator("#vs-toast")).to_contain_text("投票成功")
    assert service.cast(cid, "c001").status_code == 200
    assert service.cast(cid, "c003").status_code == 200
    service.set_status(cid, "closed")
    await service.drain()
    r = service.client.post(f"/api/v1/admin/campaigns/{cid}/publication", headers=ADMIN,
                            json={"note": "公示期为7个工作日"})
    assert r.status_code == 201, r.text
    digest = r.json()["digest"]

    await asyncio.sleep(1.5)  # workers pick up the new snapshot within a second
    await page.goto(f"{service.url}/c/{cid}?lang=zh")  # not the page the phone has cached
    await page.click(".banner.pub a")
    await expect(page).to_have_url(f"{service.url}/c/{cid}/results")
    await expect(page.locator("h1")).to_have_text("2026年度投票结果公示")
    await expect(page.locator("#vs-valid-total")).to_have_text("3")
    rows = page.locator(".ranking tbody tr")
    await expect(rows.first).to_have_attribute("data-id", "c003")
    await expect(rows.first.locator(".rk")).to_have_text("1")
    await expect(page.locator("#vs-digest")).to_have_text(digest)
    mine = page.locator("#vs-mine a")
    await expect(mine).to_have_count(1)
    await mine.click()
    await expect(page.locator("#vs-found li")).to_contain_text("候选人3")
    await expect(page.locator("#vs-found li")).to_contain_text("有效")
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, "readable on a phone without sideways scrolling"
    assert problems.messages == []
