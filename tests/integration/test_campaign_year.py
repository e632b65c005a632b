"""The campaign's selection year (评选年度, migration 0032): given or taken from the local
year the vote opens in, checked like every field, stored, kept by a PATCH that moves the
window, given to the campaigns stored before, and named by the 公示 page."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from tests.conftest import ADMIN, Harness, campaign_payload, fresh_database
from tests.integration.test_api import assert_problem
from voting_service.ledger import db

single = pytest.mark.parametrize("backend", ["single"], indirect=True)
"""The year is no matter of Redis: one backend is enough."""

API = "/api/v1/admin/campaigns"
NEW_YEARS_EVE = {"opens_at": "2026-12-31T17:00:00+00:00",  # 01:00 on 1 January in Beijing
                 "closes_at": "2027-03-01T00:00:00+08:00"}


async def stored_year(h: Harness, cid: str) -> Any:
    return await h.pg.fetchval("SELECT year FROM campaigns WHERE id = $1", cid)


@single
async def test_the_year_defaults_to_the_local_year_of_the_opening(harness: Harness) -> None:
    h = harness
    await h.create_campaign(cid="eve", **NEW_YEARS_EVE)
    await h.create_campaign(cid="eve_utc", timezone="UTC", **NEW_YEARS_EVE)
    await h.create_campaign(cid="nulled", year=None, **NEW_YEARS_EVE)
    for cid, year in (("eve", 2027), ("eve_utc", 2026), ("nulled", 2027)):
        r = await h.client.get(f"{API}/{cid}", headers=ADMIN)
        assert r.status_code == 200 and r.json()["year"] == year, (cid, r.text)
        assert await stored_year(h, cid) == year
    listed = (await h.client.get(API, headers=ADMIN)).json()
    assert {x["id"]: x["year"] for x in listed} == {"eve": 2027, "eve_utc": 2026, "nulled": 2027}


@single
async def test_a_named_year_is_stored_published_and_changed_by_patch(harness: Harness) -> None:
    h = harness
    r = await h.client.post(API, json=campaign_payload(cid="gj25", year=2025), headers=ADMIN)
    assert r.status_code == 201 and r.json()["year"] == 2025, r.text
    assert await stored_year(h, "gj25") == 2025
    public = await h.client.get("/api/v1/campaigns/gj25")  # from the workers' snapshot
    assert public.status_code == 200 and public.json()["year"] == 2025, public.text

    # moving the window keeps the year; only naming one changes it
    r = await h.client.patch(f"{API}/gj25", headers=ADMIN,
                             json={"closes_at": "2031-01-01T00:00:00+08:00"})
    assert r.status_code == 200 and r.json()["year"] == 2025, r.text
    r = await h.client.patch(f"{API}/gj25", json={"year": 2026}, headers=ADMIN)
    assert r.status_code == 200 and r.json()["year"] == 2026, r.text
    assert await stored_year(h, "gj25") == 2026
    assert (await h.client.get("/api/v1/campaigns/gj25")).json()["year"] == 2026
    audit = (await h.client.get("/api/v1/admin/audit", headers=ADMIN)).json()
    assert (audit[0]["action"], audit[0]["request"]["year"]) == ("campaign.update", 2026)


@single
@pytest.mark.parametrize("year", [1999, 2101, 0, "2026", 2026.5, True])
async def test_a_bad_year_is_a_problem_and_stores_nothing(harness: Harness, year: Any) -> None:
    h = harness
    r = await h.client.post(API, json=campaign_payload(cid="bad", year=year), headers=ADMIN)
    body = assert_problem(r, 400, "invalid_request")
    assert "year" in body["detail"], body
    assert (await h.client.get(API, headers=ADMIN)).json() == []
    await h.create_campaign(cid="good", year=2026)
    r = await h.client.patch(f"{API}/good", json={"year": year}, headers=ADMIN)
    assert_problem(r, 400, "invalid_request")
    assert await stored_year(h, "good") == 2026


@single
async def test_a_derived_year_outside_the_range_is_refused(harness: Harness) -> None:
    r = await harness.client.post(API, headers=ADMIN, json=campaign_payload(
        cid="old", opens_at="1999-07-01T00:00:00+08:00"))
    body = assert_problem(r, 400, "invalid_request")
    assert "year must lie between 2000 and 2100" in body["detail"], body
    assert await stored_year(harness, "old") is None


@single
async def test_the_results_page_names_the_year(harness: Harness) -> None:
    h = harness
    await h.create_campaign(cid="t2026", year=2025, candidates=2)
    r = await h.client.patch(f"{API}/t2026", json={"status": "closed"}, headers=ADMIN)
    assert r.status_code == 200, r.text
    r = await h.client.post(f"{API}/t2026/publication", json={}, headers=ADMIN)
    assert r.status_code == 201, r.text
    page = await h.client.get("/c/t2026/results")
    assert page.status_code == 200
    assert "<h1>2025年度投票结果公示</h1>" in page.text
    assert "<title>2025年度投票结果公示 · 测试投票" in page.text
    english = await h.client.get("/c/t2026/results", params={"lang": "en"})
    assert "<h1>Published results, 2025</h1>" in english.text


# --- migration 0032 on the campaigns stored before it -------------------------------------


@pytest.fixture
async def older(migrated: str) -> AsyncIterator[asyncpg.Connection]:
    """A database as the release before left it (migrations up to 0031)."""
    conn = await asyncpg.connect(await fresh_database(migrated, "campaign_year_test"))
    try:
        await db.migrate(conn, upto=31)
        yield conn
    finally:
        await conn.close()


STORED = [  # id, zone, opens_at
    ("eve", "Asia/Shanghai", "2026-12-31T17:00:00+00:00"),
    ("eve_utc", "UTC", "2026-12-31T17:00:00+00:00"),
    ("berlin", "Europe/Berlin", "2025-12-31T23:30:00+00:00"),
    ("zone_pg_lacks", "Nowhere/Land", "2026-12-31T17:00:00+00:00"),
    ("ancient", "Asia/Shanghai", "0001-01-01T00:00:00+14:00"),
    ("forever", "Asia/Shanghai", "infinity"),
    ("far", "Asia/Shanghai", "2300-01-01T00:00:00+00:00"),
]


async def test_the_migration_gives_stored_campaigns_their_opening_year(
        older: asyncpg.Connection) -> None:
    for cid, zone, opens in STORED:
        await older.execute(
            "INSERT INTO campaigns (id, title, timezone, opens_at, closes_at, status, rules)"
            " VALUES ($1, 'x', $2, $3::text::timestamptz, 'infinity', 'closed', '{}')",
            cid, zone, opens)
    assert await db.migrate(older) == [32]
    years = {r["id"]: r["year"] for r in await older.fetch("SELECT id, year FROM campaigns")}
    assert years == {"eve": 2027, "eve_utc": 2026, "berlin": 2026, "zone_pg_lacks": 2027,
                     "ancient": 2000, "forever": 2100, "far": 2100}
    # a worker of the release before writes campaigns without a year while the next one runs
    await older.execute(
        "INSERT INTO campaigns (id, title, timezone, opens_at, closes_at, status, rules)"
        " VALUES ('by_old_code', 'x', 'Asia/Shanghai', '2027-12-31T16:30:00+00:00',"
        " '2028-03-01T00:00:00+08:00', 'draft', '{}')")
    assert await older.fetchval("SELECT year FROM campaigns WHERE id = 'by_old_code'") == 2028
    stored = await db.load_campaign(older, "by_old_code")
    assert stored is not None and stored.year == 2028
    with pytest.raises(asyncpg.CheckViolationError):
        await older.execute("UPDATE campaigns SET year = 1999 WHERE id = 'eve'")
    with pytest.raises(asyncpg.NotNullViolationError):
        await older.execute("UPDATE campaigns SET year = NULL WHERE id = 'eve'")
    assert await db.migrate(older) == []
