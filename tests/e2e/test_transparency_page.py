"""The vote page's receipt (issue #26) in headless Chromium: after the log's next signed head
the page shows the vote "included", checked in the browser from the inclusion proof."""

from __future__ import annotations

from collections.abc import Iterator

import asyncpg
import pytest
from playwright.async_api import BrowserContext, expect

from tests.e2e.conftest import PEPPER, Problems, Service, running_service
from voting_service.ledger import transparency

pytestmark = pytest.mark.e2e

SEED = "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb"  # RFC 8032 test 2
PUBLIC = "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c"


@pytest.fixture(scope="module")
def logged(single_url: str, migrated: str, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Service]:
    log = tmp_path_factory.mktemp("service") / "serve.log"
    with running_service(single_url, migrated, log,
                         env={"VOTING_LOG_SIGNING_KEY": SEED}) as svc:
        yield svc


async def sign_next_head(svc: Service, cid: str) -> int:
    """What the flusher does: commit the ledger, then sign a head of the log."""
    await svc.drain()
    conn = await asyncpg.connect(svc.database_url)
    try:
        config = transparency.LogConfig(PEPPER, transparency.signing_key(SEED))
        head = await transparency.sign_head(conn, cid, config, force=True)
    finally:
        await conn.close()
    assert head is not None
    return int(head["tree_size"])


async def test_the_page_shows_a_vote_included_after_the_next_head(
    logged: Service, phone: BrowserContext, problems: Problems
) -> None:
    cid = logged.create_campaign()["id"]
    assert logged.cast(cid, "c001").status_code == 200  # someone else's vote, then a head
    assert await sign_next_head(logged, cid) == 1
    page = problems.watch(await phone.new_page())
    await page.goto(f"{logged.url}/c/{cid}")
    await expect(page.locator("#vs-log-key")).to_have_text(PUBLIC)
    receipts = page.locator("#vs-receipts")
    await expect(receipts).to_be_hidden()  # no vote from this phone yet

    await page.click("button[data-vote=c002]")
    await expect(page.locator("#vs-toast")).to_contain_text("投票成功")
    item = receipts.locator("li")
    await expect(item).to_have_count(1)
    await expect(item).to_contain_text("等待下一次日志签名")
    kept = await page.evaluate(f"JSON.parse(localStorage.getItem('vs_votes_{cid}'))")
    assert kept[0]["h"] == 1 and kept[0]["c"] == "c002", kept  # the head at the time

    # a later head covers it: the page fetches the proof and checks it against the root
    assert logged.cast(cid, "c003").status_code == 200
    assert await sign_next_head(logged, cid) == 3
    checks: list[str] = []
    page.on("request", lambda r: checks.append(r.url) if "/log/inclusion" in r.url else None)
    await page.reload()
    await expect(item).to_contain_text("已收录 ✓ 已用第 3 条日志的树头核验")
    await expect(item).to_have_class("ok")
    assert checks and "after=1" in checks[0] and "size=3" in checks[0], checks
    kept = await page.evaluate(f"JSON.parse(localStorage.getItem('vs_votes_{cid}'))")
    assert kept[0]["ok"] == 3, kept
    assert problems.messages == []


async def test_a_proof_that_does_not_lead_to_the_root_is_not_shown_as_included(
    logged: Service, phone: BrowserContext, problems: Problems
) -> None:
    cid = logged.create_campaign()["id"]
    page = problems.watch(await phone.new_page())
    await page.goto(f"{logged.url}/c/{cid}")
    await page.click("button[data-vote=c001]")
    await expect(page.locator("#vs-toast")).to_contain_text("投票成功")
    assert logged.cast(cid, "c002").status_code == 200
    await sign_next_head(logged, cid)

    async def forged(route: object) -> None:
        response = await route.fetch()  # type: ignore[attr-defined]
        body = await response.json()
        body["proofs"][0]["path"] = ["00" * 32 for _ in body["proofs"][0]["path"]]
        await route.fulfill(response=response, json=body)  # type: ignore[attr-defined]

    await page.route("**/log/inclusion*", forged)
    await page.reload()
    item = page.locator("#vs-receipts li")
    await expect(item).to_contain_text("核验失败")
    await expect(item).to_have_class("bad")
