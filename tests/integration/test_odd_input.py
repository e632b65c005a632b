"""Odd input anywhere gives ``400 invalid_request``, never a 500, and never takes a page down.

Fuzz-style: every admin route, with NUL characters, lone surrogates and times at the
calendar's edges in each of its path values, query values, JSON text fields and JSON times.
Each route first answers its plain request normally, so a 400 below is the odd value's doing.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from tests.conftest import ADMIN, Harness, campaign_payload
from tests.integration.test_api import assert_problem
from voting_service.ledger import campaigns, db
from voting_service.models import Campaign, Candidate, Rules

pytestmark = pytest.mark.parametrize("backend", ["single"], indirect=True)

CID = "t2026"
A = "/api/v1/admin"
ODD_TEXT = ["a\x00b", "\x00", "\ud800", "x\udfffy"]
"""In JSON: NUL characters and lone surrogates (escaped, as json.dumps writes them)."""
CALENDAR_EDGES = [
    "0001-01-01T00:00:00+14:00", "0001-01-01T00:00:00Z", "0001-01-01T00:00:00-14:00",
    "9999-12-31T23:59:59-14:00", "9999-12-31T23:59:59Z", "9999-12-31T23:59:59+14:00",
]
ODD_URL = ["%00", "a%00b", "%ED%A0%80", "x%ED%BF%BFy", "%C0%80", "%FF"]
"""Raw in a path or query: NUL, UTF-8-encoded surrogates (CESU-8), an overlong NUL, not UTF-8."""
_ids = itertools.count()


def _fresh_campaign() -> dict[str, Any]:
    return campaign_payload(cid=f"odd{next(_ids)}", candidates=3)


def _channel() -> dict[str, Any]:
    return {"id": f"ch{next(_ids)}", "name": "渠道", "allowed_origins": ["https://news.example"]}


@dataclass(frozen=True)
class JsonRoute:
    method: str
    path: str
    body: Callable[[], dict[str, Any]]
    ok: int
    text: tuple[tuple[str | int, ...], ...]
    times: tuple[tuple[str | int, ...], ...] = ()


JSON_ROUTES = {
    "create-campaign": JsonRoute(
        "POST", f"{A}/campaigns", _fresh_campaign, 201,
        text=(("title",), ("timezone",), ("candidates", 0, "name"), ("candidates", 0, "deeds"),
              ("candidates", 0, "photo_url")),
        times=(("opens_at",), ("closes_at",))),
    "patch-campaign": JsonRoute(
        "PATCH", f"{A}/campaigns/{CID}", lambda: {"title": "新标题"}, 200,
        text=(("title",), ("timezone",)), times=(("opens_at",), ("closes_at",))),
    "create-channel": JsonRoute(
        "POST", f"{A}/campaigns/{CID}/channels", _channel, 201,
        text=(("name",), ("allowed_origins", 0))),
    "add-block": JsonRoute(
        "POST", f"{A}/blocklist",
        lambda: {"kind": "ip", "value": "198.51.100.0/24", "reason": "刷票"}, 201,
        text=(("value",), ("reason",)), times=(("expires_at",),)),
    "invalidate": JsonRoute(
        "POST", f"{A}/campaigns/{CID}/invalidations",
        lambda: {"reason": "刷票", "ip": "198.51.100.0/24"}, 201,
        text=(("reason",), ("ip",), ("channel",), ("candidate_id",)),
        times=(("since",), ("until",))),
}


def _set(body: dict[str, Any], where: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    node: Any = body
    for step in where[:-1]:
        node = node[step]
    node[where[-1]] = value
    return body


def _case_id(name: str, where: tuple[str | int, ...]) -> str:
    return f"{name}-{'.'.join(map(str, where))}"


def _json_cases() -> list[Any]:
    cases = []
    for name, route in JSON_ROUTES.items():
        for where in route.text:
            cases.append(pytest.param(name, where, ODD_TEXT, id=_case_id(name, where)))
        for where in route.times:
            cases.append(pytest.param(name, where, CALENDAR_EDGES, id=_case_id(name, where)))
    return cases


@pytest.mark.parametrize(("route_name", "where", "values"), _json_cases())
async def test_odd_json_fields_are_invalid_requests(
    harness: Harness, route_name: str, where: tuple[str | int, ...], values: list[str]
) -> None:
    await harness.create_campaign()
    route = JSON_ROUTES[route_name]
    plain = await harness.client.request(route.method, route.path, json=route.body(),
                                         headers=ADMIN)
    assert plain.status_code == route.ok, plain.text
    for value in values:
        body = json.dumps(_set(route.body(), where, value)).encode()
        r = await harness.client.request(
            route.method, route.path, content=body,
            headers={**ADMIN, "Content-Type": "application/json"})
        assert_problem(r, 400, "invalid_request")
    # raw bytes that are not UTF-8 (a surrogate as CESU-8) in the same field
    raw = json.dumps(_set(route.body(), where, "@@"), ensure_ascii=False).encode()
    r = await harness.client.request(
        route.method, route.path, content=raw.replace(b"@@", b"\xed\xa0\x80"),
        headers={**ADMIN, "Content-Type": "application/json"})
    assert_problem(r, 400, "invalid_request")


QUERY_ROUTES = {
    "list-campaigns": (f"{A}/campaigns", "q", ""),
    "list-blocks-campaign": (f"{A}/blocklist", "campaign_id", CID),
    "list-blocks-kind": (f"{A}/blocklist", "kind", "ip"),
    "suspicious-since": (f"{A}/campaigns/{CID}/suspicious", "since", ""),
    "suspicious-until": (f"{A}/campaigns/{CID}/suspicious", "until", ""),
    "suspicious-min-votes": (f"{A}/campaigns/{CID}/suspicious", "min_votes", "20"),
    "export-format": (f"{A}/campaigns/{CID}/export", "format", "csv"),
    "audit": (f"{A}/audit", "page", "1"),
    "results": (f"{A}/campaigns/{CID}/results", "by", "region"),
    "invalidations": (f"{A}/campaigns/{CID}/invalidations", "since", ""),
}


@pytest.mark.parametrize("route_name", sorted(QUERY_ROUTES))
async def test_odd_query_values_are_invalid_requests(harness: Harness, route_name: str) -> None:
    await harness.create_campaign()
    path, name, plain_value = QUERY_ROUTES[route_name]
    plain = await harness.client.get(f"{path}?{name}={plain_value}", headers=ADMIN)
    assert plain.status_code == 200, plain.text
    for raw in ODD_URL:
        r = await harness.client.get(f"{path}?{name}={raw}", headers=ADMIN)
        assert_problem(r, 400, "invalid_request")


@pytest.mark.parametrize("name", ["since", "until"])
async def test_calendar_edges_in_suspicious_windows(harness: Harness, name: str) -> None:
    await harness.create_campaign()
    for value in CALENDAR_EDGES:
        r = await harness.client.get(f"{A}/campaigns/{CID}/suspicious",
                                     params={name: value}, headers=ADMIN)
        assert_problem(r, 400, "invalid_request")


PATH_ROUTES = {
    "get-campaign": ("GET", f"{A}/campaigns/{{v}}", None),
    "patch-campaign": ("PATCH", f"{A}/campaigns/{{v}}", {"title": "新标题"}),
    "create-channel": ("POST", f"{A}/campaigns/{{v}}/channels", None),
    "list-channels": ("GET", f"{A}/campaigns/{{v}}/channels", None),
    "rotate-secret": ("POST", f"{A}/campaigns/{CID}/channels/{{v}}/secret", None),
    "results": ("GET", f"{A}/campaigns/{{v}}/results", None),
    "export": ("GET", f"{A}/campaigns/{{v}}/export", None),
    "suspicious": ("GET", f"{A}/campaigns/{{v}}/suspicious", None),
    "list-invalidations": ("GET", f"{A}/campaigns/{{v}}/invalidations", None),
    "invalidate": ("POST", f"{A}/campaigns/{{v}}/invalidations", {"reason": "刷票"}),
    "remove-block": ("DELETE", f"{A}/blocklist/{{v}}", None),
    "public-campaign": ("GET", "/api/v1/campaigns/{v}", None),
    "page": ("GET", "/c/{v}", None),
}


@pytest.mark.parametrize("route_name", sorted(PATH_ROUTES))
async def test_odd_path_values_are_invalid_requests(harness: Harness, route_name: str) -> None:
    await harness.create_campaign()
    method, template, body = PATH_ROUTES[route_name]
    for raw in ODD_URL:
        for value in (raw, f"{CID}{raw}"):
            r = await harness.client.request(
                method, template.format(v=value), json=body, headers=ADMIN)
            assert_problem(r, 400, "invalid_request")


async def test_odd_query_values_on_pages(harness: Harness) -> None:
    await harness.create_campaign()
    for path in ("/", f"/c/{CID}", f"/c/{CID}/c001", f"/embed/{CID}"):
        for raw in ODD_URL:
            r = await harness.client.get(f"{path}?q={raw}")
            assert_problem(r, 400, "invalid_request")
    r = await harness.client.get(f"/c/{CID}?q=%E5%B7%A5%E5%8C%A0")  # 工匠: plain UTF-8 is fine
    assert r.status_code == 200


async def test_a_stored_campaign_at_the_calendars_end_renders(harness: Harness) -> None:
    """Accepted before the edge checked times: the pages must still render, all of them."""
    await harness.create_campaign(title="正常的投票")
    edge = Campaign(
        id="forever", title="永不结束", timezone="Asia/Shanghai",
        opens_at=dt.datetime(2020, 1, 1, tzinfo=dt.UTC),
        closes_at=dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.UTC),
        status="open", show_counts=True, rules=Rules(),
        candidates=[Candidate(id="c001", number=1, name="候选人1")],
    )
    await db.save_campaign(harness.pg, edge)
    # PostgreSQL holds what Python cannot: 9999-12-31 at -14:00 is past year 9999 in UTC
    await harness.pg.execute("UPDATE campaigns SET closes_at = '9999-12-31T23:59:59-14:00',"
                             " opens_at = '0001-01-01T00:00:00+14:00' WHERE id = 'forever'")
    await campaigns.push_snapshot(harness.pg, harness.redis, "forever")
    await harness.app.state.services.registry.refresh(force=True)
    for path in (f"{A}/campaigns", f"{A}/campaigns/forever"):
        r = await harness.client.get(path, headers=ADMIN)
        assert r.status_code == 200, (path, r.text[:300])
    home = await harness.client.get("/")
    assert home.status_code == 200
    assert "正常的投票" in home.text and "永不结束" in home.text
    for path in ("/c/forever", "/c/forever/c001", f"/c/{CID}", "/api/v1/campaigns/forever"):
        r = await harness.client.get(path)
        assert r.status_code == 200, (path, r.text[:300])
    # and such a window is refused from now on, like any time at the calendar's ends
    r = await harness.client.patch(
        f"{A}/campaigns/forever", json={"title": "改个名字"}, headers=ADMIN)
    assert_problem(r, 400, "invalid_request")
    r = await harness.client.patch(
        f"{A}/campaigns/forever",
        json={"closes_at": "2030-01-01T00:00:00+08:00"}, headers=ADMIN)
    assert_problem(r, 400, "invalid_request")  # opens_at is out of range too: says so
    assert "opens_at" in r.json()["detail"]
    r = await harness.client.patch(
        f"{A}/campaigns/forever", headers=ADMIN,
        json={"opens_at": "2020-01-01T00:00:00+08:00", "closes_at": "2030-01-01T00:00:00+08:00"})
    assert r.status_code == 200, r.text
    assert r.json()["closes_at"].startswith("2029-12-31T16:00:00")


async def test_times_just_inside_the_range_work_everywhere(harness: Harness) -> None:
    """The range's own ends: no overflow in the blocklist, invalidations or campaign windows."""
    await harness.create_campaign()
    late, early = "2999-12-31T23:59:59+00:00", "1970-01-01T00:00:00+00:00"
    r = await harness.client.post(f"{A}/blocklist", headers=ADMIN, json={
        "kind": "ip", "value": "198.51.100.7", "reason": "刷票", "expires_at": late})
    assert r.status_code == 201, r.text
    r = await harness.client.post(f"{A}/campaigns/{CID}/invalidations", headers=ADMIN, json={
        "reason": "刷票", "ip": "198.51.100.0/24", "since": early, "until": late})
    assert r.status_code == 201, r.text
    r = await harness.client.post(f"{A}/campaigns", headers=ADMIN, json=campaign_payload(
        cid="long2026", opens_at=early, closes_at=late, year=2026))  # 1970 is no year to name
    assert r.status_code == 201, r.text
    for path in ("/", "/c/long2026", "/api/v1/campaigns/long2026"):
        page = await harness.client.get(path)
        assert page.status_code == 200, (path, page.text[:300])
    r = await harness.client.get(f"{A}/campaigns/{CID}/suspicious", headers=ADMIN,
                                 params={"since": early, "until": late})
    assert_problem(r, 400, "invalid_request")  # a window over 62 days, said as such
    assert "62 days" in r.json()["detail"]
