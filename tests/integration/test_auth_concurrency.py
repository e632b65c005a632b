"""Failed-credential throttles under concurrency (issue 23 §4), over real sockets: 300
wrong sign-ins or bearer tokens fired at once check exactly as many credentials as the
limit allows, on a single Redis node and on a cluster. The checks are counted twice, by
the ``voting_auth_checks`` metric and by the audit rows of the refusals."""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
from collections import Counter
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
from uvicorn.config import Config
from uvicorn.server import ServerState

from tests.conftest import ADMIN_TOKEN, OPS_TOKEN, Harness, client_for
from tests.staff_support import PASSWORD, make_account, next_code
from voting_service.app import create_app
from voting_service.redis import store
from voting_service.settings import Settings
from voting_service.web import metrics

FIRED = 300


@dataclasses.dataclass
class Served:
    harness: Harness
    url: str


@pytest.fixture
async def served(settings: Settings, redis: store.AnyRedis,
                 pg: asyncpg.Connection) -> AsyncIterator[Served]:
    """The app behind uvicorn's protocol on a listening socket; loopback is a trusted proxy,
    so ``X-Forwarded-For`` names the client each request plays."""
    settings = dataclasses.replace(settings, trusted_proxies=(
        ipaddress.ip_network("127.0.0.1/32"),))
    app = create_app(settings)
    async with app.router.lifespan_context(app) as state, client_for(app) as client:
        config = Config(app=app, lifespan="off", proxy_headers=False)
        config.load()
        server_state = ServerState()
        protocol_class = config.http_protocol_class
        server = await asyncio.get_running_loop().create_server(
            lambda: protocol_class(config=config, server_state=server_state,  # type: ignore[call-arg]
                                   app_state=state),
            "127.0.0.1", 0)
        try:
            port = server.sockets[0].getsockname()[1]
            yield Served(Harness(app, client, settings, redis, pg), f"http://127.0.0.1:{port}")
        finally:
            server.close()
            for task in list(server_state.tasks):
                await task


def checks(kind: str) -> float:
    return metrics.REGISTRY.get_sample_value("voting_auth_checks_total", {"kind": kind}) or 0.0


async def fire(url: str, requests: list[tuple[str, str, dict[str, str], dict[str, str]]]
               ) -> list[httpx.Response]:
    """Every request at once, each on a connection of its own."""
    limits = httpx.Limits(max_connections=len(requests), max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
        return list(await asyncio.gather(*(
            client.request(method, path, data=data or None, headers=headers)
            for method, path, data, headers in requests)))


async def failed_rows(h: Harness, action: str) -> int:
    n: int = await h.pg.fetchval("SELECT count(*) FROM audit_log WHERE action = $1", action)
    return n


def statuses(answers: list[httpx.Response]) -> Counter[int]:
    return Counter(r.status_code for r in answers)


async def test_wrong_passwords_at_once_from_one_address_check_exactly_the_limit(
    served: Served
) -> None:
    h = served.harness
    secret = await make_account(h.pg, "target.admin")
    limit = h.settings.auth_per_address
    before = checks("password")
    answers = await fire(served.url, [
        ("POST", "/ops/login", {"name": "target.admin", "password": f"guess-{i:04d}-xxxxx"},
         {"X-Forwarded-For": "198.51.100.7"}) for i in range(FIRED)])
    assert statuses(answers) == {401: limit, 429: FIRED - limit}
    assert checks("password") - before == limit
    assert await failed_rows(h, "console.sign_in_failed") == limit
    assert all(int(r.headers["retry-after"]) > 0 for r in answers if r.status_code == 429)
    # the account is not locked by one address: the right password from elsewhere works
    async with httpx.AsyncClient(base_url=served.url) as person:
        r = await person.post("/ops/login", data={"name": "target.admin", "password": PASSWORD},
                              headers={"X-Forwarded-For": "203.0.113.50"})
        assert r.status_code == 303, r.text
        r = await person.post("/ops/2fa", data={"code": next_code(secret)},
                              headers={"X-Forwarded-For": "203.0.113.50"})
        assert r.status_code == 303 and r.headers["location"] == "/ops"


async def test_wrong_passwords_at_once_from_many_networks_lock_the_account(
    served: Served
) -> None:
    h = served.harness
    secret = await make_account(h.pg, "spread.target")
    limit = h.settings.auth_per_account
    before = checks("password")
    answers = await fire(served.url, [
        ("POST", "/ops/login", {"name": "spread.target", "password": f"guess-{i:04d}-xxxxx"},
         {"X-Forwarded-For": f"10.{i // 250}.{i % 250}.1"}) for i in range(FIRED)])
    assert statuses(answers) == {401: limit, 429: FIRED - limit}
    assert checks("password") - before == limit
    assert await failed_rows(h, "console.sign_in_failed") == limit
    async with httpx.AsyncClient(base_url=served.url) as person:  # right password, locked
        r = await person.post("/ops/login", data={"name": "spread.target", "password": PASSWORD},
                              headers={"X-Forwarded-For": "203.0.113.51"})
        assert r.status_code == 429 and "set-cookie" not in r.headers
    assert secret


async def test_wrong_codes_at_once_after_a_right_password_check_exactly_the_limit(
    served: Served
) -> None:
    """A stolen password: the guesses at the second factor are throttled too."""
    h = served.harness
    await make_account(h.pg, "code.target")
    async with httpx.AsyncClient(base_url=served.url) as thief:
        r = await thief.post("/ops/login", data={"name": "code.target", "password": PASSWORD},
                             headers={"X-Forwarded-For": "198.51.100.8"})
        assert r.status_code == 303
        cookie = r.headers["set-cookie"].split(";")[0]
    limit = h.settings.auth_per_address
    before = checks("totp")
    answers = await fire(served.url, [
        ("POST", "/ops/2fa", {"code": f"{i:06d}"},
         {"X-Forwarded-For": "198.51.100.8", "Cookie": cookie}) for i in range(FIRED)])
    # (a guess can be right by chance: one in 10^6 × 3 steps per try)
    assert statuses(answers)[429] == FIRED - limit
    assert checks("totp") - before == limit


async def test_wrong_bearer_tokens_at_once_check_exactly_the_limit(served: Served) -> None:
    h = served.harness
    limit = h.settings.auth_per_address
    before = checks("bearer")
    answers = await fire(served.url, [
        ("GET", "/api/v1/admin/campaigns", {},
         {"Authorization": f"Bearer wrong-token-{i:06d}-0123456789",
          "X-Forwarded-For": "198.51.100.9"}) for i in range(FIRED)])
    assert statuses(answers) == {401: limit, 429: FIRED - limit}
    assert checks("bearer") - before == limit
    assert await failed_rows(h, "token.refused") == limit
    refused = next(r for r in answers if r.status_code == 429)
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert refused.json()["code"] == "too_many_attempts"
    assert int(refused.headers["retry-after"]) > 0
    # a known token still works from that address (it is not a guess), and nothing else
    # counted meanwhile
    async with httpx.AsyncClient(base_url=served.url) as ci:
        r = await ci.get("/api/v1/admin/campaigns", headers={
            "Authorization": f"Bearer {ADMIN_TOKEN}", "X-Forwarded-For": "198.51.100.9"})
        assert r.status_code == 200
        r = await ci.get("/api/v1/admin/campaigns", headers={
            "Authorization": "Bearer another-wrong-token-0123456789",
            "X-Forwarded-For": "198.51.100.9"})
        assert r.status_code == 429
    assert checks("bearer") - before == limit


async def test_wrong_bearer_tokens_from_one_network_check_the_network_limit(
    served: Served
) -> None:
    """Rotating addresses inside one /24 (or /48) does not buy more guesses."""
    h = served.harness
    per_address, per_network = h.settings.auth_per_address, h.settings.auth_per_network
    before = checks("bearer")
    answers = await fire(served.url, [
        ("GET", "/api/v1/admin/audit", {},
         {"Authorization": f"Bearer wrong-token-{i:06d}-0123456789",
          "X-Forwarded-For": f"2001:db8:7:{i % 200:x}::1"}) for i in range(FIRED)])
    assert statuses(answers) == {401: per_network, 429: FIRED - per_network}
    assert checks("bearer") - before == per_network
    assert per_network > per_address
    async with httpx.AsyncClient(base_url=served.url) as ci:  # another network is unaffected
        r = await ci.get("/api/v1/admin/audit", headers={
            "Authorization": f"Bearer {OPS_TOKEN}", "X-Forwarded-For": "2001:db8:8::1"})
        assert r.status_code == 403  # known token, wrong role: not a failed check
        r = await ci.get("/api/v1/admin/audit", headers={
            "Authorization": "Bearer wrong-token-elsewhere-012345",
            "X-Forwarded-For": "2001:db8:8::1"})
        assert r.status_code == 401
