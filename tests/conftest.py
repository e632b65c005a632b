"""Real servers for the tests: PostgreSQL, a single Valkey node and a 3-master cluster.

By default they are the embedded binaries, started once per session in a temp directory.
``DATABASE_URL``, ``REDIS_URL`` and ``REDIS_CLUSTER_URL`` point the tests at servers of
your own instead (their data is wiped between tests).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import asyncpg
import httpx
import pytest
from starlette.applications import Starlette

from voting_service import embedded
from voting_service.app import create_app
from voting_service.ledger import db
from voting_service.redis import store
from voting_service.settings import Settings

ADMIN_TOKEN = "admin-token-for-tests-0123456789"
OPS_TOKEN = "ops-token-for-tests-0123456789ab"
SHARDS = 8


@pytest.fixture(scope="session")
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="voting-tests-") as d:
        yield Path(d)


class _Server(Protocol):
    @property
    def url(self) -> str: ...

    def stop(self) -> None: ...


@contextlib.contextmanager
def _given_or_own(variable: str, start: Callable[[], _Server]) -> Iterator[str]:
    """The URL in ``variable`` when set (a server of your own), else that of a server
    started here and stopped at the end."""
    if os.environ.get(variable):
        yield os.environ[variable]
        return
    server = start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def pg_url(workdir: Path) -> Iterator[str]:
    with _given_or_own("DATABASE_URL",
                       lambda: embedded.PostgresServer(workdir / "pg").start()) as url:
        yield url


@pytest.fixture(scope="session")
def single_url(workdir: Path) -> Iterator[str]:
    with _given_or_own("REDIS_URL",
                       lambda: embedded.ValkeyServer(workdir / "valkey").start()) as url:
        yield url


@pytest.fixture(scope="session")
def cluster_url(workdir: Path) -> Iterator[str]:
    with _given_or_own("REDIS_CLUSTER_URL",
                       lambda: embedded.ValkeyCluster(workdir / "cluster").start()) as url:
        yield url


@dataclass(frozen=True)
class Backend:
    name: str
    url: str
    cluster: bool


@pytest.fixture(params=["single", "cluster"])
def backend(request: pytest.FixtureRequest) -> Backend:
    """Every Redis-touching test runs against a single node and a 3-master cluster."""
    if request.param == "single":
        return Backend("single", request.getfixturevalue("single_url"), False)
    return Backend("cluster", request.getfixturevalue("cluster_url"), True)


def make_settings(backend: Backend, pg_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "redis_url": backend.url,
        "redis_cluster": backend.cluster,
        "database_url": pg_url,
        "admin_tokens": {ADMIN_TOKEN: "admin", OPS_TOKEN: "ops"},
        "shards": SHARDS,
        "config_refresh": 0.2,
    }
    values.update(overrides)
    from voting_service.settings import Secret

    values.setdefault("secret_key", Secret("test-secret-key-0123456789"))
    values.setdefault("pepper", Secret("test-pepper-0123456789"))
    values.setdefault("ledger_cache_dir", Path(tempfile.mkdtemp(prefix="voting-ledgers-")))
    return Settings(**values)


@pytest.fixture
def settings(backend: Backend, pg_url: str) -> Settings:
    return make_settings(backend, pg_url)


@pytest.fixture(scope="session")
async def migrated(pg_url: str) -> str:
    conn = await asyncpg.connect(pg_url)
    try:
        await db.migrate(conn)
    finally:
        await conn.close()
    return pg_url


async def fresh_database(pg_url: str, name: str) -> str:
    """The URL of an empty database ``name`` on ``pg_url``'s server (dropped first if there)."""
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return pg_url.rsplit("/", 1)[0] + f"/{name}"


TABLES = ["votes", "tallies", "audit_log", "channels", "candidates", "campaigns"]


@pytest.fixture
async def pg(migrated: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection to a database emptied for this test."""
    conn = await asyncpg.connect(migrated)
    extra = [r["tablename"] for r in await conn.fetch(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        " AND tablename <> 'schema_migrations'")]
    await conn.execute(f"TRUNCATE {', '.join(sorted(set(TABLES) | set(extra)))} CASCADE")
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[store.AnyRedis]:
    """A client of the backend under test, wiped before the test."""
    client = store.connect(settings)
    if isinstance(client, store.RedisCluster):
        await client.flushall(target_nodes=store.RedisCluster.PRIMARIES)
    else:
        await client.flushall()
    try:
        yield client
    finally:
        await client.aclose()


def campaign_payload(cid: str = "t2026", candidates: int = 12, **changes: Any) -> dict[str, Any]:
    now = dt.datetime.now(dt.UTC)
    payload: dict[str, Any] = {
        "id": cid,
        "title": "测试投票",
        "timezone": "Asia/Shanghai",
        "opens_at": (now - dt.timedelta(days=1)).isoformat(),
        "closes_at": (now + dt.timedelta(days=30)).isoformat(),
        "status": "open",
        "show_counts": True,
        "rules": {
            "votes_per_day": 5, "per_candidate_per_day": 1, "identity": ["anonymous", "partner"],
            "challenge": "off", "ip_per_minute": 0, "ip_per_day": 0,
        },
        "candidates": [
            {"id": f"c{i:03d}", "number": i, "name": f"候选人{i}",
             "gender": "男" if i % 2 else "女",
             "region": ["南京市", "苏州市", "无锡市"][i % 3],
             "industry": ["电子信息", "装备制造"][i % 2], "employer": "某公司",
             "occupation": "钳工", "summary": "简介", "deeds": "事迹", "photo_url": ""}
            for i in range(1, candidates + 1)
        ],
    }
    for key, value in changes.items():
        if key == "rules":
            payload["rules"].update(value)
        else:
            payload[key] = value
    return payload


ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
OPS = {"Authorization": f"Bearer {OPS_TOKEN}"}


async def mint(client: httpx.AsyncClient, cid: str = "t2026") -> httpx.Response:
    """``POST /voter``; when the campaign wants a proof of work, solve the address's minting
    challenge (``GET /challenge?for=voter``) and post again, as the page does."""
    r = await client.post(f"/api/v1/campaigns/{cid}/voter")
    if r.status_code == 403 and r.json().get("code") == "challenge_failed":
        from voting_service.fraud.challenge import solve

        ch = await client.get(f"/api/v1/campaigns/{cid}/challenge", params={"for": "voter"})
        assert ch.status_code == 200, ch.text
        r = await client.post(f"/api/v1/campaigns/{cid}/voter", json={"proof": solve(ch.json())})
    return r


@dataclass
class Harness:
    """The app in-process with its lifespan, plus what tests need to poke at it."""

    app: Starlette
    client: httpx.AsyncClient
    settings: Settings
    redis: store.AnyRedis
    pg: asyncpg.Connection

    async def create_campaign(self, **changes: Any) -> dict[str, Any]:
        payload = campaign_payload(**changes)
        r = await self.client.post("/api/v1/admin/campaigns", json=payload, headers=ADMIN)
        assert r.status_code == 201, r.text
        return payload

    async def voter(self, cid: str = "t2026") -> str:
        """A fresh anonymous voter token, minted as the page mints it (with the proof of work
        when the campaign asks for one)."""
        r = await mint(self.client, cid)
        assert r.status_code == 201, r.text
        token: str = r.json()["token"]
        return token

    async def vote(self, token: str, candidate: str, cid: str = "t2026",
                   **body: Any) -> httpx.Response:
        return await self.client.post(
            f"/api/v1/campaigns/{cid}/votes", json={"candidate_id": candidate, **body},
            headers={"X-Voter-Token": token},
        )


async def redis_tallies(h: Harness, cid: str = "t2026") -> dict[str, int]:
    """A campaign's totals straight from Redis: the sum of its shard tallies."""
    return store.sum_tallies(await store.shard_tallies(h.redis, cid, h.settings.shards))


async def drain(h: Harness) -> int:
    """Flush every unflushed vote into PostgreSQL, as the flusher process would."""
    from voting_service.ledger.flusher import Flusher

    flusher = Flusher(h.redis, h.settings.database_url or "", h.settings.shards)
    try:
        return await flusher.drain()
    finally:
        await flusher.close()


def client_for(app: Starlette, ip: str = "203.0.113.7") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(ip, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver", timeout=30)


@pytest.fixture
async def harness(
    settings: Settings, redis: store.AnyRedis, pg: asyncpg.Connection
) -> AsyncIterator[Harness]:
    app = create_app(settings)
    async with app.router.lifespan_context(app), client_for(app) as client:
        yield Harness(app, client, settings, redis, pg)


_NOT_COUNTED = ("cmdstat_info", "cmdstat_config|resetstat", "cmdstat_hello",
                "cmdstat_client|setinfo")


async def commands_run(redis: store.AnyRedis) -> dict[str, int]:
    """Calls per command on the server(s) since the last reset (INFO itself left out, and the
    handshake of a connection some client opened meanwhile: HELLO, CLIENT SETINFO)."""
    if isinstance(redis, store.RedisCluster):
        found: Any = await redis.info("commandstats", target_nodes=store.RedisCluster.PRIMARIES)
        sections = list(found.values()) if all(isinstance(v, dict) and any(
            k.startswith("cmdstat_") for k in v) for v in found.values()) else [found]
    else:
        sections = [await redis.info("commandstats")]
    calls: dict[str, int] = {}
    for section in sections:
        for name, stat in section.items():
            if name.startswith("cmdstat_") and name not in _NOT_COUNTED:
                calls[name[8:]] = calls.get(name[8:], 0) + int(stat["calls"])
    return calls


async def reset_stats(redis: store.AnyRedis) -> None:
    if isinstance(redis, store.RedisCluster):
        await redis.config_resetstat(target_nodes=store.RedisCluster.PRIMARIES)
    else:
        await redis.config_resetstat()
