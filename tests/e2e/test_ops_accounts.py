"""Staff accounts in headless Chromium (issue 25 §3): an admin creates an account in the
console, its person enrols the authenticator from the QR page (the code computed here from
the secret the page shows) and signs in with password and code; the auditor sees the
audit log only; a disabled account is signed out and refused; sign-outs are audited."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, BrowserContext, Page, expect

from tests.conftest import ADMIN
from tests.e2e.conftest import Problems, Service, screenshot_path
from tests.e2e.test_ops import sign_in, staff
from voting_service.accounts import totp

pytestmark = pytest.mark.e2e


async def other_desk(browser: Browser) -> BrowserContext:
    ctx = await browser.new_context(viewport={"width": 1024, "height": 900}, locale="zh-CN")
    ctx.set_default_timeout(20_000)
    return ctx


async def create_account(page: Page, role: str) -> tuple[str, str]:
    """Through the admin's staff page; returns (name, the first password it shows once)."""
    name = f"new.{uuid.uuid4().hex[:8]}"
    await page.locator('[data-testid="nav-staff"]').click()
    form = page.locator('[data-testid="create-account"]')
    await form.locator('input[name="name"]').fill(name)
    await form.locator('select[name="role"]').select_option(role)
    await form.locator('button[type="submit"]').click()
    shown = page.locator('[data-testid="new-password"]')
    await expect(shown).to_be_visible()
    password = (await shown.inner_text()).strip()
    await expect(page.locator(f'[data-testid="account-row"][data-name="{name}"]')).to_be_visible()
    return name, password


def audit(service: Service, action: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = service.client.get("/api/v1/admin/audit", headers=ADMIN).json()
    return [r for r in rows if r["action"] == action]


async def test_a_new_account_enrols_by_qr_code_then_signs_in_with_password_and_code(
    service: Service, desk: BrowserContext, browser: Browser, problems: Problems,
    tmp_path: Path
) -> None:
    cid = service.create_campaign()["id"]
    admin = await sign_in(desk, problems, service, "/ops")
    name, password = await create_account(admin, "ops")

    ctx = await other_desk(browser)
    try:
        page = problems.watch(await ctx.new_page())
        await page.goto(f"{service.url}/ops/c/{cid}")
        await page.locator('input[name="name"]').fill(name)
        await page.locator('input[name="password"]').fill(password)
        await page.locator('input[name="password"]').press("Enter")
        await expect(page).to_have_url(f"{service.url}/ops/enrol?next=%2Fops%2Fc%2F{cid}")
        qr = page.locator('[data-testid="enrol-qr"] svg')
        await expect(qr).to_be_visible()
        box = await qr.bounding_box()
        assert box is not None and box["width"] >= 150 and box["height"] >= 150
        await page.screenshot(path=str(screenshot_path(tmp_path, "ops-enrol.png")))
        secret = (await page.locator('[data-testid="enrol-secret"]').inner_text()).replace(
            " ", "")
        await page.locator("details summary").click()
        uri = await page.locator('[data-testid="enrol-uri"]').inner_text()
        assert uri.startswith("otpauth://totp/") and f"secret={secret}" in uri
        code = page.locator('input[name="code"]')
        await code.fill(totp.code_at(secret))
        await code.press("Enter")
        await expect(page).to_have_url(f"{service.url}/ops/c/{cid}")
        await expect(page.locator('[data-testid="total"]')).to_be_visible()
        await expect(page.locator('[data-testid="me-link"]')).to_have_text(name)
        await expect(page.locator('[data-testid="readonly"]')).to_be_visible()  # the ops role

        # signing out ends it; the next sign-in asks for the code, no QR code any more
        await page.locator('[data-testid="logout"]').click()
        await expect(page.locator('input[name="password"]')).to_be_visible()
        await page.locator('input[name="name"]').fill(name)
        await page.locator('input[name="password"]').fill(password)
        await page.locator('input[name="password"]').press("Enter")
        await expect(page.locator("h1")).to_have_text("两步验证")
        await expect(page.locator('[data-testid="enrol-qr"]')).to_have_count(0)
    finally:
        await ctx.close()
    signed_out = [r for r in audit(service, "console.sign_out") if r["target"] == name]
    assert len(signed_out) == 1 and signed_out[0]["actor"] == f"ops:{name}@console"
    assert problems.messages == []


async def test_the_auditor_sees_only_the_audit_log(
    service: Service, desk: BrowserContext, problems: Problems
) -> None:
    cid = service.create_campaign()["id"]
    page = await sign_in(desk, problems, service, f"/ops/c/{cid}", "auditor")
    await expect(page).to_have_url(f"{service.url}/ops/audit")
    await expect(page.locator('[data-testid="audit-row"]').first).to_be_visible()
    await expect(page.locator('[data-testid="role"]')).to_have_text("审计（只看审计日志）")
    for hidden in ("nav-staff", "total", "pause"):
        await expect(page.locator(f'[data-testid="{hidden}"]')).to_have_count(0)
    await expect(page.locator('header a[href^="/ops?"], header a[href="/ops"]')).to_have_count(1)
    # the brand link only; following it, or any campaign, lands on the audit log again
    await page.goto(f"{service.url}/ops/c/{cid}")
    await expect(page).to_have_url(f"{service.url}/ops/audit")
    status = await page.evaluate("fetch('/ops/api/campaigns').then(r => r.status)")
    assert status == 403
    await page.locator('input[name="action"]').fill("campaign.")
    await page.locator('input[name="action"]').press("Enter")
    actions = await page.locator('[data-testid="audit-row"] [data-f="action"]').all_inner_texts()
    assert actions and all(a.startswith("campaign.") for a in actions)
    assert problems.messages == []


async def test_a_disabled_account_is_signed_out_and_refused(
    service: Service, desk: BrowserContext, browser: Browser, problems: Problems
) -> None:
    person = await staff(service, "ops")
    ctx = await other_desk(browser)
    try:
        page = await sign_in(ctx, problems, service, "/ops", account=person)
        await expect(page.locator('[data-testid="me-link"]')).to_have_text(person[0])

        admin = await sign_in(desk, problems, service, "/ops")
        await admin.locator('[data-testid="nav-staff"]').click()
        row = admin.locator(f'[data-testid="account-row"][data-name="{person[0]}"]')
        await row.locator('[data-testid="disable"]').click()
        await expect(admin.locator('[data-testid="staff-done"]')).to_be_visible()
        await expect(row.locator('[data-f="state"]')).to_have_text("已停用")

        await page.reload()
        await expect(page.locator('input[name="password"]')).to_be_visible()
        await page.locator('input[name="name"]').fill(person[0])
        await page.locator('input[name="password"]').fill("correct-horse-battery-2026")
        await page.locator('input[name="password"]').press("Enter")
        await expect(page.locator('[data-testid="login-error"]')).to_have_text(
            "该账号已停用，请联系管理员。")
        await expect(page.locator('[data-testid="logout"]')).to_have_count(0)
    finally:
        await ctx.close()
    refused = [r for r in audit(service, "console.sign_in_failed") if r["target"] == person[0]]
    assert [r["request"]["reason"] for r in refused] == ["disabled"]
    assert problems.messages == []
