"""Server-rendered pages without a browser: content, language, filters, caching, escaping."""

from __future__ import annotations

import gzip
import ipaddress
import re

import pytest

from tests.conftest import ADMIN, Backend, Harness, client_for, make_settings
from voting_service.app import create_app
from voting_service.web import i18n

CARD = re.compile(r'<li class="card" data-id="(c\d+)"[^>]*?( hidden)?>')


def shown(html: str) -> list[str]:
    return [cid for cid, hidden in CARD.findall(html) if not hidden]


async def test_list_page_in_chinese_with_rules_window_and_counts(harness: Harness) -> None:
    await harness.create_campaign(title="2026年“江苏最美工匠”网络投票")
    assert (await harness.vote(await harness.voter(), "c003")).status_code == 200
    r = await harness.client.get("/c/t2026")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    html = r.text
    assert '<html lang="zh-CN">' in html
    assert "每天可投 5 票，每位候选人每天限投 1 票" in html
    assert re.search(r"投票时间：\d{4}年\d+月\d+日 \d\d:\d\d 至 .+（北京时间）", html)
    assert '<b id="vs-total">1</b>' in html
    assert shown(html) == [f"c{i:03d}" for i in range(1, 13)]
    assert '<span class="nb">“江苏最美工匠”</span>' in html
    assert 'aria-label="为3号候选人3投票"' in html
    assert 'loading="lazy"' in html


async def test_server_applies_filters_and_sort_from_the_address(harness: Harness) -> None:
    await harness.create_campaign()
    for cand in ("c008", "c008", "c004"):
        assert (await harness.vote(await harness.voter(), cand)).status_code == 200
    r = await harness.client.get("/c/t2026", params={"region": "苏州市"})
    assert shown(r.text) == ["c001", "c004", "c007", "c010"]
    r = await harness.client.get("/c/t2026", params={"region": "苏州市", "industry": "电子信息"})
    assert shown(r.text) == ["c004", "c010"]
    assert "共 2 位候选人" in r.text
    r = await harness.client.get("/c/t2026", params={"q": "11号"})
    assert shown(r.text) == ["c011"]
    r = await harness.client.get("/c/t2026", params={"sort": "votes"})
    assert shown(r.text)[:2] == ["c008", "c004"]


async def test_counts_stay_private_when_the_campaign_hides_them(harness: Harness) -> None:
    await harness.create_campaign(show_counts=False)
    assert (await harness.vote(await harness.voter(), "c001")).status_code == 200
    html = (await harness.client.get("/c/t2026")).text
    assert 'id="vs-total"' not in html and 'class="cnt"' not in html
    assert 'id="vs-sort"' not in html and "data-v=" not in html
    assert '"counts":false' in html


async def test_english_by_parameter_or_browser_language(harness: Harness) -> None:
    await harness.create_campaign()
    r = await harness.client.get("/c/t2026", params={"lang": "en"})
    assert '<html lang="en">' in r.text and "You have 5 votes a day" in r.text
    assert "(Beijing time)" in r.text and 'href="/c/t2026?lang=zh"' in r.text
    r = await harness.client.get("/c/t2026", headers={"Accept-Language": "en-US,en;q=0.9"})
    assert '<html lang="en">' in r.text
    r = await harness.client.get("/c/t2026", headers={"Accept-Language": "zh-CN,en;q=0.8"})
    assert '<html lang="zh-CN">' in r.text
    assert r.headers["vary"] == "Accept-Encoding, Accept-Language"


@pytest.mark.parametrize(("query", "header", "expected"), [
    (None, None, "zh"),
    ("en", "zh-CN", "en"),
    ("zh", "en-US", "zh"),
    ("fr", "en-GB,en;q=0.9", "en"),
    (None, "fr-FR,en;q=0.5,zh;q=0.4", "en"),
    (None, "en;q=0.3,zh-TW;q=0.9", "zh"),
    (None, "en;q=0", "zh"),
    (None, "de, fr", "zh"),
    (None, "en;q=abc,zh", "zh"),
])
def test_language_choice(query: str | None, header: str | None, expected: str) -> None:
    assert i18n.pick(query, header) == expected


async def test_candidate_page_with_deeds_and_link_preview(harness: Harness) -> None:
    await harness.create_campaign()
    r = await harness.client.get("/c/t2026/c005")
    assert r.status_code == 200
    html = r.text
    assert '<h1 class="nm"><span class="no">5号</span> 候选人5</h1>' in html
    assert '<meta property="og:url" content="http://testserver/c/t2026/c005">' in html
    assert ('<meta property="og:image" content="http://testserver/static/photos/c005.svg'
            '?c=t2026">') in html
    assert '<link rel="canonical" href="http://testserver/c/t2026/c005">' in html
    assert "<p>事迹</p>" in html


async def test_link_preview_addresses_behind_a_tls_proxy(
    harness: Harness, backend: Backend, pg_url: str
) -> None:
    await harness.create_campaign()
    forwarded = {"X-Forwarded-Proto": "https", "Host": "vote.example.cn"}
    # from a peer that is not a trusted proxy the header means nothing
    html = (await harness.client.get("/c/t2026/c005", headers=forwarded)).text
    assert '<link rel="canonical" href="http://vote.example.cn/c/t2026/c005">' in html
    settings = make_settings(backend, pg_url,
                             trusted_proxies=(ipaddress.ip_network("203.0.113.0/24"),))
    app = create_app(settings)
    async with app.router.lifespan_context(app), client_for(app) as client:
        r = await client.get("/c/t2026/c005", headers=forwarded)
    assert '<link rel="canonical" href="https://vote.example.cn/c/t2026/c005">' in r.text
    assert '<meta property="og:image" content="https://vote.example.cn/static/' in r.text
    assert r.headers["strict-transport-security"] == "max-age=31536000"


async def test_unknown_and_draft_pages_are_404_html(harness: Harness) -> None:
    await harness.create_campaign(status="draft")
    for path in ("/c/t2026", "/c/t2026/c001", "/c/nope", "/c/nope/c001", "/embed/t2026"):
        r = await harness.client.get(path)
        assert r.status_code == 404, path
        assert r.headers["content-type"].startswith("text/html")
        assert "页面不存在" in r.text
    assert "t2026" not in (await harness.client.get("/")).text


async def test_home_lists_visible_campaigns(harness: Harness) -> None:
    await harness.create_campaign(title="第一个投票")
    r = await harness.client.get("/")
    assert r.status_code == 200 and 'href="/c/t2026"' in r.text and "第一个投票" in r.text
    assert "投票进行中" in r.text


async def test_text_from_the_organiser_is_escaped(harness: Harness) -> None:
    evil = '<img src=x onerror=alert(1)>'
    payload = await harness.create_campaign(title=f"投票{evil}")
    payload["candidates"][0]["name"] = f"张{evil}"
    r = await harness.client.patch("/api/v1/admin/campaigns/t2026",
                                   json={"candidates": payload["candidates"]}, headers=ADMIN)
    assert r.status_code == 200, r.text
    for path in ("/c/t2026", "/c/t2026/c001", "/"):
        html = (await harness.client.get(path)).text
        assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    svg = await harness.client.get("/static/photos/c001.svg", params={"c": "t2026"})
    assert "<img" not in svg.text


async def test_html_css_and_js_are_compressed_and_cached(harness: Harness) -> None:
    await harness.create_campaign()
    r = await harness.client.get("/c/t2026", headers={"Accept-Encoding": "gzip"})
    assert r.headers["content-encoding"] == "gzip"
    raw = await harness.client.get("/c/t2026", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in raw.headers
    total = len(gzip.compress(raw.content))
    for url in re.findall(r'(?:href|src)="(/static/app\.(?:css|js)\?v=[0-9a-f]+)"', raw.text):
        asset = await harness.client.get(url, headers={"Accept-Encoding": "gzip"})
        assert asset.status_code == 200 and asset.headers["content-encoding"] == "gzip"
        assert asset.headers["cache-control"] == "public, max-age=31536000, immutable"
        total += int(asset.headers["content-length"])
        again = await harness.client.get(url, headers={"If-None-Match": asset.headers["etag"]})
        assert again.status_code == 304
        unversioned = await harness.client.get(url.split("?")[0])
        assert unversioned.headers["cache-control"] == "public, max-age=300"
    assert 5_000 < total <= 60 * 1024
    embed = await harness.client.get("/embed.js")
    assert embed.headers["content-type"] == "text/javascript; charset=utf-8"
    assert embed.headers["cache-control"] == "public, max-age=300"
    missing = await harness.client.get("/static/nothing.js")
    assert missing.status_code == 404


async def test_photo_placeholder_draws_the_given_name(harness: Harness) -> None:
    payload = await harness.create_campaign()
    payload["candidates"][1]["name"] = "欧阳秀兰"
    payload["candidates"][1]["photo_url"] = "/static/photos/c002.svg"
    r = await harness.client.patch("/api/v1/admin/campaigns/t2026",
                                   json={"candidates": payload["candidates"]}, headers=ADMIN)
    assert r.status_code == 200, r.text
    svg = await harness.client.get("/static/photos/c002.svg")
    assert svg.status_code == 200 and svg.headers["content-type"] == "image/svg+xml"
    assert ">秀兰</text>" in svg.text
    unknown = await harness.client.get("/static/photos/x999.svg")
    assert unknown.status_code == 200 and ">X999</text>" in unknown.text
