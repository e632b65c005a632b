"""A ``draft`` campaign is unpublished: every public route answers ``404 campaign_not_found``
(the pages their 404 page), exactly as for an id that does not exist; admin routes see it."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from starlette.routing import BaseRoute, Route

from tests.conftest import ADMIN, OPS, Harness
from tests.integration.antifraud_support import NO_LIMITS, issued, problem_code

DRAFT, OPEN = "d2027", "t2026"
EVERY_MODE = {**NO_LIMITS, "identity": ["anonymous", "sms", "partner"]}

# (method, path, JSON body): every public route that names a campaign
API: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "/api/v1/campaigns/{cid}", None),
    ("GET", "/api/v1/campaigns/{cid}/candidates", None),
    ("GET", "/api/v1/campaigns/{cid}/candidates/c001", None),
    ("GET", "/api/v1/campaigns/{cid}/tallies", None),
    ("GET", "/api/v1/campaigns/{cid}/live", None),
    ("POST", "/api/v1/campaigns/{cid}/voter", None),
    ("GET", "/api/v1/campaigns/{cid}/challenge", None),
    ("POST", "/api/v1/campaigns/{cid}/votes", {"candidate_id": "c001"}),
    ("POST", "/api/v1/auth/sms/start", {"phone": "13800138000", "campaign_id": "{cid}"}),
    ("POST", "/api/v1/auth/sms/verify",
     {"phone": "13800138000", "code": "123456", "campaign_id": "{cid}"}),
]
PAGES = ["/c/{cid}", "/c/{cid}/c001", "/c/{cid}/results", "/embed/{cid}"]
BODY_ROUTES = {"/api/v1/auth/sms/start", "/api/v1/auth/sms/verify"}
"""Public routes that name their campaign in the body rather than the path."""


def _templates(routes: list[BaseRoute]) -> set[str]:
    return {r.path for r in routes if isinstance(r, Route)}


async def _drafted(h: Harness) -> None:
    await h.create_campaign(id=DRAFT, status="draft", rules=EVERY_MODE)
    await h.create_campaign(id=OPEN, rules=EVERY_MODE)


def _fill(body: dict[str, Any] | None, cid: str) -> dict[str, Any] | None:
    return None if body is None else {k: v.replace("{cid}", cid) if isinstance(v, str) else v
                                      for k, v in body.items()}


async def _ask(h: Harness, method: str, path: str, body: dict[str, Any] | None,
               cid: str) -> httpx.Response:
    headers = {"X-Voter-Token": issued(h, cid)}  # a token signed for it, as if leaked
    return await h.client.request(method, path.replace("{cid}", cid), json=_fill(body, cid),
                                  headers=headers)


def test_the_table_names_every_public_campaign_route() -> None:
    from voting_service.web.api import public as api_public
    from voting_service.web.api import voter as api_voter
    from voting_service.web.pages import campaigns as pages

    public = _templates([*api_public.routes, *api_voter.routes, *pages.routes])
    naming = {p for p in public if "{cid}" in p} | BODY_ROUTES
    listed = {p for _, p, _ in API} | set(PAGES)
    covered = {p.replace("/c001", "/{candidate}") for p in listed}
    assert naming == covered, "a public route that names a campaign is missing from the table"


@pytest.mark.parametrize(("method", "path", "body"), API, ids=[f"{m} {p}" for m, p, _ in API])
async def test_every_public_api_route_hides_a_draft(
    harness: Harness, method: str, path: str, body: dict[str, Any] | None
) -> None:
    await _drafted(harness)
    r = await _ask(harness, method, path, body, DRAFT)
    assert (r.status_code, problem_code(r)) == (404, "campaign_not_found"), r.text
    assert "候选人1" not in r.text and "测试投票" not in r.text
    missing = await _ask(harness, method, path, body, "nope2027")
    assert (missing.status_code, problem_code(missing)) == (404, "campaign_not_found")
    if not path.endswith("/live"):  # (the open campaign's stream would not end)
        r = await _ask(harness, method, path, body, OPEN)
        assert r.status_code != 404, f"{method} {path} refuses an open campaign too"


@pytest.mark.parametrize("path", PAGES)
async def test_every_page_hides_a_draft(harness: Harness, path: str) -> None:
    await _drafted(harness)
    r = await harness.client.get(path.replace("{cid}", DRAFT))
    assert r.status_code == 404 and r.headers["content-type"].startswith("text/html")
    assert "候选人1" not in r.text and "测试投票" not in r.text
    missing = await harness.client.get(path.replace("{cid}", "nope2027"))
    assert (missing.status_code, missing.text) == (r.status_code, r.text)
    if path.startswith("/c/") and not path.endswith("/results"):  # (results: once published)
        assert (await harness.client.get(path.replace("{cid}", OPEN))).status_code == 200


async def test_draft_candidates_lend_no_names_to_photos_and_no_list_entry(
    harness: Harness,
) -> None:
    await _drafted(harness)
    drawn = await harness.client.get("/static/photos/c001.svg", params={"c": DRAFT})
    unknown = await harness.client.get("/static/photos/c001.svg", params={"c": "nope2027"})
    assert drawn.status_code == 200 and drawn.content == unknown.content
    listed = (await harness.client.get("/api/v1/campaigns")).json()
    assert [c["id"] for c in listed] == [OPEN]
    assert DRAFT not in (await harness.client.get("/")).text


async def test_admin_routes_still_see_a_draft(harness: Harness) -> None:
    await _drafted(harness)
    for path in (f"/api/v1/admin/campaigns/{DRAFT}", f"/api/v1/admin/campaigns/{DRAFT}/channels",
                 f"/api/v1/admin/campaigns/{DRAFT}/suspicious"):
        r = await harness.client.get(path, headers=OPS)
        assert r.status_code == 200, (path, r.text)
    r = await harness.client.patch(f"/api/v1/admin/campaigns/{DRAFT}", json={"status": "open"},
                                   headers=ADMIN)
    assert r.status_code == 200
    assert (await harness.client.get(f"/api/v1/campaigns/{DRAFT}")).status_code == 200
