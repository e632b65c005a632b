"""The organisers' year (issue #11) on real servers: candidate facts, candidates who leave,
the recommenders' spreadsheets, publication (公示) and the public ledger with ``verify``."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import json
import sys
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import openpyxl
import pytest

from tests.conftest import ADMIN, OPS, Harness, campaign_payload, redis_tallies
from tests.integration.antifraud_support import NO_LIMITS, clients, drain, new_voter, problem_code
from voting_service.ledger import public_ledger, sheets
from voting_service.stack import settings_env

CID = "t2026"
ADMIN_API = f"/api/v1/admin/campaigns/{CID}"
IMPORT = f"{ADMIN_API}/candidates/import"
CSV = "text/csv"
HEADER = ["编号", "姓名", "性别", "地区", "行业", "工作单位", "职业（工种）", "推荐单位",
          "事迹类型", "主要荣誉", "事迹简介", "主要事迹", "照片", "视频", "身份证号"]
ID_A, ID_B, ID_C = "320102198001010016", "320102198001010024", "320583199002020018"


def person(number: int, name: str, recommender: str, id_number: str = "", **over: str) -> list[str]:
    row = {"编号": str(number), "姓名": name, "性别": "男" if number % 2 else "女",
           "地区": recommender if recommender.endswith("市") else "南京市", "行业": "装备制造",
           "工作单位": f"{name}所在公司", "职业（工种）": "钳工", "推荐单位": recommender,
           "事迹类型": "技术创新", "主要荣誉": "全国劳动模范；江苏省五一劳动奖章; 大国工匠",
           "事迹简介": "简介", "主要事迹": "第一段\n第二段", "照片": "",
           "视频": f"https://media.example.cn/v/{number}.mp4", "身份证号": id_number}
    row.update(over)
    return [row[h] for h in HEADER]


def as_csv(rows: list[list[str]], header: list[str] = HEADER) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows([header, *rows])
    return out.getvalue()


def as_xlsx(rows: list[list[str]]) -> bytes:
    book = openpyxl.Workbook()
    ws = book.active
    assert ws is not None
    ws.append(["2026年江苏最美工匠推荐人选申报表"])  # a title row above the header
    ws.append(HEADER)
    for row in rows:
        ws.append([int(v) if i == 0 else v for i, v in enumerate(row)])  # 编号 as a number
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


ROSTER = [person(1, "王建国", "南京市", ID_A), person(2, "李秀英", "苏州市", ID_B),
          person(3, "张伟", "省总工会", ID_C), person(4, "陈静", "南京市")]


@pytest.fixture
def h(harness: Harness) -> Harness:
    return harness


async def empty_campaign(h: Harness, **changes: Any) -> None:
    r = await h.client.post("/api/v1/admin/campaigns", headers=ADMIN,
                            json=campaign_payload(candidates=0, rules=NO_LIMITS, **changes))
    assert r.status_code == 201, r.text


async def upload(h: Harness, body: bytes, content_type: str = CSV,
                 dry_run: bool = False) -> httpx.Response:
    return await h.client.post(IMPORT + ("?dry_run=1" if dry_run else ""), content=body,
                               headers={**ADMIN, "Content-Type": content_type})


async def candidates(h: Harness) -> dict[str, dict[str, Any]]:
    r = await h.client.get(f"/api/v1/campaigns/{CID}/candidates")
    assert r.status_code == 200, r.text
    return {c["id"]: c for c in r.json()["candidates"]}


async def cast(h: Harness, ballots: list[list[str]], ip: str = "203.0.113.7") -> list[str]:
    """Each list is one voter's votes; returns the vote ids the service answered."""
    ids = []
    async with clients(h, [ip]) as (client,):
        for ballot in ballots:
            token = await new_voter(client)
            for cand in ballot:
                r = await client.post(f"/api/v1/campaigns/{CID}/votes",
                                      json={"candidate_id": cand},
                                      headers={"X-Voter-Token": token})
                assert r.status_code == 200, r.text
                ids.append(r.json()["vote_id"])
    return ids


# --- §1 candidate facts ---------------------------------------------------------------------


async def test_candidate_facts_and_a_campaign_created_empty(h: Harness) -> None:
    await empty_campaign(h)
    assert await candidates(h) == {}
    payload = campaign_payload(candidates=2)["candidates"]
    payload[0].update(recommender="无锡市", deed_type="技能报国", honors=["全国技术能手"],
                      video_url="https://media.example.cn/a.mp4")
    payload[1].update(recommender="省总工会", recommender_kind="")
    r = await h.client.patch(ADMIN_API, json={"candidates": payload}, headers=ADMIN)
    assert r.status_code == 200, r.text
    listed = await candidates(h)
    assert (listed["c001"]["recommender"], listed["c001"]["recommender_kind"]) == (
        "无锡市", "city")
    assert listed["c002"]["recommender_kind"] == "provincial_unit"
    detail = (await h.client.get(f"/api/v1/campaigns/{CID}/candidates/c001")).json()
    assert (detail["deed_type"], detail["honors"], detail["video_url"], detail["status"]) == (
        "技能报国", ["全国技术能手"], "https://media.example.cn/a.mp4", "active")
    payload[0]["video_url"] = "http://media.example.cn/a.mp4"
    r = await h.client.patch(ADMIN_API, json={"candidates": payload}, headers=ADMIN)
    assert r.status_code == 400 and "https" in r.json()["detail"], r.text


# --- §3 candidates who leave ----------------------------------------------------------------


async def test_a_candidate_with_votes_is_never_removed(h: Harness) -> None:
    payload = await h.create_campaign(candidates=3, rules=NO_LIMITS)
    await cast(h, [["c001"]])  # counted in Redis, not flushed yet
    without = [c for c in payload["candidates"] if c["id"] != "c001"]
    r = await h.client.patch(ADMIN_API, json={"candidates": without}, headers=ADMIN)
    assert r.status_code == 409 and problem_code(r) == "candidate_has_votes", r.text
    assert r.json()["candidates"] == ["c001"] and "c001" in r.json()["detail"]
    await drain(h)
    r = await h.client.patch(ADMIN_API, json={"candidates": without}, headers=ADMIN)
    assert problem_code(r) == "candidate_has_votes", r.text
    assert set(await candidates(h)) == {"c001", "c002", "c003"}
    no_c003 = [c for c in payload["candidates"] if c["id"] != "c003"]
    r = await h.client.patch(ADMIN_API, json={"candidates": no_c003}, headers=ADMIN)
    assert r.status_code == 200, r.text  # no votes: may go
    assert set(await candidates(h)) == {"c001", "c002"}
    total = sum((await redis_tallies(h)).values())
    assert total == sum(c["votes"] for c in (await candidates(h)).values()) == 1


async def test_campaign_load_refuses_in_one_line(h: Harness, tmp_path: Path) -> None:
    payload = await h.create_campaign(candidates=3, rules=NO_LIMITS)
    await cast(h, [["c002"]])
    await drain(h)
    doc = tmp_path / "campaign.json"
    payload["candidates"] = payload["candidates"][:1]
    doc.write_text(json.dumps(payload, ensure_ascii=False))
    code, out, err = await run_cli(h, "campaign", "load", str(doc))
    assert code == 1, (out, err)
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 2, err
    assert "c002" in err and "candidate_has_votes" in err
    assert set(await candidates(h)) == {"c001", "c002", "c003"}


async def test_withdrawal_keeps_votes_and_refuses_new_ones(h: Harness) -> None:
    payload = await h.create_campaign(candidates=3, rules=NO_LIMITS)
    await cast(h, [["c001", "c002"], ["c001"]])
    r = await h.client.patch(f"{ADMIN_API}/candidates/c001", headers=ADMIN,
                             json={"status": "withdrawn", "reason": "本人申请退出"})
    assert r.status_code == 200 and r.json()["status"] == "withdrawn", r.text
    r = await h.client.patch(f"{ADMIN_API}/candidates/c001", headers=ADMIN,
                             json={"status": "withdrawn"})
    assert r.status_code == 400, "a withdrawal needs a reason"
    r = await h.client.patch(f"{ADMIN_API}/candidates/c001", headers=OPS,
                             json={"status": "withdrawn", "reason": "x"})
    assert r.status_code == 403
    await h.app.state.services.registry.refresh(force=True)
    token = await h.voter()
    r = await h.vote(token, "c001")
    assert r.status_code == 409 and problem_code(r) == "candidate_withdrawn", r.text
    assert (await h.vote(token, "c003")).status_code == 200
    listed = await candidates(h)
    assert (listed["c001"]["status"], listed["c001"]["votes"]) == ("withdrawn", 2)
    page = await h.client.get(f"/c/{CID}")
    assert "已退出" in page.text
    # re-posting the campaign document does not bring the candidate back
    r = await h.client.patch(ADMIN_API, json={"candidates": payload["candidates"]},
                             headers=ADMIN)
    assert r.status_code == 200 and r.json()["candidates"][0]["status"] == "withdrawn"
    await drain(h)
    results = (await h.client.get(f"{ADMIN_API}/results", headers=OPS)).json()
    assert {c["candidate_id"]: c["votes"] for c in results["candidates"]}["c001"] == 2
    r = await h.client.patch(f"{ADMIN_API}/candidates/c001", headers=ADMIN,
                             json={"status": "active"})
    assert r.status_code == 200 and r.json()["withdrawn_reason"] == ""


# --- §2 import ------------------------------------------------------------------------------


async def test_gb18030_csv_import_with_quotas(h: Harness) -> None:
    await empty_campaign(h)
    r = await h.client.put(f"{ADMIN_API}/quotas", headers=ADMIN,
                           json={"南京市": 2, "苏州市": 1, "省总工会": 1})
    assert r.status_code == 200, r.text
    body = as_csv(ROSTER).encode("gb18030")
    with pytest.raises(UnicodeDecodeError):
        body.decode("utf-8")
    r = await upload(h, body, dry_run=True)
    assert r.status_code == 200 and r.json()["dry_run"] is True, r.text
    assert await candidates(h) == {}, "a dry run changes nothing"
    r = await upload(h, body)
    assert r.status_code == 200, r.text
    assert r.json()["imported"] == 4
    assert r.json()["by_recommender"] == {"南京市": 2, "苏州市": 1, "省总工会": 1}
    listed = await candidates(h)
    first = listed["c001"]
    assert (first["name"], first["recommender"], first["recommender_kind"]) == (
        "王建国", "南京市", "city")
    assert first["honors"] == ["全国劳动模范", "江苏省五一劳动奖章", "大国工匠"]
    assert listed["c003"]["recommender_kind"] == "provincial_unit"
    quotas = (await h.client.get(f"{ADMIN_API}/quotas", headers=OPS)).json()
    assert quotas["quotas"]["南京市"] == {"quota": 2, "used": 2, "kind": "city"}
    stored = await h.pg.fetch("SELECT * FROM candidates")
    assert all(ID_A not in str(dict(r).values()) for r in stored), "no identity number stored"
    assert {len(r["person_key"]) for r in stored} == {64}
    audit = await h.pg.fetchval("SELECT request::text FROM audit_log"
                                " WHERE action = 'candidates.import'")
    assert ID_A not in audit


async def test_xlsx_import_and_reimport_keeps_voted_candidates(h: Harness) -> None:
    await empty_campaign(h)
    xlsx = sheets.XLSX_TYPE
    r = await upload(h, as_xlsx(ROSTER), xlsx)
    assert r.status_code == 200 and r.json()["imported"] == 4, r.text
    await h.app.state.services.registry.refresh(force=True)
    await cast(h, [["c002"]])
    # renumbered, 陈静 dropped (no votes), one newcomer: 李秀英 keeps her id and her vote
    again = [person(1, "王建国", "南京市", ID_A), person(7, "李秀英", "苏州市", ID_B),
             person(3, "张伟", "省总工会", ID_C), person(8, "赵敏", "无锡市")]
    r = await upload(h, as_xlsx(again), xlsx)
    assert r.status_code == 200, r.text
    assert (r.json()["removed"], r.json()["created"]) == (["c004"], ["c008"])
    listed = await candidates(h)
    assert (listed["c002"]["number"], listed["c002"]["votes"]) == (7, 1)
    # a file without 李秀英 would remove a candidate with votes: refused, nothing changes
    r = await upload(h, as_xlsx(again[:1]), xlsx)
    assert r.status_code == 422 and problem_code(r) == "import_rejected", r.text
    assert [e["code"] for e in r.json()["errors"]] == ["candidate_has_votes"]
    assert set(await candidates(h)) == {"c001", "c002", "c003", "c008"}


async def test_import_refuses_the_whole_file_with_every_error(h: Harness) -> None:
    await empty_campaign(h)
    await h.client.put(f"{ADMIN_API}/quotas", headers=ADMIN, json={"南京市": 1, "苏州市": 5})
    bad = [
        person(1, "王建国", "南京市", ID_A),
        person(2, "王建国二", "南京市", ID_A),          # same identity number: same person
        person(2, "李秀英", "苏州市"),                  # duplicate 编号, and 南京市 over quota
        person(4, "陈静", "苏州市", 性别="male"),
        person(5, "", "苏州市"),
        person(6, "周杰", "苏州市", 视频="http://media.example.cn/x.mp4"),
        person(7, "吴刚", "苏州市", 事迹简介="长" * 2001),
        person(8, "郑和", "盐城市"),                    # not in the quota table
        person(9, "陈静", "苏州市", 性别="女"),          # same name + employer as row 5
    ]
    body = ("\ufeff" + as_csv(bad)).encode("utf-8")
    r = await upload(h, body)
    assert r.status_code == 422 and problem_code(r) == "import_rejected", r.text
    found = {(e["row"], e["code"]) for e in r.json()["errors"]}
    assert found >= {(3, "same_person"), (4, "duplicate_number"), (5, "bad_gender"),
                     (6, "missing_field"), (7, "not_https"), (8, "too_long"),
                     (9, "unknown_recommender"), (10, "same_person"), (3, "over_quota")}, found
    over = next(e for e in r.json()["errors"] if e["code"] == "over_quota")
    assert "南京市" in over["message"] and "名额 1" in over["message"], over
    assert ID_A not in r.text, "identity numbers are never echoed"
    assert await candidates(h) == {}
    r = await upload(h, as_csv(ROSTER[:1], [*HEADER, "备注"]).encode())
    assert r.status_code == 422
    assert [(e["row"], e["column"], e["code"]) for e in r.json()["errors"]] == [
        (1, "备注", "unknown_column")]
    r = await upload(h, b"\x00\x01not a sheet", sheets.XLSX_TYPE)
    assert r.status_code == 422 and r.json()["errors"][0]["code"] == "bad_file"
    r = await upload(h, b"x", "application/json")
    assert r.status_code == 400


async def test_cli_import_reports_a_table_and_exits_1_on_errors(
    h: Harness, tmp_path: Path
) -> None:
    await empty_campaign(h)
    quotas = tmp_path / "quotas.json"
    quotas.write_text(json.dumps({"南京市": 1, "苏州市": 1, "省总工会": 1}, ensure_ascii=False))
    sheet = tmp_path / "申报表.csv"
    sheet.write_bytes(as_csv(ROSTER).encode("gb18030"))
    code, out, err = await run_cli(h, "candidates", "import", CID, str(sheet),
                                   "--quotas", str(quotas), "--dry-run")
    assert code == 1 and "over_quota" in err and "南京市" in err, (out, err)
    code, out, err = await run_cli(h, "candidates", "import", CID, str(sheet),
                                   "--quotas", str(quotas))
    assert code == 1 and "nothing imported" in err, (out, err)
    assert (await h.client.get(f"{ADMIN_API}/quotas", headers=OPS)).json()["quotas"] == {}
    code, out, err = await run_cli(h, "candidates", "import", "nope", str(sheet))
    assert code == 1 and "Traceback" not in err and "nope" in err, (out, err)
    sheet.write_bytes(as_csv(ROSTER[:3]).encode("gb18030"))
    code, out, err = await run_cli(h, "candidates", "import", CID, str(sheet),
                                   "--quotas", str(quotas), "--dry-run")
    assert code == 0 and "dry run" in out and "省总工会" in out, (out, err)
    assert await candidates(h) == {}
    assert (await h.client.get(f"{ADMIN_API}/quotas", headers=OPS)).json()["quotas"] == {}
    code, out, err = await run_cli(h, "candidates", "import", CID, str(sheet),
                                   "--quotas", str(quotas))
    assert code == 0 and "imported 3" in out, (out, err)
    await h.app.state.services.registry.refresh(force=True)  # another process published it
    assert len(await candidates(h)) == 3


# --- §4 publication, §5 the public ledger ------------------------------------------------------


async def test_publication_order_results_and_a_ledger_anyone_can_recount(
    h: Harness, tmp_path: Path
) -> None:
    await h.create_campaign(candidates=4, rules=NO_LIMITS)
    vote_ids = await cast(h, [["c001", "c002"], ["c001"], ["c003"]])
    await cast(h, [["c004", "c002"]] * 3, ip="198.51.100.5")  # brushed
    r = await h.client.post(f"{ADMIN_API}/publication", headers=ADMIN, json={})
    assert r.status_code == 409 and problem_code(r) == "voting_not_closed", r.text
    closes = (await h.client.get(ADMIN_API, headers=ADMIN)).json()["closes_at"]
    local = dt.datetime.fromisoformat(closes).astimezone(ZoneInfo("Asia/Shanghai"))
    assert f"voting closes at {local:%Y-%m-%d %H:%M} Asia/Shanghai" in r.json()["detail"]
    r = await h.client.get(f"/api/v1/campaigns/{CID}/results")
    assert r.status_code == 404 and problem_code(r) == "not_published"
    r = await h.client.patch(ADMIN_API, json={"status": "closed"}, headers=ADMIN)
    assert r.status_code == 200
    r = await h.client.post(f"{ADMIN_API}/publication", headers=ADMIN, json={})
    assert r.status_code == 409 and problem_code(r) == "ledger_behind", r.text
    # a strike-out after the close (it flushes up to its cutoff first, under the marks' lock)
    r = await h.client.post(f"{ADMIN_API}/invalidations", headers=ADMIN,
                            json={"reason": "刷票", "ip": "198.51.100.0/24"})
    assert r.status_code == 201 and r.json()["votes_invalidated"] == 6, r.text
    await drain(h)
    r = await h.client.post(f"{ADMIN_API}/publication", headers=ADMIN, json={"note": "公示期7天"})
    assert r.status_code == 201, r.text
    r = await h.client.post(f"{ADMIN_API}/publication", headers=ADMIN, json={})
    assert problem_code(r) == "published"
    results = (await h.client.get(f"/api/v1/campaigns/{CID}/results")).json()
    assert results["note"] == "公示期7天" and results["total"] == 4
    assert [(c["candidate_id"], c["votes"], c["rank"]) for c in results["candidates"]] == [
        ("c001", 2, 1), ("c002", 1, 2), ("c003", 1, 2), ("c004", 0, 4)]
    assert results["invalidated"]["total"] == 6
    assert [(x["reason"], x["votes"]) for x in results["invalidated"]["by_reason"]] == [
        ("刷票", 6)]
    # frozen: no strike-out, no reopening, no withdrawal
    r = await h.client.post(f"{ADMIN_API}/invalidations", headers=ADMIN,
                            json={"reason": "late", "candidate_id": "c001"})
    assert problem_code(r) == "published", r.text
    r = await h.client.patch(ADMIN_API, json={"status": "open"}, headers=ADMIN)
    assert problem_code(r) == "published"
    r = await h.client.patch(f"{ADMIN_API}/candidates/c001", headers=ADMIN,
                             json={"status": "withdrawn", "reason": "x"})
    assert problem_code(r) == "published"

    ledger = await h.client.get(f"/api/v1/campaigns/{CID}/ledger")
    assert ledger.status_code == 200
    assert ledger.headers["content-type"].startswith("application/x-ndjson")
    lines = ledger.content.splitlines()
    records = [json.loads(x) for x in lines if b'"vote_id"' in x]
    assert len(records) == 10
    voters = {r["voter"] for r in records}
    assert len(voters) == 6 and all(len(v) == 32 for v in voters)
    internal = {r["voter_id"] for r in await h.pg.fetch("SELECT voter_id FROM votes")}
    assert not voters & internal, "pseudonyms, not voter ids"
    assert sorted(str(r["status"]) for r in records).count("valid") == 4
    chain = public_ledger.verify(lines, results)
    assert chain.digest == results["digest"]

    # the file is frozen at publication in parts; written in parts of 3 lines, it is the same
    async with h.pg.transaction():
        await h.pg.execute("DELETE FROM published_ledger WHERE campaign_id = $1", CID)
        chain = await public_ledger.freeze(h.pg, CID, str(h.settings.pepper),
                                           results["published_at"], lines_per_chunk=3)
        assert chain.digest == results["digest"]
        assert await h.pg.fetchval("SELECT count(*) FROM published_ledger") >= 4
        again = b"".join([x async for x in public_ledger.download(h.pg, CID)])
        assert again == ledger.content
    mine = await h.client.get(f"/api/v1/campaigns/{CID}/ledger", params={"vote_id": vote_ids[0]})
    assert [x["candidate"] for x in mine.json()["records"]] == ["c001"]

    good, moved = tmp_path / "ledger.ndjson", tmp_path / "moved.ndjson"
    res = tmp_path / "results.json"
    good.write_bytes(ledger.content)
    res.write_text(json.dumps(results, ensure_ascii=False))
    one = next(i for i, x in enumerate(lines) if b'"candidate":"c001"' in x)
    tampered = list(lines)
    tampered[one] = tampered[one].replace(b'"candidate":"c001"', b'"candidate":"c003"')
    moved.write_bytes(b"\n".join(tampered) + b"\n")
    code, out, err = await run_cli(h, "verify", str(good), "--results", str(res))
    assert code == 0 and out.startswith("OK"), (out, err)
    code, out, err = await run_cli(h, "verify", str(moved), "--results", str(res))
    day = json.loads(lines[one])["day"]
    assert code == 1 and "MISMATCH" in err and f"digest of {day}" in err, (out, err)
    # an attacker who also rewrites the digest lines is caught by the published digest
    forged = moved.read_bytes().splitlines()
    forged = recompute_digests(forged)
    moved.write_bytes(b"\n".join(forged) + b"\n")
    code, out, err = await run_cli(h, "verify", str(moved))
    assert code == 0, "the forged file agrees with itself"
    code, out, err = await run_cli(h, "verify", str(moved), "--results", str(res))
    assert code == 1 and "digest" in err, (out, err)


def recompute_digests(lines: list[bytes]) -> list[bytes]:
    chain: public_ledger.Chain | None = None
    out = []
    for raw in lines:
        obj = json.loads(raw)
        if "format" in obj:
            chain = public_ledger.Chain(obj["campaign_id"])
        elif chain is None:
            raise AssertionError("no header")
        elif "day_end" in obj:
            done = chain.end_day()
            assert done is not None
            obj.update(digest=done["digest"])
        elif obj.get("end"):
            obj.update(digest=chain.digest)
        elif "vote_id" in obj:  # (the log's invalidation lines are no day's records)
            chain.add(public_ledger.Record(obj["day"], obj["vote_id"], obj["voter"],
                                           obj["candidate"], obj["channel"], obj["status"]))
        out.append(json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode())
    return out


async def test_results_page_after_publication_from_the_cli(h: Harness) -> None:
    await h.create_campaign(candidates=3, rules=NO_LIMITS)
    await cast(h, [["c002"]])
    assert (await h.client.get(f"/c/{CID}/results")).status_code == 404
    code, out, err = await run_cli(h, "publish", CID)
    assert code == 1 and "voting_not_closed" in err and "Traceback" not in err, (out, err)
    await h.client.patch(ADMIN_API, json={"status": "closed"}, headers=ADMIN)
    await drain(h)
    code, out, err = await run_cli(h, "publish", CID, "--note", "公示")
    assert code == 0 and "published 1 valid votes" in out, (out, err)
    digest = out.split()[-1]
    await h.app.state.services.registry.refresh(force=True)  # another process published it
    page = await h.client.get(f"/c/{CID}/results")
    assert page.status_code == 200
    assert "候选人2" in page.text and digest in page.text


async def run_cli(h: Harness, *args: str) -> tuple[int, str, str]:
    env = settings_env(h.settings)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "voting_service.cli", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_two_publications_at_once_make_one(h: Harness) -> None:
    await h.create_campaign(candidates=2, rules=NO_LIMITS, status="closed")
    first, second = await asyncio.gather(*(
        h.client.post(f"{ADMIN_API}/publication", headers=ADMIN) for _ in range(2)))
    assert sorted([first.status_code, second.status_code]) == [201, 409], (first, second)
    assert await h.pg.fetchval("SELECT count(*) FROM publications") == 1
    results = (await h.client.get(f"/api/v1/campaigns/{CID}/results")).json()
    assert results["total"] == 0 and results["digest"] == public_ledger.genesis(CID)
    ledger = (await h.client.get(f"/api/v1/campaigns/{CID}/ledger")).content.splitlines()
    assert public_ledger.verify(ledger, results).votes == 0


# --- §6 for the expert panel ------------------------------------------------------------------


async def test_xlsx_export_has_the_facts_breakdowns_and_balance(h: Harness) -> None:
    payload = campaign_payload(candidates=45, rules=NO_LIMITS)
    for i, c in enumerate(payload["candidates"]):
        c.update(recommender="省总工会" if i % 5 == 0 else c["region"],
                 deed_type="技术创新" if i < 40 else "传承技艺", honors=["劳动模范", "技术能手"])
    r = await h.client.post("/api/v1/admin/campaigns", json=payload, headers=ADMIN)
    assert r.status_code == 201, r.text
    await cast(h, [[f"c{i:03d}" for i in range(1, 6)] for _ in range(3)])  # 5 open a lead
    r = await h.client.patch(f"{ADMIN_API}/candidates/c001", headers=ADMIN,
                             json={"status": "withdrawn", "reason": "本人申请"})
    assert r.status_code == 200
    await drain(h)

    async def book() -> openpyxl.Workbook:
        r = await h.client.get(f"{ADMIN_API}/export", params={"format": "xlsx"}, headers=OPS)
        assert r.status_code == 200, r.text
        return openpyxl.load_workbook(io.BytesIO(r.content))

    def rows(b: openpyxl.Workbook, title: str) -> list[tuple[Any, ...]]:
        ws = b[title]
        return list(ws.iter_rows(min_row=2, values_only=True))

    b = await book()
    about = {str(k).split(" ")[0]: v for k, v in rows(b, "说明")}
    assert str(about["结果性质"]).startswith("临时结果") and "provisional" in about["结果性质"]
    ranking = rows(b, "排名")
    assert ranking[0][:3] == (1, 2, "c002")
    last = ranking[-1]  # withdrawn: the votes stay, no rank, after the ranked candidates
    assert last[0] is None and last[2] == "c001" and last[9] == 3
    assert last[11:] == ("省总工会", "省级单位", "技术创新", "劳动模范；技术能手", "已退出")
    by_rec = {x[0]: (x[1], x[2]) for x in rows(b, "按推荐单位")}
    assert by_rec["省总工会"] == (9, 3) and sum(v for _, v in by_rec.values()) == 15
    assert {x[0]: x[2] for x in rows(b, "按事迹类型")} == {"技术创新": 15, "传承技艺": 0}
    balance = {(x[0], x[1]): x[2:] for x in rows(b, "均衡")}
    # the top 40 of the 44 still standing (c001 withdrew) leaves out 4; the field has 5
    # 传承技艺, votes put 1 on top
    assert balance[("事迹类型", "传承技艺")] == (1, 2.5, 5, 11.36, -8.86)
    assert balance[("事迹类型", "技术创新")][:3] == (39, 97.5, 39)
    assert balance[("性别", "男")][0] + balance[("性别", "女")][0] == 40

    await h.client.patch(ADMIN_API, json={"status": "closed"}, headers=ADMIN)
    about = {str(k).split(" ")[0]: v for k, v in rows(await book(), "说明")}
    assert str(about["结果性质"]).startswith("投票已结束")


# --- issue 24 §3: withdrawn candidates take no rank; an early close; results not yet out ------


async def test_a_withdrawn_leader_keeps_votes_but_takes_no_rank(h: Harness,
                                                                 tmp_path: Path) -> None:
    await h.create_campaign(candidates=4, rules=NO_LIMITS)
    await cast(h, [["c001", "c002"], ["c001", "c003"], ["c001"]])
    r = await h.client.patch(f"{ADMIN_API}/candidates/c001", headers=ADMIN,
                             json={"status": "withdrawn", "reason": "本人申请退出"})
    assert r.status_code == 200, r.text
    page = await h.client.get(f"/c/{CID}/results")
    assert page.status_code == 404 and "结果尚未公布" in page.text and "页面不存在" not in page.text
    assert "Results" not in page.text and f'href="/c/{CID}"' in page.text
    english = await h.client.get(f"/c/{CID}/results?lang=en")
    assert "The results are not published yet" in english.text
    planned = (await h.client.get(ADMIN_API, headers=ADMIN)).json()["closes_at"]
    r = await h.client.patch(ADMIN_API, json={"status": "closed"}, headers=ADMIN)
    assert r.status_code == 200, r.text
    closed_at = r.json()["closes_at"]
    assert closed_at < planned, "closed early: the window ends when it really closed"
    audit = (await h.client.get("/api/v1/admin/audit", headers=ADMIN)).json()[0]
    assert audit["request"]["planned_closes_at"][:19] == planned[:19]
    await drain(h)

    export = await h.client.get(f"{ADMIN_API}/export", params={"format": "csv"}, headers=OPS)
    rows = list(csv.reader(io.StringIO(export.content.decode("utf-8-sig"))))[1:]
    assert [(x[0], x[2], x[9]) for x in rows] == [
        ("1", "c002", "1"), ("1", "c003", "1"), ("3", "c004", "0"), ("", "c001", "3")]

    r = await h.client.post(f"{ADMIN_API}/publication", headers=ADMIN, json={})
    assert r.status_code == 201, r.text
    results = (await h.client.get(f"/api/v1/campaigns/{CID}/results")).json()
    assert [(c["candidate_id"], c["votes"], c["rank"], c["status"])
            for c in results["candidates"]] == [
        ("c002", 1, 1, "active"), ("c003", 1, 1, "active"), ("c004", 0, 3, "active"),
        ("c001", 3, None, "withdrawn")]
    assert results["total"] == 5
    page = await h.client.get(f"/c/{CID}/results")
    assert page.status_code == 200
    withdrawn_row = page.text[page.text.index('data-id="c001"'):]
    assert withdrawn_row.split("</tr>")[0].count('<td class="rk">—</td>') == 1
    ledger = (await h.client.get(f"/api/v1/campaigns/{CID}/ledger")).content.splitlines()
    assert public_ledger.verify(ledger, results).votes == 5
    tampered = json.loads(json.dumps(results))
    tampered["candidates"][3]["rank"] = 1  # the old defect: the withdrawn leader ranked 1
    with pytest.raises(public_ledger.Mismatch, match="c001"):
        public_ledger.verify(ledger, tampered)
    # `verify` says the withdrawn take no rank, and refuses the old defect's ranks
    (tmp_path / "ledger.ndjson").write_bytes(b"\n".join(ledger) + b"\n")
    (tmp_path / "results.json").write_text(json.dumps(results, ensure_ascii=False))
    (tmp_path / "ranked.json").write_text(json.dumps(tampered, ensure_ascii=False))
    code, out, err = await run_cli(h, "verify", str(tmp_path / "ledger.ndjson"),
                                   "--results", str(tmp_path / "results.json"))
    assert code == 0 and "withdrawn candidates: votes counted, no rank" in out, (out, err)
    code, out, err = await run_cli(h, "verify", str(tmp_path / "ledger.ndjson"),
                                   "--results", str(tmp_path / "ranked.json"))
    assert code == 1 and err.startswith("MISMATCH") and "c001" in err, (out, err)
    closed_page = await h.client.get(f"/c/{CID}")
    local = dt.datetime.fromisoformat(closed_at).astimezone(ZoneInfo("Asia/Shanghai"))
    assert f"{local.month}月{local.day}日 {local:%H:%M}" in closed_page.text
