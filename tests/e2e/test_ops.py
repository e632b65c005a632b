"""The ops console in headless Chromium, against the real service: sign-in with Enter, live
figures after votes cast through the API, pause and resume taking effect on the public API,
and the read-only ops role."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import asyncpg
import httpx
import pytest
from playwright.async_api import Browser, BrowserContext, Page, expect

from tests.conftest import ADMIN
from tests.e2e.conftest import Problems, Service, new_phone, screenshot_path
from tests.staff_support import PASSWORD, make_account, next_code
from voting_service.demo import demo_campaign

pytestmark = pytest.mark.e2e

BUDGET = 150 * 1024


async def staff(service: Service, role: str = "admin", enrolled: bool = True
                ) -> tuple[str, str]:
    """A fresh staff account in the service's database: (name, TOTP secret)."""
    name = f"{role}.{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(service.database_url)
    try:
        secret = await make_account(conn, name, role, enrolled)
    finally:
        await conn.close()
    return name, secret


async def sign_in(ctx: BrowserContext, problems: Problems, service: Service, path: str,
                  role: str = "admin", account: tuple[str, str] | None = None) -> Page:
    """Name and password (Enter submits), then the authenticator's code."""
    name, secret = account or await staff(service, role)
    page = problems.watch(await ctx.new_page())
    await page.goto(service.url + path)
    await page.locator('input[name="name"]').fill(name)
    field = page.locator('input[name="password"]')
    await expect(field).to_have_attribute("type", "password")
    await field.fill(PASSWORD)
    await field.press("Enter")
    code = page.locator('input[name="code"]')
    await expect(code).to_have_attribute("autocomplete", "one-time-code")
    await code.fill(next_code(secret))
    await code.press("Enter")
    await expect(page.locator('[data-testid="logout"]')).to_be_visible()
    assert PASSWORD not in page.url and secret not in page.url
    return page


def first_load_bytes(service: Service, path: str, cookies: dict[str, str]) -> int:
    """Bytes on the wire (gzip) of the page and the scripts and styles it links."""
    gz = {"Accept-Encoding": "gzip"}
    with httpx.Client(base_url=service.url, cookies=cookies, timeout=30) as client:
        page = client.get(path, headers=gz)
        assert page.status_code == 200 and page.headers["content-encoding"] == "gzip"
        total = page.num_bytes_downloaded
        linked = re.findall(r'(?:src|href)="(/static/[^"]+)"', page.text)
        assert len(linked) == 2, linked
        for url in linked:
            r = client.get(url, headers=gz)
            assert r.status_code == 200 and r.headers["content-encoding"] == "gzip"
            total += r.num_bytes_downloaded
    return total


def public_total(service: Service, cid: str) -> int:
    r = service.client.get(f"/api/v1/campaigns/{cid}/tallies")
    assert r.status_code == 200, r.text
    total: int = r.json()["total"]
    return total


async def shown_total(page: Page) -> int:
    return int((await page.locator('[data-testid="total"]').inner_text()).replace(",", ""))


def cast_many(service: Service, cid: str, candidates: list[str], channel: str = "") -> None:
    for candidate in candidates:
        token = service.client.post(f"/api/v1/campaigns/{cid}/voter").json()["token"]
        body = {"candidate_id": candidate} | ({"channel": channel} if channel else {})
        r = service.client.post(f"/api/v1/campaigns/{cid}/votes", json=body,
                                headers={"X-Voter-Token": token})
        assert r.status_code == 200, r.text
        if candidate in ("c003", "c011"):  # a second try: refused as already voted
            again = service.client.post(f"/api/v1/campaigns/{cid}/votes", json=body,
                                        headers={"X-Voter-Token": token})
            assert again.status_code == 409


async def test_sign_in_with_enter_then_live_figures_follow_the_votes(
    service: Service, desk: BrowserContext, problems: Problems, tmp_path: Path
) -> None:
    cid = f"e2eops{uuid.uuid4().hex[:6]}"
    demo = demo_campaign(campaign_id=cid)
    r = service.client.post("/api/v1/admin/campaigns", json=demo, headers=ADMIN)
    assert r.status_code == 201, r.text
    service.add_channel(cid, "jhnews", ["https://news.example.com"])

    login = problems.watch(await desk.new_page())
    await login.goto(f"{service.url}/ops")
    await expect(login.locator("h1")).to_have_text("登录运营台")
    await login.screenshot(path=str(screenshot_path(tmp_path, "ops-login.png")))
    await login.goto(f"{service.url}/ops?lang=en")
    await expect(login.locator("h1")).to_have_text("Sign in to the console")
    await expect(login.locator("html")).to_have_attribute("lang", "en")
    await login.close()

    page = await sign_in(desk, problems, service, f"/ops/c/{cid}")
    await expect(page.locator('[data-testid="candidate-row"]')).to_have_count(60)
    await expect(page.locator('[data-testid="total"]')).to_have_text("0")
    cookies = {c["name"]: c["value"] for c in await desk.cookies() if "name" in c and "value" in c}
    compressed = first_load_bytes(service, f"/ops/c/{cid}", cookies)
    assert compressed <= BUDGET, compressed
    print(f"ops console first load: {compressed} bytes compressed (budget {BUDGET})")

    weights = ["c005"] * 9 + ["c001"] * 6 + ["c012"] * 4 + ["c003"] * 3 + ["c020", "c011"]
    cast_many(service, cid, weights[:12])
    cast_many(service, cid, weights[12:], channel="jhnews")
    expected = public_total(service, cid)
    assert expected == len(weights)
    await expect(page.locator('[data-testid="total"]')).to_have_text(str(expected))
    assert await shown_total(page) == public_total(service, cid)
    top = page.locator('[data-testid="candidate-row"]').first
    await expect(top).to_have_attribute("data-id", "c005")
    await expect(top.locator('[data-f="votes"]')).to_have_text("9")
    await expect(top.locator('[data-f="recent"]')).to_have_text("9")
    await expect(page.locator('[data-testid="by-channel"] li')).to_have_count(2)
    await expect(page.locator("#ops-chart-votes svg path.area")).to_have_count(1)
    await expect(page.locator("#ops-legend")).to_contain_text("重复投票 4")

    # a brushed burst: 100 votes for one candidate from one network, flushed to the ledger
    cast_many(service, cid, ["c007"] * 100)
    await service.drain()
    await page.locator("#ops-sus-refresh").click()
    group = page.locator('[data-testid="suspicious-group"]', has_text="7号")
    await expect(group.first).to_be_visible()
    await expect(page.locator('[data-testid="total"]')).to_have_text(str(expected + 100))
    await page.screenshot(path=str(screenshot_path(tmp_path, "ops-campaign.png")), full_page=True)

    spike = page.locator('[data-testid="suspicious-group"]', has_text="获得 100 票").first
    await spike.locator('[data-testid="strike"]').click()
    confirm = page.locator('[data-testid="confirm"]')
    await expect(confirm).to_be_disabled()  # a reason first
    await page.locator("#ops-modal-reason").fill("同一网段集中刷票")
    await confirm.click()
    await expect(page.locator("#ops-alert")).to_have_text("已作废 100 票")
    await expect(page.locator('[data-testid="total"]')).to_have_text(str(expected))
    assert await shown_total(page) == public_total(service, cid)

    await page.goto(f"{service.url}/ops")
    row = page.locator(f'tr[data-cid="{cid}"]')
    await expect(row.locator('[data-f="total"]')).to_have_text(str(expected))
    await expect(row.locator('[data-f="year"]')).to_have_text(str(demo["year"]))
    await page.screenshot(path=str(screenshot_path(tmp_path, "ops-list.png")))
    assert problems.messages == []


async def test_pause_and_resume_from_the_console_reach_the_public_api(
    service: Service, desk: BrowserContext, problems: Problems
) -> None:
    cid = service.create_campaign()["id"]
    page = await sign_in(desk, problems, service, f"/ops/c/{cid}")
    await page.locator('[data-testid="pause"]').click()
    await expect(page.locator("#ops-modal")).to_be_visible()
    await page.locator('[data-testid="confirm"]').click()
    await expect(page.locator('[data-testid="resume"]')).to_be_visible()
    await expect(page.locator('[data-testid="pause"]')).to_be_hidden()
    await expect(page.locator('[data-testid="state"]')).to_have_text("已暂停")
    r = service.cast(cid, "c001")
    assert (r.status_code, r.json()["code"]) == (403, "voting_closed")

    await page.locator('[data-testid="resume"]').click()
    await page.locator("#ops-modal-cancel").click()  # changing one's mind does nothing
    await expect(page.locator("#ops-modal")).to_be_hidden()
    assert service.client.get(f"/api/v1/campaigns/{cid}").json()["status"] == "paused"
    await page.locator('[data-testid="resume"]').click()
    await page.locator('[data-testid="confirm"]').click()
    await expect(page.locator('[data-testid="pause"]')).to_be_visible()
    assert service.cast(cid, "c001").status_code == 200
    await expect(page.locator('[data-testid="total"]')).to_have_text("1")
    audit = service.client.get("/api/v1/admin/audit", headers=ADMIN).json()
    mine = [a for a in audit if a["target"] == cid and a["action"].startswith("campaign.")]
    assert [a["action"] for a in mine][:2] == ["campaign.resume", "campaign.pause"]
    assert problems.messages == []


async def test_the_ops_role_sees_figures_but_no_write_control(
    service: Service, browser: Browser, problems: Problems, tmp_path: Path
) -> None:
    cid = service.create_campaign()["id"]
    assert service.cast(cid, "c002").status_code == 200
    phone = await new_phone(browser)
    try:
        page = await sign_in(phone, problems, service, f"/ops/c/{cid}", "ops")
        await expect(page.locator('[data-testid="total"]')).to_have_text("1")
        await expect(page.locator('[data-testid="readonly"]')).to_be_visible()
        for control in ("pause", "resume", "confirm-strike", "block-add", "strike"):
            await expect(page.locator(f'[data-testid="{control}"]')).to_have_count(0)
        await expect(page.locator("#ops-block-form")).to_have_count(0)
        # the server refuses too, whatever the page shows
        status = await page.evaluate(
            "fetch(location.pathname.replace('/ops/c/', '/ops/api/c/') + '/status',"
            " {method: 'POST', headers: {'Content-Type': 'application/json'},"
            " body: JSON.stringify({status: 'paused'})}).then(r => r.status)")
        assert status == 403
        assert service.client.get(f"/api/v1/campaigns/{cid}").json()["status"] == "open"
        await page.screenshot(path=str(screenshot_path(tmp_path, "ops-phone-390.png")))

        await page.locator('[data-testid="logout"]').click()
        await expect(page.locator('input[name="password"]')).to_be_visible()
        async with httpx.AsyncClient(base_url=service.url) as anonymous:
            assert (await anonymous.get("/ops/api/campaigns")).status_code == 401
    finally:
        await phone.close()
    assert problems.messages == []
