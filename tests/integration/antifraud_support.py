"""Helpers shared by the anti-fraud tests (``test_antifraud_*.py``)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx

from tests.conftest import (
    ADMIN,
    Backend,
    Harness,
    client_for,
    make_settings,
    mint,
    redis_tallies,
)
from tests.conftest import drain as drain  # re-exported: the anti-fraud tests import it here
from voting_service.fraud import challenge
from voting_service.ledger import reconcile
from voting_service.services import Services
from voting_service.settings import Settings

CID = "t2026"
VOTES = f"/api/v1/campaigns/{CID}/votes"
CHALLENGE = f"/api/v1/campaigns/{CID}/challenge"
NO_LIMITS = {"ip_per_minute": 0, "ip_per_day": 0, "net_per_minute": 0, "net_per_day": 0}


def svc(h: Harness) -> Services:
    found: Services = h.app.state.services
    return found


def voter_id(h: Harness, token: str, cid: str = CID) -> str:
    return svc(h).tokens.credential(token, cid)[0]


def problem_code(r: httpx.Response) -> str:
    assert r.headers["content-type"].startswith("application/problem+json"), r.text
    code: str = r.json()["code"]
    return code


async def new_voter(client: httpx.AsyncClient, cid: str = CID) -> str:
    r = await mint(client, cid)
    assert r.status_code == 201, r.text
    token: str = r.json()["token"]
    return token


def issued(h: Harness, cid: str = CID) -> str:
    """A voter token signed as ``POST /voter`` signs it, but minted without the address's
    minting limits: for tests of the vote limits, where one address casts many votes."""
    return svc(h).tokens.issue(cid)


async def vote(client: httpx.AsyncClient, token: str, candidate: str, cid: str = CID,
               **body: Any) -> httpx.Response:
    return await client.post(f"/api/v1/campaigns/{cid}/votes",
                             json={"candidate_id": candidate, **body},
                             headers={"X-Voter-Token": token})


async def proof_for(client: httpx.AsyncClient, token: str, cid: str = CID) -> str:
    r = await client.get(f"/api/v1/campaigns/{cid}/challenge", headers={"X-Voter-Token": token})
    assert r.status_code == 200, r.text
    return challenge.solve(r.json())


@contextlib.asynccontextmanager
async def clients(h: Harness, ips: list[str]) -> AsyncIterator[list[httpx.AsyncClient]]:
    """One client per peer address (in process: no traffic leaves the test)."""
    async with contextlib.AsyncExitStack() as stack:
        yield [await stack.enter_async_context(client_for(h.app, ip=ip)) for ip in ips]


async def redis_totals(h: Harness, cid: str = CID) -> dict[str, int]:
    return {c: n for c, n in (await redis_tallies(h, cid)).items() if n}


async def no_drift(h: Harness, cid: str = CID) -> None:
    drift = await reconcile.reconcile(h.redis, h.pg, cid, h.settings.shards)
    assert drift == [], drift


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 10.0) -> bool:
    """Poll ``check`` until it holds; False if it never did within ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        if await check():
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)


async def public_tallies(client: httpx.AsyncClient, cid: str = CID) -> dict[str, int]:
    r = await client.get(f"/api/v1/campaigns/{cid}/tallies")
    assert r.status_code == 200, r.text
    return {c["candidate_id"]: c["votes"] for c in r.json()["candidates"] if c["votes"]}


async def admin_post(h: Harness, path: str, body: dict[str, Any]) -> httpx.Response:
    return await h.client.post(path, json=body, headers=ADMIN)


def relaxed_settings(backend: Backend, pg_url: str, **overrides: Any) -> Settings:
    """A generous Redis deadline: 200 requests at once saturate one in-process worker on two
    cores, and these tests count exactly rather than time the 1 s answer."""
    return make_settings(backend, pg_url, redis_timeout=30.0, **overrides)
