"""One client, one identity: a phone number in any writing, an IPv4 client behind any socket.

Numbers typed with other scripts' digits are one canonical number or a 400, never a second
identity or a 500; IPv4-mapped IPv6 addresses are their IPv4 address for limits, blocklist
and ledger.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import re
import time
from collections.abc import AsyncIterator

import asyncpg
import pytest

from tests.conftest import ADMIN, Backend, Harness, client_for, drain
from tests.integration.antifraud_support import (
    CID,
    NO_LIMITS,
    clients,
    issued,
    problem_code,
    redis_totals,
    relaxed_settings,
    vote,
    voter_id,
)
from voting_service.app import create_app
from voting_service.fraud import challenge
from voting_service.redis import store
from voting_service.settings import Settings
from voting_service.vote import identity

START, VERIFY = "/api/v1/auth/sms/start", "/api/v1/auth/sms/verify"
CODE = re.compile(r"\(code ([0-9]{6})\)")
SMS_ONLY = {**NO_LIMITS, "identity": ["sms"]}
FULL_WIDTH = str.maketrans("0123456789", "０１２３４５６７８９")
ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")


@pytest.fixture
def settings(backend: Backend, pg_url: str) -> Settings:
    return relaxed_settings(backend, pg_url)


# --- phone numbers and codes -----------------------------------------------------------


async def test_one_handset_written_four_ways_is_one_sms_identity(
    harness: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    await harness.create_campaign(rules=SMS_ONLY)
    plain = "13800138000"
    r = await harness.client.post(START, json={"phone": plain, "campaign_id": CID})
    assert r.status_code == 202, r.text
    [code] = CODE.findall(capsys.readouterr().out)
    # the same number in full-width, mixed, with a full-width +86: the resend limit holds
    for written in (plain.translate(FULL_WIDTH), "１３８0013８000", "＋８６ 138 0013 8000"):
        r = await harness.client.post(START, json={"phone": written, "campaign_id": CID})
        assert (r.status_code, problem_code(r)) == (429, "rate_limited"), written
    assert CODE.findall(capsys.readouterr().out) == [], "one code sent, not four"
    # a code typed in full-width for the number typed in full-width signs in the same voter
    r = await harness.client.post(VERIFY, json={
        "phone": plain.translate(FULL_WIDTH), "code": code.translate(FULL_WIDTH),
        "campaign_id": CID})
    assert r.status_code == 200, r.text
    token = r.json()["token"]
    assert voter_id(harness, token) == identity.voter_id(
        str(harness.settings.pepper), "sms", plain)
    assert (await vote(harness.client, token, "c001")).status_code == 200


async def test_digits_of_other_scripts_are_refused_as_invalid_requests(
    harness: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    await harness.create_campaign(rules=SMS_ONLY)
    for phone in ("13800138000".translate(ARABIC_INDIC), "१३८००१३८०००", "1380013800٠"):
        r = await harness.client.post(START, json={"phone": phone, "campaign_id": CID})
        assert (r.status_code, problem_code(r)) == (400, "invalid_request"), phone
    assert CODE.findall(capsys.readouterr().out) == []
    r = await harness.client.post(START, json={"phone": "13800138000", "campaign_id": CID})
    assert r.status_code == 202
    [code] = CODE.findall(capsys.readouterr().out)
    r = await harness.client.post(VERIFY, json={
        "phone": "13800138000", "code": code.translate(ARABIC_INDIC), "campaign_id": CID})
    assert (r.status_code, problem_code(r)) == (400, "invalid_request")
    r = await harness.client.post(VERIFY, json={
        "phone": "13800138000", "code": code, "campaign_id": CID})
    assert r.status_code == 200, "refusing the foreign digits used none of the code's tries"


async def test_numbers_in_paths_and_queries_are_ascii_or_a_400(harness: Harness) -> None:
    await harness.create_campaign(rules=NO_LIMITS)
    for raw in ("²", "１２", "١٢"):  # "²".isdigit() is True and int("²") raises
        r = await harness.client.delete(f"/api/v1/admin/blocklist/{raw}", headers=ADMIN)
        assert (r.status_code, problem_code(r)) == (400, "invalid_request"), raw
        r = await harness.client.get(
            f"/api/v1/admin/campaigns/{CID}/suspicious",
            params={"min_votes": raw}, headers=ADMIN)
        assert (r.status_code, problem_code(r)) == (400, "invalid_request"), raw
    r = await harness.client.delete("/api/v1/admin/blocklist/abc", headers=ADMIN)
    assert (r.status_code, problem_code(r)) == (404, "not_found")
    # a candidate number searched in full-width still finds it; "²" is text, not a crash
    r = await harness.client.get(f"/c/{CID}", params={"q": "²"})
    assert r.status_code == 200
    r = await harness.client.get(f"/api/v1/campaigns/{CID}/candidates", params={"q": "１２"})
    assert [c["id"] for c in r.json()["candidates"]] == ["c012"]


async def test_a_proof_with_foreign_digits_in_its_salt_is_a_403_not_a_500(
    harness: Harness,
) -> None:
    await harness.create_campaign(rules={**NO_LIMITS, "challenge": "on",
                                         "challenge_max_number": 100})
    token = issued(harness)
    tag = challenge.voter_tag(voter_id(harness, token))
    for expires, level in (("²", "0"), (str(int(time.time()) + 60), "²"),
                           ("١٧٠٠٠٠٠٠٠٠", "0")):
        salt = f"0123456789ab?expires={expires}&c={CID}&v={tag}&l={level}"
        payload = {"algorithm": "SHA-256", "challenge": "00" * 32, "number": 1,
                   "salt": salt, "signature": "00" * 32}
        proof = base64.b64encode(json.dumps(payload).encode()).decode()
        r = await vote(harness.client, token, "c001", proof=proof)
        assert (r.status_code, problem_code(r)) == (403, "challenge_failed"), salt
    assert await redis_totals(harness) == {}


# --- IPv4-mapped addresses -------------------------------------------------------------


async def test_a_mapped_and_a_plain_ipv4_peer_share_one_allowance(harness: Harness) -> None:
    await harness.create_campaign(rules={**NO_LIMITS, "ip_per_day": 2})
    async with clients(harness, ["::ffff:198.51.100.5", "198.51.100.5"]) as (mapped, plain):
        assert (await vote(mapped, issued(harness), "c001")).status_code == 200
        assert (await vote(plain, issued(harness), "c001")).status_code == 200
        r = await vote(mapped, issued(harness), "c001")
        assert (r.status_code, problem_code(r)) == (429, "rate_limited")
    # and two IPv4 clients of a dual-stack socket are two addresses, not one ::/64 bucket
    async with clients(harness, ["::ffff:192.0.2.1", "::ffff:192.0.2.2"]) as (a, b):
        assert (await vote(a, issued(harness), "c002")).status_code == 200
        assert (await vote(a, issued(harness), "c002")).status_code == 200
        assert (await vote(b, issued(harness), "c002")).status_code == 200
    await drain(harness)
    ips = sorted(str(r["ip"]) for r in await harness.pg.fetch("SELECT ip FROM votes"))
    assert ips == ["192.0.2.1", "192.0.2.1", "192.0.2.2", "198.51.100.5", "198.51.100.5"]


async def test_a_blocked_ipv4_network_blocks_its_mapped_addresses(harness: Harness) -> None:
    await harness.create_campaign(rules=NO_LIMITS)
    r = await harness.client.post("/api/v1/admin/blocklist", headers=ADMIN, json={
        "kind": "ip", "value": "::ffff:198.51.100.0/120", "reason": "刷票"})
    assert r.status_code == 201, r.text
    assert r.json()["value"] == "198.51.100.0/24"
    async with clients(harness, ["::ffff:198.51.100.9", "198.51.100.10"]) as farm:
        for client in farm:
            r = await vote(client, issued(harness), "c001")
            assert (r.status_code, problem_code(r)) == (403, "blocked")
    assert await redis_totals(harness) == {}


@pytest.fixture
async def behind_proxy(
    backend: Backend, pg_url: str, redis: store.AnyRedis, pg: asyncpg.Connection
) -> AsyncIterator[Harness]:
    """The app behind a trusted IPv4 proxy that reaches it over a dual-stack socket."""
    settings = relaxed_settings(
        backend, pg_url, trusted_proxies=(ipaddress.ip_network("203.0.113.0/24"),))
    app = create_app(settings)
    async with app.router.lifespan_context(app), \
            client_for(app, ip="::ffff:203.0.113.7") as client:
        yield Harness(app, client, settings, redis, pg)


async def test_a_mapped_forwarded_for_from_a_trusted_proxy_is_the_ipv4_client(
    behind_proxy: Harness,
) -> None:
    h = behind_proxy
    await h.create_campaign(rules={**NO_LIMITS, "ip_per_day": 1})
    for forwarded in ("::ffff:198.51.100.1", "198.51.100.1"):
        r = await h.client.post(f"/api/v1/campaigns/{CID}/votes", json={"candidate_id": "c001"},
                                headers={"X-Voter-Token": issued(h),
                                         "X-Forwarded-For": forwarded})
        assert r.status_code == (200 if forwarded.startswith("::") else 429), r.text
    await drain(h)
    assert [str(r["ip"]) for r in await h.pg.fetch("SELECT ip FROM votes")] == ["198.51.100.1"]
