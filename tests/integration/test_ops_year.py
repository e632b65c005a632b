"""The organisers' console pages (issue 24) over HTTP, on real servers: the same validation
as the API shown beside the field, the quota table, the spreadsheet's dry run then confirm,
withdrawal, the year's steps with their refusals in local time, and audit as the console."""

from __future__ import annotations

import datetime as dt
import io
import re

import httpx
import openpyxl

from tests.conftest import ADMIN, Harness
from tests.integration.antifraud_support import drain
from tests.integration.test_organisers import ROSTER, as_csv, as_xlsx, person
from tests.staff_support import signed_in

CID = "y2026"


def local(days: int) -> str:
    when = dt.datetime.now(dt.UTC).astimezone(dt.timezone(dt.timedelta(hours=8)))
    return (when + dt.timedelta(days=days)).strftime("%Y-%m-%dT%H:%M")


def error_of(page: str, name: str) -> str:
    found = re.search(rf'data-testid="error-{name}">([^<]*)<', page)
    return found.group(1) if found else ""


async def nature(admin: httpx.AsyncClient) -> str:
    """What the expert panel's Excel file, downloaded from the console, says it is."""
    r = await admin.get(f"/ops/c/{CID}/export", params={"format": "xlsx"})
    assert r.status_code == 200, r.text
    about = openpyxl.load_workbook(io.BytesIO(r.content))["说明"]
    found = {str(k).split(" ")[0]: str(v) for k, v in about.iter_rows(min_row=2,
                                                                     values_only=True)}
    return found["结果性质"]


async def create(admin: httpx.AsyncClient, **over: str) -> httpx.Response:
    form = {"id": CID, "title": "2026年江苏最美工匠", "opens_at": local(-1),
            "closes_at": local(30), "votes_per_day": "10", "per_candidate_per_day": "1",
            "challenge": "off", "show_counts": "1"} | over
    return await admin.post("/ops/new", data=form)


async def test_campaign_form_shows_the_api_errors_beside_the_fields(
    harness: Harness, admin: httpx.AsyncClient
) -> None:
    r = await create(admin, id="-bad", votes_per_day="0")
    assert r.status_code == 422, r.text
    assert error_of(r.text, "id") == "只能用字母、数字、- 和 _，并以字母或数字开头。", r.text
    r = await create(admin, votes_per_day="0")
    assert r.status_code == 422 and error_of(r.text, "votes_per_day") == "不能小于 1。", r.text
    assert 'value="0"' in r.text, "what was typed stays in the form"
    r = await create(admin, closes_at=local(-2))
    assert r.status_code == 422 and error_of(r.text, "closes_at") == "结束时间必须晚于开始时间。"
    r = await create(admin, title="工" * 201)
    assert r.status_code == 422 and error_of(r.text, "title") == "最多 200 个字。"
    r = await create(admin)
    assert r.status_code == 303 and r.headers["location"].startswith(f"/ops/c/{CID}/setup")
    r = await create(admin)
    assert r.status_code == 422 and error_of(r.text, "id") == "这个活动编号已被使用，请换一个。"
    api = (await harness.client.get(f"/api/v1/admin/campaigns/{CID}", headers=ADMIN)).json()
    assert api["status"] == "draft" and api["rules"]["votes_per_day"] == 10
    # the local time typed is Beijing time
    assert dt.datetime.fromisoformat(api["opens_at"]).astimezone(
        dt.timezone(dt.timedelta(hours=8))).strftime("%Y-%m-%dT%H:%M") == local(-1)
    r = await admin.post(f"/ops/c/{CID}/setup", data={
        "title": "新名称", "opens_at": local(-1), "closes_at": local(20),
        "votes_per_day": "abc", "per_candidate_per_day": "1", "challenge": "off"})
    assert r.status_code == 422 and error_of(r.text, "votes_per_day") == "请填写整数。"
    r = await admin.post(f"/ops/c/{CID}/channels", data={
        "ch_id": "xinhua", "ch_name": "新华报业", "origins": "https://news.example.cn"})
    assert r.status_code == 201 and 'data-testid="secret"' in r.text
    assert "data-campaign=&#34;y2026&#34;" in r.text and "embed.js" in r.text
    r = await admin.post(f"/ops/c/{CID}/channels/xinhua/secret")
    assert r.status_code == 200 and "旧密钥在" in r.text
    audit = (await harness.client.get("/api/v1/admin/audit", headers=ADMIN)).json()
    actions = [(a["action"], a["actor"].endswith("@console")) for a in audit[:3]]
    assert actions == [("channel.rotate_secret", True), ("channel.create", True),
                       ("campaign.create", True)]

    ops = await signed_in(harness, "li.ops", "ops", "198.51.100.30")
    try:
        r = await ops.post(f"/ops/c/{CID}/year/open", data={"confirmed": "1"})
        assert r.status_code == 403 and "值守角色只读" in r.text
        assert (await ops.get(f"/ops/c/{CID}/candidates")).status_code == 200
    finally:
        await ops.aclose()
    anonymous = await harness.client.get(f"/ops/c/{CID}/year")
    assert 'action="/ops/login"' in anonymous.text


def value_of(page: str, field: str) -> str:
    found = re.search(rf'<input id="{field}" [^>]*value="([^"]*)"', page)
    return found.group(1) if found else "(no field)"


async def test_the_campaign_form_sets_and_shows_the_year(
    harness: Harness, admin: httpx.AsyncClient
) -> None:
    r = await create(admin, year="1999", votes_per_day="0")
    assert r.status_code == 422, r.text
    assert error_of(r.text, "year") == "评选年度应在 2000 至 2100 年之间。", r.text
    assert error_of(r.text, "votes_per_day") == "不能小于 1。", "every field's error at once"
    assert 'id="f-year" name="year" inputmode="numeric" value="1999"' in r.text
    r = await create(admin, year="二〇二六")
    assert r.status_code == 422 and error_of(r.text, "year") == "请填写整数。", r.text
    r = await create(admin, year="2025")
    assert r.status_code == 303, r.text
    api = f"/api/v1/admin/campaigns/{CID}"
    assert (await harness.client.get(api, headers=ADMIN)).json()["year"] == 2025
    page = await admin.get(f"/ops/c/{CID}/setup")
    assert value_of(page.text, "f-year") == "2025"
    listed = await admin.get("/ops")
    assert re.search(rf'data-cid="{CID}".*?data-f="year">2025<', listed.text, re.S)
    assert 'data-testid="year">2025年度<' in (await admin.get(f"/ops/c/{CID}/year")).text

    form = {"title": "2026年江苏最美工匠", "opens_at": local(-1), "closes_at": local(30),
            "votes_per_day": "10", "per_candidate_per_day": "1", "challenge": "off"}
    r = await admin.post(f"/ops/c/{CID}/setup", data=form | {"year": "2101"})
    assert r.status_code == 422 and error_of(r.text, "year") == "评选年度应在 2000 至 2100 年之间。"
    r = await admin.post(f"/ops/c/{CID}/setup?lang=en", data=form | {"year": "1999"})
    assert r.status_code == 422
    assert error_of(r.text, "year") == "The year must lie between 2000 and 2100.", r.text
    r = await admin.post(f"/ops/c/{CID}/setup", data=form | {"year": "2027"})
    assert r.status_code == 303
    assert (await harness.client.get(api, headers=ADMIN)).json()["year"] == 2027
    # left empty, the year is the one the vote opens in (Beijing time), as for a new one
    r = await admin.post(f"/ops/c/{CID}/setup", data=form | {
        "year": "", "opens_at": "2030-01-01T00:30", "closes_at": "2030-03-01T00:00"})
    assert r.status_code == 303
    assert (await harness.client.get(api, headers=ADMIN)).json()["year"] == 2030
    audit = (await harness.client.get("/api/v1/admin/audit", headers=ADMIN)).json()
    assert audit[0]["action"] == "campaign.update" and audit[0]["request"]["year"] == 2030
    assert audit[0]["actor"].endswith("@console")


async def test_a_new_campaign_without_a_year_takes_the_opening_year(
    harness: Harness, admin: httpx.AsyncClient
) -> None:
    page = await admin.get("/ops/new")
    assert value_of(page.text, "f-year") == "" and "留空时取投票开始时间" in page.text
    r = await create(admin, year="", opens_at="2031-01-01T00:30", closes_at="2031-02-01T00:00")
    assert r.status_code == 303, r.text
    api = (await harness.client.get(f"/api/v1/admin/campaigns/{CID}", headers=ADMIN)).json()
    assert api["year"] == 2031  # 00:30 in Beijing is still 2030 in UTC


async def test_quotas_import_withdraw_and_the_years_steps(
    harness: Harness, admin: httpx.AsyncClient
) -> None:
    assert (await create(admin)).status_code == 303
    r = await admin.post(f"/ops/c/{CID}/quotas", data={
        "r0": "南京市", "q0": "2", "r1": "苏州市", "q1": "x", "r2": "省总工会", "q2": "1"})
    assert r.status_code == 422 and "请填写整数。" in r.text
    r = await admin.post(f"/ops/c/{CID}/quotas", data={
        "r0": "南京市", "q0": "2", "r1": "苏州市", "q1": "1", "r2": "省总工会", "q2": "1"})
    assert r.status_code == 303

    r = await admin.post(f"/ops/c/{CID}/year/open")
    assert r.status_code == 409 and "还没有候选人" in r.text

    bad = [*ROSTER[:3], person(5, "赵敏", "南京市", 性别="未知")]
    r = await admin.post(f"/ops/c/{CID}/import",
                         files={"file": ("申报表.csv", as_csv(bad).encode(), "text/csv")})
    assert r.status_code == 422 and 'data-testid="import-error"' in r.text
    assert "<td>性别</td>" in r.text
    r = await admin.post(f"/ops/c/{CID}/import", files={"file": ("申报表.xlsx", as_xlsx(
        ROSTER), "application/octet-stream")})
    assert r.status_code == 200 and "检查通过：共 4 人" in r.text, r.text
    token = re.search(r'name="upload" value="([^"]+)"', r.text)
    assert token
    page = await admin.get(f"/ops/c/{CID}/candidates")
    assert 'data-testid="cand-row"' not in page.text, "a dry run imports nobody"
    r = await admin.post(f"/ops/c/{CID}/import/confirm", data={"upload": token.group(1)})
    assert r.status_code == 303
    page = await admin.get(r.headers["location"])
    assert "已导入 4 人" in page.text and page.text.count('data-testid="cand-row"') == 4
    assert re.search(r'data-rec="南京市">.*?data-f="used">2<.*?data-f="left">0<', page.text,
                     re.S)
    r = await admin.post(f"/ops/c/{CID}/import/confirm", data={"upload": token.group(1)})
    assert r.status_code == 409 and "检查结果已过期" in r.text
    found = await admin.get(f"/ops/c/{CID}/candidates", params={"q": "李秀英"})
    assert found.text.count('data-testid="cand-row"') == 1

    cand = re.search(r'data-testid="cand-row" data-id="([^"]+)"', page.text)
    assert cand
    url = f"/ops/c/{CID}/candidates/{cand.group(1)}/withdraw"
    assert "退出后投票页标注" in (await admin.get(url)).text
    r = await admin.post(url, data={"reason": " "})
    assert r.status_code == 422 and error_of(r.text, "reason") == "必填。"
    r = await admin.post(url, data={"reason": "本人申请退出"})
    assert r.status_code == 303

    r = await admin.post(f"/ops/c/{CID}/year/open")
    assert r.status_code == 200 and 'data-testid="confirm"' in r.text
    r = await admin.post(f"/ops/c/{CID}/year/open", data={"confirmed": "1"})
    assert r.status_code == 303
    r = await admin.post(f"/ops/c/{CID}/year/publish", data={"confirmed": "1"})
    assert r.status_code == 409
    assert "才结束，结束后才能公布" in r.text and "（北京时间）" in r.text
    panel = await admin.get(f"/ops/c/{CID}/results")
    assert "临时结果" in panel.text and 'data-testid="results-xlsx"' in panel.text
    assert (await nature(admin)).startswith("临时结果"), "the Excel file says so too"
    r = await admin.post(f"/ops/c/{CID}/year/close", data={"confirmed": "1"})
    assert r.status_code == 303
    page = await admin.get(r.headers["location"])
    assert "投票已于" in page.text and 'data-step="closed" data-state="done"' in page.text
    assert (await nature(admin)).startswith("投票已结束")
    await drain(harness)
    r = await admin.post(f"/ops/c/{CID}/year/publish",
                         data={"confirmed": "1", "note": "公示期为5个工作日"})
    assert r.status_code == 303, r.text
    page = await admin.get(f"/ops/c/{CID}/year")
    assert 'data-step="published" data-state="done"' in page.text
    assert 'data-step="gongshi" data-state="now"' in page.text and "公示期 5 个工作日" in page.text
    r = await admin.post(f"/ops/c/{CID}/year/announce", data={})
    assert r.status_code == 409 and "公示期要到" in r.text
    english = await admin.get(f"/ops/c/{CID}/year", params={"lang": "en"})
    assert "Announce the selection" in english.text and "Results published" in english.text
    # once the 公示 is over (published long ago), the announcement closes the year
    await harness.pg.execute("UPDATE publications SET published_at = now() - interval '40 days'"
                             " WHERE campaign_id = $1", CID)
    r = await admin.post(f"/ops/c/{CID}/year/announce", data={"note": "正式发布"})
    assert r.status_code == 303, r.text
    page = await admin.get(f"/ops/c/{CID}/year")
    assert 'data-step="announced" data-state="done"' in page.text
    assert 'data-testid="announce"' not in page.text
    results = (await harness.client.get(f"/api/v1/campaigns/{CID}/results")).json()
    assert results["note"] == "公示期为5个工作日"
    assert [c["rank"] for c in results["candidates"]][-1] is None
    audit = (await harness.client.get("/api/v1/admin/audit", headers=ADMIN)).json()
    done = [a["action"] for a in audit if a["actor"].endswith("@console")]
    for action in ("results.announce", "results.publish", "campaign.close", "campaign.open",
                   "candidate.withdrawn", "candidates.import", "quotas.set"):
        assert action in done, (action, done)


async def test_an_import_with_more_errors_than_listed_says_how_many(
    harness: Harness, admin: httpx.AsyncClient
) -> None:
    """The console lists the first 200 errors of a bad sheet and says how many it has in
    all (issue 23 §3), not only the 200 it shows."""
    assert (await create(admin)).status_code == 303
    bad = [person(n, f"人{n}", "南京市", 性别="未知") for n in range(1, 251)]
    r = await admin.post(f"/ops/c/{CID}/import",
                         files={"file": ("申报表.csv", as_csv(bad).encode(), "text/csv")})
    assert r.status_code == 422
    assert r.text.count('data-testid="import-error"') == 200
    found = re.search(r"发现 (\d+) 处问题，文件未导入；下表列出前 200 处", r.text)
    assert found, r.text[:2000]
    assert int(found.group(1)) >= 250
