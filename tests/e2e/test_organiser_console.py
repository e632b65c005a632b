"""The organisers' year in the browser (issue 24), headless Chromium against the real
service: create the campaign (a mistake first, shown beside its field), the quota table, a
recommenders' sheet with one mistake, checked, fixed and imported, a withdrawal, open, the
publication refused while the vote is open, close now, publish, the 公示 page with the
organisers' contact and an objection, answered and closed in the console. Screenshots
go to ``VOTING_SCREENSHOTS`` (``docs/screenshots`` for the README) or a temporary folder."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.async_api import BrowserContext, Page, expect

from tests.conftest import ADMIN
from tests.e2e.conftest import Problems, Service, running_service, screenshot_path
from tests.e2e.test_ops import sign_in
from tests.integration.test_organisers import as_csv, person

pytestmark = pytest.mark.e2e

SHEET = [person(1, "王建国", "南京市", "320102198001010016"),
         person(2, "李秀英", "苏州市", "320102198001010024"),
         person(3, "张伟", "省总工会", "320583199002020018"),
         person(4, "陈静", "南京市")]

CONTACT = {"VOTING_ORGANISER_PHONE": "025-83300000",
           "VOTING_ORGANISER_ADDRESS": "南京市建邺路168号 省总工会",
           "VOTING_ORGANISER_EMAIL": "gj2026@example.cn"}


@pytest.fixture(scope="module")
def service(single_url: str, migrated: str, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[Service]:
    """The service with the organisers' contact set, as a deployment has it for the 公示."""
    log = tmp_path_factory.mktemp("organisers") / "serve.log"
    with running_service(single_url, migrated, log, env=CONTACT) as svc:
        yield svc


def local(days: int) -> str:
    beijing = dt.datetime.now(dt.UTC).astimezone(dt.timezone(dt.timedelta(hours=8)))
    return (beijing + dt.timedelta(days=days)).strftime("%Y-%m-%dT%H:%M")


async def shot(page: Page, tmp_path: Path, name: str) -> None:
    await page.screenshot(path=str(screenshot_path(tmp_path, name)), full_page=True)


async def confirm(page: Page, button: str) -> None:
    await page.click(f'[data-testid="{button}"]')
    await expect(page.locator('[data-testid="confirm"]')).to_be_visible()
    await page.click('[data-testid="confirm-yes"]')


async def test_an_organiser_runs_the_year_in_the_browser(
    service: Service, desk: BrowserContext, problems: Problems, tmp_path: Path
) -> None:
    cid = f"gj{uuid.uuid4().hex[:8]}"
    page = await sign_in(desk, problems, service, "/ops")

    # 1. the campaign, empty: a mistake first, then right
    await page.click('[data-testid="new-campaign"]')
    await page.fill("#f-id", cid)
    await page.fill("#f-title", "2026年江苏最美工匠网络投票")
    await page.fill("#f-year", "1999")
    await page.fill("#f-opens", local(-1))
    await page.fill("#f-closes", local(-2))
    await page.fill("#f-vpd", "0")
    await page.click('[data-testid="save"]')
    await expect(page.locator('[data-testid="error-votes_per_day"]')).to_have_text("不能小于 1。")
    await expect(page.locator('[data-testid="error-closes_at"]')).to_have_text(
        "结束时间必须晚于开始时间。")
    await expect(page.locator('[data-testid="error-year"]')).to_have_text(
        "评选年度应在 2000 至 2100 年之间。")
    await expect(page.locator("#f-vpd")).to_have_attribute("aria-invalid", "true")
    await shot(page, tmp_path, "org-campaign-errors.png")
    await page.fill("#f-vpd", "5")
    await page.fill("#f-closes", local(30))
    await page.fill("#f-year", "2026")
    await page.click('[data-testid="save"]')
    await expect(page.locator('[data-testid="flash"]')).to_have_text("已保存。")
    assert page.url.startswith(f"{service.url}/ops/c/{cid}/setup")
    await expect(page.locator("#f-year")).to_have_value("2026")
    stored = service.client.get(f"/api/v1/admin/campaigns/{cid}", headers=ADMIN).json()
    assert stored["year"] == 2026

    # 2. the quota table
    await page.click('[data-testid="org-nav"] >> text=候选人')
    rows = page.locator('[data-testid="quota-new-rec"]')
    counts = page.locator('[data-testid="quota-new-n"]')
    for i, (rec, n) in enumerate((("南京市", "2"), ("苏州市", "1"), ("省总工会", "1"))):
        await rows.nth(i).fill(rec)
        await counts.nth(i).fill(n)
    await page.click('[data-testid="quota-save"]')
    await expect(page.locator('[data-testid="quota-row"]')).to_have_count(3)

    # 3. the recommenders' sheet with one mistake (性别 not 男/女), checked, fixed, imported
    wrong = [*SHEET[:3], person(4, "陈静", "南京市", 性别="未知")]
    sheet = tmp_path / "申报表.csv"
    sheet.write_bytes(as_csv(wrong).encode("utf-8-sig"))
    await page.set_input_files('[data-testid="import-file"]', str(sheet))
    await page.click('[data-testid="import-check"]')
    errors = page.locator('[data-testid="import-error"]')
    await expect(errors).to_have_count(1)
    await expect(errors.first).to_contain_text("性别")
    await expect(page.locator('[data-testid="import-problems"]')).to_contain_text("文件未导入")
    await shot(page, tmp_path, "org-import-report.png")
    sheet.write_bytes(as_csv(SHEET).encode("utf-8-sig"))
    await page.set_input_files('[data-testid="import-file"]', str(sheet))
    await page.click('[data-testid="import-check"]')
    await expect(page.locator('[data-testid="import-ok"]')).to_have_text(
        "检查通过：共 4 人，可以导入。")
    await expect(page.locator('[data-testid="cand-row"]')).to_have_count(0)
    await page.click('[data-testid="import-confirm"]')
    await expect(page.locator('[data-testid="flash"]')).to_have_text("已导入 4 人。")
    await expect(page.locator('[data-testid="cand-row"]')).to_have_count(4)
    nanjing = page.locator('[data-testid="quota-row"][data-rec="南京市"]')
    await expect(nanjing.locator('[data-f="used"]')).to_have_text("2")
    await expect(nanjing.locator('[data-f="left"]')).to_have_text("0")
    await shot(page, tmp_path, "org-candidates.png")

    # 4. a candidate withdraws (with a reason, after a confirmation page)
    await page.locator('[data-testid="cand-row"]', has_text="张伟").locator(
        '[data-testid="withdraw"]').click()
    await page.click('[data-testid="withdraw-confirm"]')
    await expect(page.locator('[data-testid="error-reason"]')).to_have_text("必填。")
    await page.fill("#f-reason", "本人申请退出")
    await page.click('[data-testid="withdraw-confirm"]')
    await expect(page.locator('[data-testid="flash"]')).to_have_text("张伟 已退出评选。")

    # 5. open the vote; publishing is refused while it is open, in local time
    await page.click('[data-testid="org-nav"] >> text=年度流程')
    await expect(page.locator('[data-testid="year"]')).to_have_text("2026年度")
    await confirm(page, "open")
    await expect(page.locator('[data-testid="flash"]')).to_have_text("投票已开始。")
    await expect(page.locator('[data-testid="state"]')).to_have_text("进行中")
    listed = service.client.get(f"/api/v1/campaigns/{cid}/candidates").json()["candidates"]
    ids = {c["name"]: c["id"] for c in listed}
    for name in ("王建国", "王建国", "李秀英"):
        assert service.cast(cid, ids[name]).status_code == 200
    await page.click('[data-testid="publish"]')  # refused before any confirmation
    refusal = page.locator('[data-testid="refusal"]')
    await expect(refusal).to_contain_text("结束后才能公布")
    await expect(refusal).to_contain_text("（北京时间）")
    await page.click('[data-testid="org-nav"] >> text=结果分析')
    await expect(page.locator('[data-testid="provisional"]')).to_be_visible()

    # 6. close now, publish
    await page.click('[data-testid="org-nav"] >> text=年度流程')
    await confirm(page, "close")
    await expect(page.locator('[data-testid="flash"]')).to_contain_text("投票已于")
    await expect(page.locator('[data-step="closed"]')).to_have_attribute("data-state", "done")
    await service.drain()
    await page.fill("#f-note", "公示期为5个工作日")
    await confirm(page, "publish")
    await expect(page.locator('[data-testid="flash"]')).to_have_text("结果已公布。")
    await expect(page.locator('[data-step="published"]')).to_have_attribute("data-state", "done")
    await expect(page.locator('[data-step="gongshi"]')).to_have_attribute("data-state", "now")
    await expect(page.locator('[data-testid="gongshi"]')).to_contain_text("公示期 5 个工作日")
    await shot(page, tmp_path, "org-year.png")
    await page.click('[data-testid="org-nav"] >> text=结果分析')
    await expect(page.locator('[data-testid="final"]')).to_be_visible()
    ranking = page.locator('[data-testid="panel-ranking"] tbody tr')
    await expect(ranking.first).to_contain_text("王建国")
    await expect(ranking.last).to_contain_text("张伟")
    await expect(ranking.last.locator("td").first).to_have_text("—")
    await shot(page, tmp_path, "org-results.png")

    # the public 公示 page, and an objection to a candidate (a mistake first)
    citizen = problems.watch(await desk.new_page())
    await citizen.goto(f"{service.url}/c/{cid}/results")
    await expect(citizen.locator("h1")).to_have_text("2026年度投票结果公示")
    await expect(citizen.locator(".note")).to_have_text("公示期为5个工作日")
    await expect(citizen.locator("#vs-valid-total")).to_have_text("3")
    await expect(citizen.locator('[data-testid="period"]')).to_contain_text("5 个工作日")
    contact = citizen.locator('[data-testid="contact"]')
    for value in CONTACT.values():
        await expect(contact).to_contain_text(value)
    await citizen.select_option("#o-cand", ids["王建国"])
    await citizen.fill("#o-name", "李明")
    await citizen.fill("#o-phone", "1380013800")
    await citizen.fill("#o-address", "南京市玄武区中山路1号")
    await citizen.fill("#o-text", "该候选人申报的主要荣誉与实际不符，请核查。")
    await citizen.click('[data-testid="objection-submit"]')
    await expect(citizen.locator('[data-testid="oerr-phone"]')).to_have_text(
        "请填写正确的 11 位手机号码。")
    await expect(citizen.locator("#o-text")).to_have_value(
        "该候选人申报的主要荣誉与实际不符，请核查。")
    await citizen.fill("#o-phone", "13800138000")
    await citizen.click('[data-testid="objection-submit"]')
    await expect(citizen.locator('[data-testid="objection-sent"]')).to_contain_text("异议已收到")
    await shot(citizen, tmp_path, "org-objection-form.png")

    # the organiser answers it and closes it
    await page.click('[data-testid="org-nav"] >> text=异议')
    row = page.locator('[data-testid="objection-row"]')
    await expect(row).to_have_count(1)
    await expect(row).to_contain_text("李明")
    await row.locator('[data-testid="answer-text"]').fill("经核查，荣誉证书真实有效。")
    await row.locator('[data-testid="answer"]').click()
    await expect(page.locator('[data-testid="flash"]')).to_have_text("已保存。")
    await expect(row.locator('[data-f="status"]')).to_have_text("已答复")
    await shot(page, tmp_path, "org-objections.png")
    await row.locator('[data-testid="close-objection"]').click()
    await expect(row.locator('[data-f="status"]')).to_have_text("已办结")
    assert problems.messages == []
