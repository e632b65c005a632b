"""Partner signing secrets rotate with two valid secrets per channel during the rotation."""

from __future__ import annotations

import time
from typing import cast

import httpx
import jwt

from tests.conftest import ADMIN, OPS, Harness
from tests.integration.antifraud_support import CID, NO_LIMITS, VOTES, drain, problem_code
from voting_service.ledger import export
from voting_service.redis import keys
from voting_service.vote import entry

CHANNELS = f"/api/v1/admin/campaigns/{CID}/channels"


def partner_token(secret: str, user: str, channel: str = "toutiao") -> str:
    claims = {"iss": channel, "sub": user, "aud": CID, "exp": int(time.time()) + 600}
    return jwt.encode(claims, secret, algorithm="HS256")


async def partner_vote(h: Harness, token: str, candidate: str) -> httpx.Response:
    return await h.client.post(VOTES, json={"candidate_id": candidate},
                               headers={"Authorization": f"Bearer {token}"})


async def rotate(h: Harness, **body: int) -> dict[str, str]:
    r = await h.client.post(f"{CHANNELS}/toutiao/secret", json=body, headers=ADMIN)
    assert r.status_code == 200, r.text
    found: dict[str, str] = r.json()
    return found


async def test_both_secrets_verify_during_a_rotation_then_only_the_new(
    harness: Harness,
) -> None:
    h = harness
    await h.create_campaign(rules={**NO_LIMITS, "identity": ["partner"], "votes_per_day": 12})
    r = await h.client.post(CHANNELS, json={"id": "toutiao", "name": "今日头条"}, headers=ADMIN)
    assert r.status_code == 201, r.text
    first = r.json()["secret"]
    assert (await partner_vote(h, partner_token(first, "u1"), "c001")).status_code == 200

    second = (await rotate(h, grace_seconds=3600))["secret"]
    assert second != first
    assert (await partner_vote(h, partner_token(first, "u1"), "c002")).status_code == 200
    assert (await partner_vote(h, partner_token(second, "u1"), "c003")).status_code == 200
    assert "secret" not in str((await h.client.get(CHANNELS, headers=OPS)).json())

    third = (await rotate(h, grace_seconds=0))["secret"]
    r = await partner_vote(h, partner_token(second, "u1"), "c004")
    assert (r.status_code, problem_code(r)) == (401, "voter_required"), "grace over at once"
    r = await partner_vote(h, partner_token(first, "u1"), "c004")
    assert (r.status_code, problem_code(r)) == (401, "voter_required"), "two rotations ago"
    r = await partner_vote(h, partner_token(third, "u1"), "c004")
    assert r.status_code == 200, r.text
    assert r.json()["votes_left_today"] == 12 - 4, "the same partner user, whichever secret"

    r = await h.client.post(f"{CHANNELS}/toutiao/secret", headers=ADMIN)
    assert r.status_code == 200, "the body is optional (a day of grace)"
    r = await h.client.post(f"{CHANNELS}/nope/secret", headers=ADMIN)
    assert (r.status_code, problem_code(r)) == (404, "not_found")
    r = await h.client.post(f"{CHANNELS}/toutiao/secret", headers=OPS)
    assert (r.status_code, problem_code(r)) == (403, "forbidden")
    audit = (await h.client.get("/api/v1/admin/audit", headers=ADMIN)).json()
    assert [a["action"] for a in audit].count("channel.rotate_secret") == 3


async def test_the_ledger_entry_tells_a_signed_channel_from_a_claimed_one(
    harness: Harness,
) -> None:
    h = harness
    await h.create_campaign(rules=NO_LIMITS)
    r = await h.client.post(CHANNELS, json={"id": "toutiao", "name": "今日头条"}, headers=ADMIN)
    assert r.status_code == 201, r.text
    assert (await partner_vote(h, partner_token(r.json()["secret"], "u1"), "c001")).status_code \
        == 200
    token = await h.voter()
    assert (await h.vote(token, "c002", channel="toutiao")).status_code == 200
    assert (await h.vote(token, "c003")).status_code == 200
    found = {}
    for shard in range(h.settings.shards):
        raw = await h.redis.xrange(keys.ledger(CID, shard))
        for _, fields in cast(list[tuple[str, dict[str, str]]], raw):
            assert list(fields) == [entry.FIELD], "one packed field per vote"
            e = entry.decode(fields)
            found[e.candidate_id] = (e.channel, e.channel_signed)
    assert found == {"c001": ("toutiao", True), "c002": ("toutiao", False), "c003": ("", False)}
    # … and the ledger, the results and the export keep the two apart
    assert await drain(h) == 3
    rows = await h.pg.fetch("SELECT candidate_id, channel, channel_signed FROM votes")
    assert {(r["candidate_id"], r["channel"], r["channel_signed"]) for r in rows} == {
        ("c001", "toutiao", True), ("c002", "toutiao", False), ("c003", "", False)}
    r = await h.client.get(f"/api/v1/admin/campaigns/{CID}/results", headers=OPS)
    breakdowns = r.json()["breakdowns"]
    assert breakdowns["channel"] == {"direct": 1, "toutiao": 2}
    assert breakdowns["channel_attribution"] == {"toutiao": {"signed": 1, "claimed": 1}}
    results = await export.collect(h.pg, CID)
    assert results is not None
    assert {(g.key, g.votes, g.signed, g.claimed) for g in results.by_channel} == {
        ("direct", 1, 0, 0), ("toutiao", 2, 1, 1)}
