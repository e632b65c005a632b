"""SMS sign-in end to end: console and HTTP senders, tries, expiry, send limits, privacy."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import asyncpg
import httpx
import pytest

from tests.conftest import ADMIN, Backend, Harness, client_for
from tests.integration.antifraud_support import (
    CID,
    NO_LIMITS,
    clients,
    drain,
    problem_code,
    redis_totals,
    relaxed_settings,
    vote,
)
from voting_service.app import create_app
from voting_service.errors import TooManyCodeChecks, TooManyCodes
from voting_service.fraud import sms
from voting_service.redis import keys, store
from voting_service.settings import Secret, Settings
from voting_service.vote import identity

START, VERIFY = "/api/v1/auth/sms/start", "/api/v1/auth/sms/verify"
PHONE = "13800138000"
SMS_ONLY = {**NO_LIMITS, "identity": ["sms"]}
CODE = re.compile(r"\(code (\d{6})\)")


@pytest.fixture
def settings(backend: Backend, pg_url: str) -> Settings:
    return relaxed_settings(backend, pg_url)


def codes_printed(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return CODE.findall(capsys.readouterr().out)


async def start(client: httpx.AsyncClient, phone: str = PHONE) -> httpx.Response:
    return await client.post(START, json={"phone": phone, "campaign_id": CID})


async def verify(client: httpx.AsyncClient, code: str, phone: str = PHONE) -> httpx.Response:
    return await client.post(VERIFY, json={"phone": phone, "code": code, "campaign_id": CID})


async def all_redis_text(redis: store.AnyRedis) -> str:
    """Every key and value in Redis, as text (to look for a phone number)."""
    if isinstance(redis, store.RedisCluster):
        names = [k async for k in redis.scan_iter(target_nodes=store.RedisCluster.PRIMARIES)]
    else:
        names = [k async for k in redis.scan_iter()]
    parts: list[str] = []
    for name in names:
        kind = await redis.type(name)
        if kind == "string":
            value: Any = await redis.get(name)
        elif kind == "hash":
            value = await redis.hgetall(name)
        elif kind == "stream":
            value = await redis.xrange(name)
        else:
            value = kind
        parts.append(f"{name} {value}")
    return "\n".join(parts)


async def all_pg_text(pg: asyncpg.Connection) -> str:
    tables = [r["tablename"] for r in await pg.fetch(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
    return "\n".join([str(await pg.fetch(f'SELECT * FROM "{t}"')) for t in tables])


async def test_sms_sign_in_end_to_end_with_the_console_sender(
    harness: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    await harness.create_campaign(rules=SMS_ONLY)
    r = await start(harness.client, "+86 138-0013-8000")
    assert r.status_code == 202, r.text
    assert r.json() == {"sent": True, "expires_in": 300, "resend_after": 60}
    out = capsys.readouterr().out
    assert "138****8000" in out and PHONE not in out
    [code] = CODE.findall(out)

    r = await verify(harness.client, code, "0086 13800138000")
    assert r.status_code == 200, r.text
    token = r.json()["token"]
    assert r.cookies.get(f"vs_voter_{CID}") == token
    r = await vote(harness.client, token, "c001")
    assert r.status_code == 200, r.text
    assert r.json()["votes_left_today"] == 4
    r = await verify(harness.client, code)
    assert (r.status_code, problem_code(r)) == (400, "invalid_code"), "a code works once"

    # the voter is the phone: a second sign-in is the same voter, with the same quota
    r = await start(harness.client)
    assert (r.status_code, problem_code(r)) == (429, "rate_limited"), "resend waits a minute"
    expected = identity.voter_id(str(harness.settings.pepper), "sms", PHONE)
    await drain(harness)
    assert [r["voter_id"] for r in await harness.pg.fetch("SELECT voter_id FROM votes")] == [
        expected]
    # an anonymous token is no credential in an SMS-only campaign
    r = await harness.client.post(f"/api/v1/campaigns/{CID}/voter")
    assert r.status_code == 403
    # and the number itself is stored nowhere
    assert PHONE not in await all_redis_text(harness.redis)
    assert PHONE not in await all_pg_text(harness.pg)


async def test_five_wrong_codes_burn_the_code(
    harness: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    await harness.create_campaign(rules=SMS_ONLY)
    assert (await start(harness.client)).status_code == 202
    [code] = codes_printed(capsys)
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    left = []
    for _ in range(5):
        r = await verify(harness.client, wrong)
        assert (r.status_code, problem_code(r)) == (400, "invalid_code")
        left.append(r.json()["tries_left"])
    assert left == [4, 3, 2, 1, 0]
    r = await verify(harness.client, code)
    assert (r.status_code, problem_code(r)) == (400, "invalid_code")
    assert "request a new one" in r.json()["detail"]


async def test_200_concurrent_guesses_get_exactly_five_tries(
    harness: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    await harness.create_campaign(rules=SMS_ONLY)
    assert (await start(harness.client)).status_code == 202
    [code] = codes_printed(capsys)
    guesses = [f"{(int(code) + 1 + i) % 10**6:06d}" for i in range(200)]
    # from 200 addresses (one address may check only so many codes a minute)
    async with clients(harness, [f"198.51.{i // 100}.{i % 100 + 1}" for i in range(200)]) as farm:
        responses = await asyncio.gather(*(verify(c, g) for c, g in zip(farm, guesses,
                                                                         strict=True)))
    assert {(r.status_code, problem_code(r)) for r in responses} == {(400, "invalid_code")}
    counted = sorted(r.json()["tries_left"] for r in responses
                     if "request a new one" not in r.json()["detail"])
    assert counted == [0, 1, 2, 3, 4]
    r = await verify(harness.client, code)
    assert (r.status_code, problem_code(r)) == (400, "invalid_code")


async def test_codes_expire_after_five_minutes_and_are_kept_hashed(
    harness: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    await harness.create_campaign(rules=SMS_ONLY)
    assert (await start(harness.client)).status_code == 202
    [code] = codes_printed(capsys)
    pid = sms.phone_key_id(str(harness.settings.pepper), PHONE)
    stored = await harness.redis.get(keys.sms_code(pid))
    assert stored is not None and code not in stored
    assert 290 <= await harness.redis.ttl(keys.sms_code(pid)) <= 300
    r = await verify(harness.client, "000000" if code != "000000" else "111111")
    assert r.json()["tries_left"] == 4
    assert 290 <= await harness.redis.ttl(keys.sms_code(pid)) <= 300, "a try keeps the expiry"


async def test_sends_are_limited_per_phone_and_per_address(
    harness: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    await harness.create_campaign(rules=SMS_ONLY)
    responses = await asyncio.gather(*(start(harness.client) for _ in range(200)))
    assert [r.status_code for r in responses].count(202) == 1
    for r in responses:
        if r.status_code != 202:
            assert (r.status_code, problem_code(r)) == (429, "rate_limited")
            assert 1 <= int(r.headers["retry-after"]) <= 60
    assert len(codes_printed(capsys)) == 1

    phones = [f"139{i:08d}" for i in range(200)]
    async with clients(harness, ["198.51.100.20"]) as (client,):
        responses = await asyncio.gather(*(start(client, p) for p in phones))
    assert [r.status_code for r in responses].count(202) == sms.ADDRESS_PER_MINUTE
    assert len(codes_printed(capsys)) == sms.ADDRESS_PER_MINUTE
    # a forged X-Forwarded-For from an untrusted peer is no way around it
    async with clients(harness, ["198.51.100.20"]) as (client,):
        r = await client.post(START, json={"phone": "13700000000", "campaign_id": CID},
                              headers={"X-Forwarded-For": "192.0.2.1"})
    assert (r.status_code, problem_code(r)) == (429, "rate_limited")


async def test_bad_numbers_and_campaigns_are_refused(harness: Harness) -> None:
    await harness.create_campaign(rules=SMS_ONLY)
    await harness.create_campaign(id="anon", rules=NO_LIMITS)
    for phone in ("12345", "+1 650 555 0100", "10012345678", "1380013800a", "138001380001"):
        r = await start(harness.client, phone)
        assert (r.status_code, problem_code(r)) == (400, "invalid_request"), phone
    r = await harness.client.post(START, json={"phone": PHONE, "campaign_id": "anon"})
    assert (r.status_code, problem_code(r)) == (403, "forbidden")
    r = await harness.client.post(START, json={"phone": PHONE, "campaign_id": "nope"})
    assert (r.status_code, problem_code(r)) == (404, "campaign_not_found")
    r = await verify(harness.client, "12ab56")
    assert (r.status_code, problem_code(r)) == (400, "invalid_code")


# --- the HTTP sender against a gateway on this machine -----------------------------------


class Gateway:
    def __init__(self, status: int) -> None:
        self.status = status
        self.received: list[tuple[dict[str, Any], str]] = []


@contextlib.contextmanager
def gateway(status: int = 200) -> Iterator[tuple[Gateway, str]]:
    state = Gateway(status)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.received.append((json.loads(body), self.headers.get("Authorization", "")))
            self.send_response(state.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{server.server_address[1]}/send"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.asynccontextmanager
async def app_with_gateway(
    harness: Harness, backend: Backend, pg_url: str, url: str
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(relaxed_settings(
        backend, pg_url, sms_sender="http", sms_http_url=url,
        sms_http_token=Secret("gateway-token-0123456789")))
    async with app.router.lifespan_context(app), client_for(app, ip="192.0.2.77") as client:
        yield client


async def test_the_http_sender_posts_the_code_to_the_gateway(
    harness: Harness, backend: Backend, pg_url: str
) -> None:
    await harness.create_campaign(rules=SMS_ONLY)
    with gateway() as (state, url):
        async with app_with_gateway(harness, backend, pg_url, url) as client:
            r = await start(client)
            assert r.status_code == 202, r.text
            [(body, auth)] = state.received
            assert auth == "Bearer gateway-token-0123456789"
            assert body["phone"] == PHONE and body["ttl_seconds"] == 300
            assert re.fullmatch(r"\d{6}", body["code"]) and body["code"] in body["text"]
            r = await verify(client, body["code"])
            assert r.status_code == 200, r.text
            assert (await vote(client, r.json()["token"], "c002")).status_code == 200
    assert await redis_totals(harness) == {"c002": 1}


async def test_a_failing_gateway_is_a_503_and_leaves_no_code(
    harness: Harness, backend: Backend, pg_url: str
) -> None:
    await harness.create_campaign(rules=SMS_ONLY)
    with gateway(status=500) as (state, url):
        async with app_with_gateway(harness, backend, pg_url, url) as client:
            r = await start(client)
            assert (r.status_code, problem_code(r)) == (503, "unavailable")
            [(body, _)] = state.received
            r = await verify(client, body["code"])
            assert (r.status_code, problem_code(r)) == (400, "invalid_code")


# --- limits across campaigns, on code checks, in their own words --------------------------


async def test_an_address_gets_its_send_allowance_once_across_campaigns(
    harness: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    for cid in (CID, "s2", "s3"):
        await harness.create_campaign(id=cid, rules=SMS_ONLY)
    async with clients(harness, ["198.51.100.20"]) as (client,):
        responses = await asyncio.gather(*(
            client.post(START, json={"phone": f"139{i:08d}", "campaign_id": cid})
            for i in range(15) for cid in (CID, "s2", "s3")))
    assert [r.status_code for r in responses].count(202) == sms.ADDRESS_PER_MINUTE
    assert len(codes_printed(capsys)) == sms.ADDRESS_PER_MINUTE
    for r in responses:
        if r.status_code != 202:
            assert (r.status_code, problem_code(r)) == (429, "rate_limited")
            assert r.json()["title"] == TooManyCodes.title
            assert "votes" not in r.json()["title"]
            assert 1 <= int(r.headers["retry-after"]) <= 60
    # a neighbour of the same /24 has its own address allowance, within the network's
    async with clients(harness, ["198.51.100.21"]) as (neighbour,):
        r = await start(neighbour, "13700000000")
        assert r.status_code == 202, r.text


async def test_code_checks_are_limited_per_address_across_campaigns(
    harness: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    for cid in (CID, "s2"):
        await harness.create_campaign(id=cid, rules=SMS_ONLY)
    async with clients(harness, ["198.51.100.30"]) as (guesser,):
        responses = await asyncio.gather(*(
            guesser.post(VERIFY, json={"phone": f"139{i:08d}", "code": f"{i:06d}",
                                       "campaign_id": (CID, "s2")[i % 2]})
            for i in range(200)))
        checked = [r for r in responses if r.status_code == 400]
        assert len(checked) == sms.CHECKS_ADDRESS_PER_MINUTE
        assert {problem_code(r) for r in checked} == {"invalid_code"}
        for r in responses:
            if r.status_code != 400:
                assert (r.status_code, problem_code(r)) == (429, "rate_limited")
                assert r.json()["title"] == TooManyCodeChecks.title
                assert 1 <= int(r.headers["retry-after"]) <= 60
        # a right code from that address waits too: the limit is the address's, not the code's
        assert (await start(harness.client)).status_code == 202
        [code] = codes_printed(capsys)
        r = await verify(guesser, code)
        assert (r.status_code, problem_code(r)) == (429, "rate_limited")
    r = await verify(harness.client, code)
    assert r.status_code == 200, "the code was not spent by the refused check"


async def test_a_blocked_address_checks_no_codes(harness: Harness) -> None:
    await harness.create_campaign(rules=SMS_ONLY)
    r = await harness.client.post("/api/v1/admin/blocklist", headers=ADMIN, json={
        "kind": "ip", "value": "203.0.113.0/24", "reason": "刷票"})
    assert r.status_code == 201, r.text
    for r in (await start(harness.client), await verify(harness.client, "123456")):
        assert (r.status_code, problem_code(r)) == (403, "blocked")
