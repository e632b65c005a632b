"""The pure-ASGI vote route: the same contract as the rest of the API at its edges (body
limit, credentials from the cookie, problem bodies, security headers, 405), one outcome per
request; and ``/live``: one shared frame per campaign, sent only when it changed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator

import jwt

from tests.conftest import ADMIN, Harness
from voting_service.vote.outcomes import Outcome
from voting_service.web.api.live import KEEP_ALIVE, LiveTallies

VOTES = "/api/v1/campaigns/t2026/votes"


async def test_edges_of_the_vote_route(harness: Harness) -> None:
    heard: list[Outcome] = []
    harness.app.state.services.outcomes.subscribe(heard.append)
    await harness.create_campaign()
    token = await harness.voter()
    harness.client.cookies.clear()  # the voter route set it: first, no credential at all

    r = await harness.client.post(VOTES, content=b'{"candidate_id": "c001", "x": "' + b"a" * 3000
                                  + b'"}', headers={"X-Voter-Token": token})
    assert r.status_code == 413 and r.json()["code"] == "invalid_request"
    r = await harness.client.post(VOTES, content=b"{not json", headers={"X-Voter-Token": token})
    assert r.status_code == 400 and r.headers["content-type"] == "application/problem+json"
    assert r.json()["instance"] == VOTES
    r = await harness.client.post(VOTES, json={"candidate_id": "c001"})
    assert r.status_code == 401 and r.json()["code"] == "voter_required"
    r = await harness.client.post(VOTES, json={"candidate_id": "c001"},
                                  headers={"Authorization": "Basic abc"})
    assert r.status_code == 401

    harness.client.cookies.set("vs_voter_t2026", token)
    r = await harness.client.post(VOTES, json={"candidate_id": "c001"})
    harness.client.cookies.clear()
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"
    assert "default-src 'none'" in r.headers["content-security-policy"]
    assert r.headers["ratelimit"].startswith('"daily";r=4;')
    assert r.json()["votes_left_today"] == 4

    r = await harness.client.post(VOTES, json={"candidate_id": "c002"},
                                  headers={"X-Voter-Token": token, "Sec-Fetch-Site": "cross-site"})
    assert r.status_code == 403 and r.json()["code"] == "forbidden"
    r = await harness.client.get(VOTES)
    assert r.status_code == 405 and r.json()["code"] == "method_not_allowed"
    r = await harness.client.post("/api/v1/campaigns/t2026/x/votes", json={})
    assert r.status_code == 404

    assert [o.outcome for o in heard] == [
        "invalid_request", "invalid_request", "voter_required", "voter_required", "accepted",
    ], "one note per vote request; refused cross-site and unrouted requests are no votes"


async def test_partner_votes_use_the_cached_check_and_follow_a_rotation(
    harness: Harness,
) -> None:
    await harness.create_campaign()
    r = await harness.client.post("/api/v1/admin/campaigns/t2026/channels", headers=ADMIN,
                                  json={"id": "xhby", "name": "新华报业"})
    assert r.status_code == 201, r.text
    first = r.json()["secret"]
    claims = {"iss": "xhby", "aud": "t2026", "sub": "u1"}
    partner = jwt.encode(claims | {"exp": int(time.time()) + 600}, first, algorithm="HS256")
    bearer = {"Authorization": f"Bearer {partner}"}
    assert (await harness.client.post(VOTES, json={"candidate_id": "c001"},
                                      headers=bearer)).status_code == 200
    r = await harness.client.post("/api/v1/admin/campaigns/t2026/channels/xhby/secret",
                                  headers=ADMIN, json={"grace_seconds": 0})
    assert r.status_code == 200, r.text
    await harness.app.state.services.registry.refresh(force=True)
    r = await harness.client.post(VOTES, json={"candidate_id": "c002"}, headers=bearer)
    assert r.status_code == 401, "a remembered token dies with its secret"


async def test_live_feed_shares_one_frame_and_sends_it_only_when_changed(
    harness: Harness,
) -> None:
    await harness.create_campaign()
    feeds: LiveTallies = harness.app.state.live
    feeds.period = 0.05
    one, two = feeds.events("t2026"), feeds.events("t2026")
    first_a, first_b = await anext(one), await anext(two)
    assert first_a.startswith(b"event: tallies\ndata: ")
    assert first_a is first_b, "the same bytes to every watcher"
    assert feeds.watchers("t2026") == 2
    assert await anext(one) == KEEP_ALIVE, "nothing changed for a while: a comment"
    token = await harness.voter()
    assert (await harness.vote(token, "c003")).status_code == 200
    for _ in range(100):
        frame = await anext(one)
        if frame != KEEP_ALIVE:
            break
    assert b'"candidate_id":"c003","votes":1' in frame
    for stream in (one, two):
        assert isinstance(stream, AsyncGenerator)
        await stream.aclose()
    assert feeds.watchers("t2026") == 0
    await asyncio.sleep(0.15)
    assert "t2026" not in feeds._feeds, "the feed stops with its last watcher"
