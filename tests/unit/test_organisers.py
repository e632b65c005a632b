"""Spreadsheet reading, row checks and the ledger's digest chain, without servers."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from voting_service.ledger import candidate_import, public_ledger, sheets
from voting_service.models import recommender_kind_of

HEADER = "编号,姓名,性别,推荐单位,工作单位\r\n"


def test_csv_encodings_are_detected() -> None:
    text = HEADER + "1,王建国,男,南京市,某厂\r\n"
    for body in (text.encode(), b"\xef\xbb\xbf" + text.encode(), text.encode("gb18030")):
        sheet = sheets.read_csv(body)
        assert sheet.rows[1] == (2, ["1", "王建国", "男", "南京市", "某厂"])
    assert sheets.read_csv(text.encode("gb18030"), "GB18030").rows[1][1][1] == "王建国"
    assert sheets.media_kind("text/csv; charset=gb18030") == ("csv", "gb18030")
    assert sheets.media_kind(sheets.XLSX_TYPE) == ("xlsx", None)
    assert sheets.media_kind("application/json") == ("", None)


def test_title_rows_are_skipped_and_row_numbers_follow_the_sheet() -> None:
    body = ("2026年推荐人选申报表\r\n\r\n" + HEADER + "1,王建国,男,南京市,某厂\r\n"
            "2,李秀英,女,南京市,\"多行\n单位\"\r\n3,张伟,X,苏州市,某厂\r\n").encode()
    parsed = candidate_import.parse(sheets.read_csv(body), "pepper")
    assert [r.line for r in parsed.rows] == [4, 5]
    assert [(e.row, e.column, e.code) for e in parsed.errors] == [(6, "性别", "bad_gender")]
    assert parsed.recommenders == [(4, "南京市"), (5, "南京市"), (6, "苏州市")]
    quota = candidate_import.check_quotas(parsed.recommenders, {"南京市": 1, "苏州市": 1})
    assert [(e.row, e.code) for e in quota] == [(5, "over_quota")]
    assert "名额 1 人，文件中 2 人" in quota[0].message


def test_identity_numbers_are_checked_and_only_kept_as_hmacs() -> None:
    assert candidate_import.id_number_ok("320102198001010016")
    assert not candidate_import.id_number_ok("320102198001010017")
    assert not candidate_import.id_number_ok("3201021980010100")
    key = candidate_import.person_key("pepper", id_number="320102198001010016")
    assert "320102198001010016" not in key and len(key) == 64
    assert key != candidate_import.person_key("other", id_number="320102198001010016")


def test_recommender_kind_is_derived_for_the_13_cities() -> None:
    assert recommender_kind_of("连云港市") == "city"
    assert recommender_kind_of("省总工会") == "provincial_unit"
    assert recommender_kind_of("") == ""
    assert recommender_kind_of("南京市", "provincial_unit") == "provincial_unit"


def _ledger(records: list[public_ledger.Record]) -> list[bytes]:
    chain = public_ledger.Chain("t2026")
    lines = [json.dumps(public_ledger.header_line("t2026", "2026-09-01T00:00:00+00:00"))]
    for r in records:
        done = chain.add(r)
        if done:
            lines.append(json.dumps({"day_end": done["day"], "votes": done["votes"],
                                     "digest": done["digest"]}))
        lines.append(json.dumps(r.as_json()))
    done = chain.end_day()
    assert done is not None
    lines.append(json.dumps({"day_end": done["day"], "votes": done["votes"],
                             "digest": done["digest"]}))
    lines.append(json.dumps({"end": True, "days": len(chain.days), "votes": chain.votes,
                             "digest": chain.digest}))
    return [x.encode() for x in lines]


RECORDS = [
    public_ledger.Record("2026-07-01", "v0000001", "a" * 32, "c001", "", "valid"),
    public_ledger.Record("2026-07-01", "v0000002", "a" * 32, "c002", "xinhua", 7),
    public_ledger.Record("2026-07-02", "v0000003", "b" * 32, "c001", "", "valid"),
]


def test_the_chain_is_sha256_over_the_documented_bytes() -> None:
    g = hashlib.sha256(b"voting-service-ledger/1\nt2026\n").hexdigest()
    d1 = hashlib.sha256(
        f"{g}\n2026-07-01\n".encode()
        + f"2026-07-01\tv0000001\t{'a' * 32}\tc001\t\tvalid\n".encode()
        + f"2026-07-01\tv0000002\t{'a' * 32}\tc002\txinhua\t7\n".encode()).hexdigest()
    d2 = hashlib.sha256(
        f"{d1}\n2026-07-02\n2026-07-02\tv0000003\t{'b' * 32}\tc001\t\tvalid\n".encode()
    ).hexdigest()
    chain = public_ledger.verify(_ledger(RECORDS))
    assert [d["digest"] for d in chain.days] == [d1, d2] and chain.digest == d2
    assert chain.valid == {"c001": 2} and chain.struck == {7: 1}


def test_verify_finds_a_moved_vote_and_a_cut_ledger() -> None:
    lines = _ledger(RECORDS)
    moved = [x.replace(b'"candidate": "c002"', b'"candidate": "c001"') for x in lines]
    with pytest.raises(public_ledger.Mismatch, match="digest of 2026-07-01"):
        public_ledger.verify(moved)
    with pytest.raises(public_ledger.Mismatch, match="no end line"):
        public_ledger.verify(lines[:-1])
    swapped = [lines[0], lines[4], *lines[1:4], *lines[5:]]
    with pytest.raises(public_ledger.Mismatch):
        public_ledger.verify(swapped)
    chain = public_ledger.verify(lines)
    results: dict[str, Any] = {
        "campaign_id": "t2026", "title": "t", "published_at": "2026-09-01T00:00:00+00:00",
        "note": "", "digest": chain.digest, "days": chain.days, "total": 2,
        "candidates": [{"candidate_id": "c001", "number": 1, "name": "甲", "votes": 2,
                        "rank": 1, "status": "active"}],
        "invalidated": {"total": 1, "by_reason": [
            {"reason": "刷票", "votes": 1, "invalidations": [7]}]}}
    public_ledger.verify(lines, results)  # the document as publication makes it
    results["candidates"][0]["votes"] = 3
    with pytest.raises(public_ledger.Mismatch, match="candidate c001"):
        public_ledger.verify(lines, results)


def test_pseudonyms_link_one_voter_and_differ_per_campaign() -> None:
    a, b = public_ledger.Pseudonyms("pepper", "c1"), public_ledger.Pseudonyms("pepper", "c2")
    assert a("f" * 32) == a("f" * 32) != a("e" * 32)
    assert a("f" * 32) != b("f" * 32)
    assert len(a("f" * 32)) == 32 and a("f" * 32) != "f" * 32


def test_english_field_names_work_as_headers() -> None:
    body = ("number,name,gender,recommender,employer,honors,video_url\r\n"
            "7,Wang Jianguo,男,省总工会,X厂,劳模;工匠,https://v.example.cn/7.mp4\r\n").encode()
    parsed = candidate_import.parse(sheets.read_csv(body), "pepper")
    assert parsed.errors == []
    (row,) = parsed.rows
    assert (row.number, row.values["name"], row.values["honors"]) == (7, "Wang Jianguo",
                                                                       "劳模\x1f工匠")
