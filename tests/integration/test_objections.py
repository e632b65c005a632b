"""Objections (异议) during the 公示 (issue 24 §2), on real servers: the period and the
organisers' contact on the results page, the form's errors beside their fields, bounds on
the attachment, the rate limit, the console's answer and close (audited, without the
submitter's data), the personal data kept from the ops role and purged after retention, and
the counts per candidate made public after the period."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import httpx
import pytest

from tests.conftest import ADMIN, Backend, Harness, make_settings
from tests.integration.antifraud_support import NO_LIMITS, drain
from tests.staff_support import signed_in
from voting_service.ledger import objections
from voting_service.settings import Settings

CID = "t2026"
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


@pytest.fixture
def settings(backend: Backend, pg_url: str) -> Settings:
    return make_settings(backend, pg_url, organiser_phone="025-12345678",
                         organiser_address="南京市北京西路1号", organiser_email="gj@example.cn")


async def published(h: Harness) -> None:
    await h.create_campaign(candidates=3, rules=NO_LIMITS)
    token = await h.voter()
    assert (await h.vote(token, "c002")).status_code == 200
    r = await h.client.patch(f"/api/v1/admin/campaigns/{CID}", json={"status": "closed"},
                             headers=ADMIN)
    assert r.status_code == 200
    await drain(h)
    r = await h.client.post(f"/api/v1/admin/campaigns/{CID}/publication", headers=ADMIN,
                            json={"note": "公示"})
    assert r.status_code == 201, r.text


def form(**over: Any) -> dict[str, str]:
    return {"candidate": "c002", "name": "李明", "phone": "13800138000",
            "address": "南京市玄武区中山路1号",
            "text": "该候选人的事迹材料与实际情况不符，请核查。", "action": "send"} | over


def errors(page: str) -> dict[str, str]:
    return dict(re.findall(r'data-testid="oerr-([a-z]+)">([^<]*)<', page))


async def send(client: httpx.AsyncClient, data: dict[str, str],
               file: tuple[str, bytes, str] | None = None) -> httpx.Response:
    return await client.post(f"/c/{CID}/objections", data=data,
                             files={"file": file} if file else {"x": ("", b"", "text/plain")})


async def test_an_objection_from_the_results_page_to_its_answer(
    harness: Harness, admin: httpx.AsyncClient
) -> None:
    h = harness
    before = await h.client.post(f"/c/{CID}/objections", data=form())
    assert before.status_code == 404
    await published(h)
    page = await h.client.get(f"/c/{CID}/results")
    assert "公示期：" in page.text and "5 个工作日" in page.text
    assert "025-12345678" in page.text and "gj@example.cn" in page.text
    assert 'data-testid="objection-form"' in page.text

    r = await send(h.client, form(name="", phone="12345", text="太短", candidate="c999"))
    assert r.status_code == 422
    assert errors(r.text) == {"candidate": "必填。", "name": "必填。",
                              "phone": "请填写正确的 11 位手机号码。", "text": "请至少写 10 个字。"}
    assert "太短" in r.text, "what was typed stays in the form"
    r = await send(h.client, form(), ("材料.pdf", b"MZ not a pdf", "application/pdf"))
    assert r.status_code == 422 and errors(r.text) == {"file": "只接受 PDF、JPG 或 PNG 文件。"}
    big = PDF + b"0" * objections.ATTACHMENT_LIMIT
    r = await send(h.client, form(), ("材料.pdf", big, "application/pdf"))
    assert r.status_code == 422 and errors(r.text) == {"file": "文件不能超过 2 MB。"}
    r = await send(h.client, form(), ("材料.pdf", PDF, "application/pdf"))
    assert r.status_code == 303, r.text
    thanks = await h.client.get(r.headers["location"])
    assert re.search(r"异议已收到（编号 \d+）", thanks.text)

    for _ in range(4):
        assert (await send(h.client, form(candidate="c001"))).status_code == 303
    limited = await send(h.client, form(candidate="c003"))
    assert limited.status_code == 429 and "提交太频繁" in errors(limited.text)["form"]

    page = await admin.get(f"/ops/c/{CID}/objections")
    assert page.text.count('data-testid="objection-row"') == 5
    assert "李明" in page.text and "13800138000" in page.text and "手机未验证" in page.text
    oid = re.findall(r'data-testid="objection-row" data-id="(\d+)"', page.text)[-1]
    file = await admin.get(f"/ops/c/{CID}/objections/{oid}/file")
    assert file.status_code == 200 and file.content == PDF
    assert file.headers["content-type"] == "application/pdf"
    r = await admin.post(f"/ops/c/{CID}/objections/{oid}/answer", data={"answer": "经核查属实。"})
    assert r.status_code == 303
    r = await admin.post(f"/ops/c/{CID}/objections/{oid}/close")
    assert r.status_code == 303
    r = await admin.post(f"/ops/c/{CID}/objections/{oid}/answer", data={"answer": "改"})
    page = await admin.get(r.headers["location"])
    assert "该异议已办结" in page.text
    audit = (await h.client.get("/api/v1/admin/audit", headers=ADMIN)).json()
    handled = [a for a in audit if a["action"] in ("objection.answer", "objection.close")]
    assert [a["action"] for a in handled] == ["objection.close", "objection.answer"]
    assert all(a["actor"].endswith("@console") for a in handled)
    logged = str(audit)
    assert "13800138000" not in logged and "李明" not in logged and "中山路" not in logged

    ops = await signed_in(h, "li.ops", "ops", "198.51.100.31")
    try:
        seen = await ops.get(f"/ops/c/{CID}/objections")
        assert seen.text.count('data-testid="objection-row"') == 5
        assert "13800138000" not in seen.text and "李明" not in seen.text
        assert (await ops.get(f"/ops/c/{CID}/objections/{oid}/file")).status_code == 403
    finally:
        await ops.aclose()

    # after the period: the form is gone, the counts per candidate are public
    await h.pg.execute(
        "UPDATE publications SET results = jsonb_set(results, '{published_at}',"
        " to_jsonb('2020-01-06T02:00:00+00:00'::text)) WHERE campaign_id = $1", CID)
    h.app.state.services.frozen._results.pop(CID, None)  # as a pod that reads them afresh
    page = await h.client.get(f"/c/{CID}/results")
    assert "公示期已于" in page.text and 'data-testid="objection-form"' not in page.text
    counts = dict(re.findall(r'<tr data-id="(c\d+)"><td class="no">\d+</td><td class="nm">'
                             r'[^<]*</td><td class="v">(\d+)</td>', page.text))
    assert counts == {"c001": "4", "c002": "1"}
    assert "该候选人的事迹材料" not in page.text, "only counts, not texts"
    late = await send(h.client, form())
    assert late.status_code == 409 and "公示期外不接受异议" in late.text

    far = dt.datetime.now(dt.UTC) + dt.timedelta(days=4000)
    assert await objections.purge(h.pg, now=far) == 5
    page = await admin.get(f"/ops/c/{CID}/objections")
    assert "13800138000" not in page.text and page.text.count("个人信息已按期删除") == 5
