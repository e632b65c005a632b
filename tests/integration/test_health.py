"""The health snapshot (``ledger/health.py``): backlog, lag and drift on real servers, held
true while votes flow and a flusher commits, and refreshed by the web process itself."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import OPS, Backend, Harness, drain, make_settings
from voting_service.app import create_app
from voting_service.ledger import health
from voting_service.ledger.flusher import Flusher
from voting_service.redis import keys, store
from voting_service.services import Services
from voting_service.settings import Settings


async def snapshot(h: Harness) -> health.Health:
    svc: Services = h.app.state.services
    return await health.measure(h.redis, svc.db, ["t2026"], h.settings.shards)


async def flushed_rows(client: httpx.AsyncClient) -> float:
    """``voting_flusher_rows_total`` as Prometheus reads it (0 while not yet measured)."""
    r = await client.get("/metrics", headers=OPS)
    assert r.status_code == 200, r.text
    return sum(s.value for family in text_string_to_metric_families(r.text)
               for s in family.samples if s.name == "voting_flusher_rows_total")


async def cast(h: Harness, voters: int, per_voter: int) -> int:
    for _ in range(voters):
        token = await h.voter()
        for i in range(per_voter):
            r = await h.vote(token, f"c{i + 1:03d}")
            assert r.status_code == 200, r.text
    return voters * per_voter


async def test_backlog_lag_and_drift_follow_the_ledger(harness: Harness) -> None:
    await harness.create_campaign()
    cast_votes = await cast(harness, voters=5, per_voter=3)

    before = await snapshot(harness)
    assert before.redis_up and before.postgres_up and before.redis_durable
    camp = before.campaigns["t2026"]
    assert camp.backlog == cast_votes
    assert camp.lag_seconds > 0
    assert camp.drift == 0 and camp.drifting == ()
    assert before.ok, before.problems()

    await drain(harness)
    after = await snapshot(harness)
    assert after.campaigns["t2026"].backlog == 0
    assert after.campaigns["t2026"].lag_seconds == 0.0
    assert after.campaigns["t2026"].drift == 0
    assert after.ledger_rows is not None and before.ledger_rows is not None
    # the rows are in the day partitions; PostgreSQL reports a backend's counts a moment
    # after its commit, so wait for them (a reading of the partitioned parent stays at 0)
    for _ in range(200):
        if after.ledger_rows is not None and \
                after.ledger_rows >= before.ledger_rows + cast_votes:
            break
        await asyncio.sleep(0.1)
        after = await snapshot(harness)
    assert after.ledger_rows is not None
    assert after.ledger_rows - before.ledger_rows >= cast_votes, (before.ledger_rows,
                                                                  after.ledger_rows)

    # a tally that no ledger row backs is drift, and named
    await harness.redis.hincrby(keys.tally("t2026", 3), "c002", 2)
    drifted = await snapshot(harness)
    assert drifted.campaigns["t2026"].drift == 2
    assert drifted.campaigns["t2026"].drifting == ("c002",)
    assert "tally_drift" in drifted.problems()
    assert drifted.to_dict()["campaigns"]["t2026"]["drift"] == 2


async def test_drift_stays_zero_while_votes_flow_and_the_flusher_commits(
    harness: Harness,
) -> None:
    await harness.create_campaign(rules={"votes_per_day": 12})
    stop = asyncio.Event()
    flusher = Flusher(harness.redis, harness.settings.database_url or "",
                      harness.settings.shards, block_ms=50)
    flushing = asyncio.create_task(flusher.run(stop))
    cast_votes = 0

    async def voting() -> None:
        nonlocal cast_votes
        while not stop.is_set():
            cast_votes += await cast(harness, voters=1, per_voter=12)

    voters = [asyncio.create_task(voting()) for _ in range(3)]
    try:
        drifts = []
        for _ in range(25):
            drifts.append((await snapshot(harness)).campaigns["t2026"].drift)
    finally:
        stop.set()
        await asyncio.gather(flushing, *voters)
        await flusher.close()
    assert cast_votes > 0 and flusher.stats.flushed > 0  # both really ran meanwhile
    assert drifts == [0] * 25


async def test_postgres_down_still_reports_the_backlog(harness: Harness) -> None:
    await harness.create_campaign()
    await cast(harness, voters=2, per_voter=2)

    @contextlib.asynccontextmanager
    async def nowhere() -> AsyncIterator[asyncpg.Connection]:
        conn = await asyncpg.connect("postgresql://voting@127.0.0.1:1/voting", timeout=1)
        yield conn  # pragma: no cover - the port is closed

    found = await health.measure(harness.redis, nowhere, ["t2026"], harness.settings.shards)
    assert found.redis_up and not found.postgres_up
    assert found.campaigns["t2026"].backlog == 4
    assert found.campaigns["t2026"].drift is None
    assert "postgres_down" in found.problems()


async def test_redis_down_is_reported_not_raised(settings: Settings) -> None:
    dead = store.connect(settings, url="redis://127.0.0.1:1/0")
    try:
        found = await health.measure(dead, None, ["t2026"], settings.shards)
    finally:
        await dead.aclose()
    assert not found.redis_up and not found.redis_durable
    assert found.campaigns == {}
    assert {"redis_down", "postgres_down"} <= set(found.problems())


@pytest.mark.parametrize("backend", ["single"], indirect=True)
async def test_the_web_process_refreshes_the_snapshot(
    backend: Backend, pg_url: str, pg: asyncpg.Connection, redis: store.AnyRedis,
) -> None:
    settings = make_settings(backend, pg_url, health_interval=0.05)
    app = create_app(settings)
    from tests.conftest import client_for

    async with app.router.lifespan_context(app), client_for(app) as client:
        h = Harness(app, client, settings, redis, pg)
        await h.create_campaign()
        await cast(h, voters=1, per_voter=3)
        svc: Services = app.state.services
        for _ in range(200):  # the next background pass sees the new campaign's votes
            seen = svc.health.campaigns.get("t2026")
            if seen is not None and seen.backlog == 3:
                break
            await asyncio.sleep(0.05)
        assert svc.health.at > 0 and svc.health.redis_up and svc.health.postgres_up
        assert svc.health.campaigns["t2026"].backlog == 3
        assert svc.health.campaigns["t2026"].drift == 0

        # the flusher's rows reach /metrics: the committed rows, not the parent table's 0
        before = await flushed_rows(client)
        assert await drain(h) == 3
        after = before
        for _ in range(200):  # the next pass, once PostgreSQL reports the commit's counts
            after = await flushed_rows(client)
            if after >= before + 3:
                break
            await asyncio.sleep(0.05)
        assert after - before >= 3, (before, after)
