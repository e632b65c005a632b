"""The durable ledger (issue #3): crash windows of the flusher, reconcile, rebuild,
durability checks and concurrent migrations — against real servers."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import (
    ADMIN,
    OPS,
    Backend,
    Harness,
    fresh_database,
    make_settings,
    redis_tallies,
)
from voting_service import embedded
from voting_service.app import create_app
from voting_service.ledger import campaigns, durability, reconcile
from voting_service.ledger.batch import Batch
from voting_service.ledger.flusher import Flusher, healthy
from voting_service.ledger.marks import MarkMoved
from voting_service.redis import keys, store
from voting_service.settings import Settings
from voting_service.stack import service_env, settings_env
from voting_service.vote import entry
from voting_service.vote.registry import LiveCampaign


async def cast_votes(h: Harness, voters: int, per_voter: int) -> list[str]:
    await h.create_campaign()
    ids = []
    for _ in range(voters):
        token = await h.voter()
        for i in range(per_voter):
            r = await h.vote(token, f"c{i + 1:03d}")
            assert r.status_code == 200, r.text
            ids.append(r.json()["vote_id"])
    return ids


def flusher_for(h: Harness, name: str, lease_ttl_ms: int = 15_000) -> Flusher:
    return Flusher(h.redis, h.settings.database_url or "", h.settings.shards, name=name,
                   lease_ttl_ms=lease_ttl_ms)


async def stream_backlog(h: Harness, cid: str = "t2026") -> int:
    return sum([await h.redis.xlen(keys.ledger(cid, s)) for s in range(h.settings.shards)])


async def pg_tallies(pg: asyncpg.Connection) -> dict[str, int]:
    rows = await pg.fetch("SELECT candidate_id, votes FROM tallies WHERE campaign_id = 't2026'")
    return {r["candidate_id"]: r["votes"] for r in rows if r["votes"]}


async def read_one_batch(flusher: Flusher) -> Batch:
    """What one pass of ``flusher`` reads, without writing it."""
    await flusher.refresh()
    await flusher._build_groups()
    flusher._start_reads(burst=True)
    return await flusher._collect(None, 5.0)


async def test_crash_after_commit_before_trim_counts_once(harness: Harness) -> None:
    ids = await cast_votes(harness, voters=6, per_voter=3)
    dying = flusher_for(harness, "dying", lease_ttl_ms=300)
    batch = await read_one_batch(dying)
    assert batch.rows == len(ids)
    await dying._write(batch)  # committed, mark moved ...
    await dying.close(release=False)  # ... and the process dies before XTRIM
    assert await stream_backlog(harness) == len(ids), "committed entries still in the streams"
    shards = harness.settings.shards
    assert await reconcile.reconcile(harness.redis, harness.pg, "t2026", shards) == [], \
        "entries up to the mark are counted in PostgreSQL, not twice"
    assert await reconcile.unflushed(harness.redis, harness.pg, "t2026", shards) == []

    await asyncio.sleep(0.4)  # the lease lapses
    taker = flusher_for(harness, "taker")
    try:
        assert await taker.drain() == 0, "the mark says all is written"
    finally:
        await taker.close()
    assert await harness.pg.fetchval("SELECT count(*) FROM votes") == len(ids)
    assert await pg_tallies(harness.pg) == await redis_tallies(harness)
    assert await stream_backlog(harness) == 0, "the next owner trims what was committed"
    assert await reconcile.reconcile(harness.redis, harness.pg, "t2026", shards) == []


async def test_restart_with_same_name_reads_on_from_the_mark(harness: Harness) -> None:
    ids = await cast_votes(harness, voters=4, per_voter=2)
    first = flusher_for(harness, "pod-1")
    batch = await read_one_batch(first)  # read by pod-1, then it dies before writing
    assert batch.rows == len(ids)
    await first.close(release=False)
    assert await harness.pg.fetchval("SELECT count(*) FROM votes") == 0

    again = flusher_for(harness, "pod-1")  # its lease is still its own
    try:
        assert await again.drain() == len(ids)
    finally:
        await again.close()
    stored = {r["vote_id"] for r in await harness.pg.fetch("SELECT vote_id FROM votes")}
    assert stored == set(ids)
    assert await stream_backlog(harness) == 0


async def test_a_flusher_that_lost_its_shards_cannot_write_them_again(
    harness: Harness,
) -> None:
    """A flusher paused past its lease (GC, a stopped VM) wakes up with a batch in hand after
    another flusher wrote the same entries: its marks moved, so its transaction rolls back."""
    ids = await cast_votes(harness, voters=5, per_voter=2)
    stale = flusher_for(harness, "stale", lease_ttl_ms=300)
    batch = await read_one_batch(stale)
    assert batch.rows == len(ids)
    await asyncio.sleep(0.4)
    other = flusher_for(harness, "other")
    try:
        assert await other.drain() == len(ids)
        with pytest.raises(MarkMoved):
            await stale._write(batch)
    finally:
        await other.close()
        await stale.close()
    assert await harness.pg.fetchval("SELECT count(*) FROM votes") == len(ids)
    assert await pg_tallies(harness.pg) == await redis_tallies(harness)


async def test_reconcile_reports_drift(harness: Harness) -> None:
    await cast_votes(harness, voters=3, per_voter=2)
    flusher = flusher_for(harness, "f")
    try:
        await flusher.drain()
    finally:
        await flusher.close()
    shards = harness.settings.shards
    assert await reconcile.reconcile(harness.redis, harness.pg, "t2026", shards) == []
    await harness.redis.hincrby(keys.tally("t2026", 0), "c002", 5)
    drift = await reconcile.reconcile(harness.redis, harness.pg, "t2026", shards)
    assert [(d.candidate_id, d.redis - d.expected) for d in drift] == [("c002", 5)]


async def test_unflushed_votes_count_in_reconcile(harness: Harness) -> None:
    await cast_votes(harness, voters=2, per_voter=3)
    shards = harness.settings.shards
    found = await reconcile.unflushed(harness.redis, harness.pg, "t2026", shards)
    assert len(found) == 6
    assert await reconcile.reconcile(harness.redis, harness.pg, "t2026", shards) == []


async def test_rebuild_restores_tallies_and_todays_quota(harness: Harness) -> None:
    await harness.create_campaign()
    token = await harness.voter()
    for cand in ("c001", "c002"):
        assert (await harness.vote(token, cand)).status_code == 200
    other = await harness.voter()
    assert (await harness.vote(other, "c001")).status_code == 200
    flusher = flusher_for(harness, "f")
    try:
        await flusher.drain()
    finally:
        await flusher.close()
    before = await redis_tallies(harness)
    assert before == {"c001": 2, "c002": 1}

    # Redis loses everything, then the snapshots come back from PostgreSQL
    r = harness.redis
    if isinstance(r, store.RedisCluster):
        await r.flushall(target_nodes=store.RedisCluster.PRIMARIES)
    else:
        await r.flushall()
    await campaigns.push_all_snapshots(harness.pg, r)
    assert await redis_tallies(harness) == {}
    # a refresh between the flush and the publish dropped the campaign: read it back now
    await harness.app.state.services.registry.refresh(force=True)
    live = harness.app.state.services.registry.get("t2026")
    assert isinstance(live, LiveCampaign)
    day = live.day(__import__("time").time())
    restored = await reconcile.rebuild(r, harness.pg, "t2026", harness.settings.shards,
                                       day.date, day.expire_at)
    assert restored == 3
    assert await redis_tallies(harness) == before
    again = await harness.vote(token, "c001")
    assert again.status_code == 409 and again.json()["code"] == "already_voted"
    third = await harness.vote(token, "c003")
    assert third.status_code == 200
    assert third.json()["votes_left_today"] == 2  # 5 a day, 3 used after the rebuild


async def test_flusher_check_reports_health(harness: Harness) -> None:
    ok, why = await healthy(harness.redis)
    assert not ok and "no flusher" in why
    await cast_votes(harness, voters=1, per_voter=1)
    flusher = flusher_for(harness, "beat")
    try:
        await flusher.drain()
        await flusher.heartbeat()
    finally:
        await flusher.close()
    ok, why = await healthy(harness.redis)
    assert ok and "1 flusher" in why


async def test_flusher_backs_off_while_postgres_is_unreachable(
    backend: Backend, redis: store.AnyRedis, pg: asyncpg.Connection
) -> None:
    """Votes in the stream stay there (nothing acked) while the database is away."""
    settings = make_settings(backend, "postgresql://postgres@127.0.0.1:1/none")
    app = create_app(settings)
    from tests.conftest import campaign_payload, client_for

    await campaigns.load(pg, redis, __import__("json").dumps(campaign_payload()).encode())
    async with app.router.lifespan_context(app), client_for(app) as client:
        token = (await client.post("/api/v1/campaigns/t2026/voter")).json()["token"]
        r = await client.post("/api/v1/campaigns/t2026/votes", json={"candidate_id": "c001"},
                              headers={"X-Voter-Token": token})
        assert r.status_code == 200  # voting does not need PostgreSQL
        admin = await client.get("/api/v1/admin/campaigns/t2026/results", headers=OPS)
        assert admin.status_code == 503 and admin.json()["code"] == "unavailable"
    flusher = Flusher(redis, "postgresql://postgres@127.0.0.1:1/none", settings.shards)
    stop = asyncio.Event()
    task = asyncio.create_task(flusher.run(stop))
    await asyncio.sleep(0.5)
    stop.set()
    await task
    backlog = sum([await redis.xlen(keys.ledger("t2026", s)) for s in range(settings.shards)])
    assert backlog == 1


@pytest.mark.parametrize("appendonly,appendfsync,safe", [
    (False, "always", False), (True, "no", False), (True, "everysec", True),
    (True, "always", True),
])
async def test_durability_check(
    tmp_path: Path, appendonly: bool, appendfsync: str, safe: bool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = embedded.ValkeyServer(tmp_path / "v", appendonly=appendonly,
                                   appendfsync=appendfsync).start()
    try:
        settings = Settings(redis_url=server.url)
        client = store.connect(settings)
        found = await durability.check(client)
        assert found.safe is safe, found.reason
        assert found.waitaof is (appendfsync == "everysec")
        app = create_app(settings)
        if safe:
            with caplog.at_level(logging.WARNING, logger="voting_service.app"):
                async with app.router.lifespan_context(app):
                    assert app.state.services.pipeline is not None
            # everysec + WAITAOF is safe, and the slower of the two: said at start, with why
            slow = [r for r in caplog.records if "1,911 votes/s" in r.getMessage()]
            assert len(slow) == (1 if appendfsync == "everysec" else 0)
            assert durability.slow_reason(found) == (
                durability.SLOW_EVERYSEC if appendfsync == "everysec" else None)
        else:
            with pytest.raises(RuntimeError, match="refusing to start"):
                async with app.router.lifespan_context(app):
                    pass
            weak = create_app(Settings(redis_url=server.url, accept_weak_durability=True))
            async with weak.router.lifespan_context(weak):
                assert weak.state.services.settings.accept_weak_durability
        await client.aclose()
    finally:
        server.stop()


async def test_votes_are_durable_with_waitaof(tmp_path: Path, migrated: str) -> None:
    server = embedded.ValkeyServer(tmp_path / "v", appendfsync="everysec").start()
    try:
        backend = Backend("everysec", server.url, False)
        settings = make_settings(backend, migrated)
        redis = store.connect(settings)
        conn = await asyncpg.connect(migrated)
        from tests.conftest import campaign_payload, client_for

        try:
            await conn.execute("TRUNCATE campaigns CASCADE")
            await campaigns.load(conn, redis,
                                 __import__("json").dumps(campaign_payload()).encode())
            app = create_app(settings)
            async with app.router.lifespan_context(app), client_for(app) as client:
                token = (await client.post("/api/v1/campaigns/t2026/voter")).json()["token"]
                r = await client.post("/api/v1/campaigns/t2026/votes",
                                      json={"candidate_id": "c003"},
                                      headers={"X-Voter-Token": token})
                assert r.status_code == 200, r.text
        finally:
            await conn.close()
            await redis.aclose()
        server.kill()  # SIGKILL right after the acknowledgement
        server.start()
        again = store.connect(settings)
        try:
            assert await store.shard_tallies(again, "t2026", settings.shards) != []
            totals = store.sum_tallies(await store.shard_tallies(again, "t2026", settings.shards))
            assert totals == {"c003": 1}
        finally:
            await again.aclose()
    finally:
        server.stop()


def test_migrate_is_safe_from_concurrent_processes(migrated: str) -> None:
    url = asyncio.run(fresh_database(migrated, "migrate_race"))
    env = service_env(database_url=url, secret_key="k" * 20, pepper="p" * 20)
    procs = [subprocess.Popen([sys.executable, "-m", "voting_service.cli", "migrate"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
             for _ in range(4)]
    outputs = [p.communicate(timeout=120)[0].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], outputs
    assert sum("applied" in o and "up to date" not in o for o in outputs) == 1

    async def versions() -> list[int]:
        conn = await asyncpg.connect(url)
        try:
            return [r["version"] for r in await conn.fetch(
                "SELECT version FROM schema_migrations ORDER BY version")]
        finally:
            await conn.close()

    found = asyncio.run(versions())
    assert found == sorted(set(found)) and found[0] == 1


async def test_rebuild_refuses_while_votes_flow(harness: Harness) -> None:
    shards = harness.settings.shards
    await harness.create_campaign()
    assert not await reconcile.votes_flowing(harness.redis, "t2026", shards, 10)
    token = await harness.voter()
    assert (await harness.vote(token, "c004")).status_code == 200
    assert await reconcile.votes_flowing(harness.redis, "t2026", shards, 10)
    env = settings_env(harness.settings)
    refused = subprocess.run([sys.executable, "-m", "voting_service.cli", "rebuild"], env=env,
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "--force" in refused.stdout
    forced = subprocess.run([sys.executable, "-m", "voting_service.cli", "rebuild", "--force"],
                            env=env, capture_output=True, text=True, timeout=60)
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert "rebuilt tallies of 1 votes" in forced.stdout
    totals = store.sum_tallies(await store.shard_tallies(harness.redis, "t2026", shards))
    assert totals == {"c004": 1}


async def test_vote_id_reused_after_the_idempotency_window_is_a_new_vote(
    harness: Harness,
) -> None:
    """Three days on, the idempotency key is gone and the same vote_id is a new vote: the
    ledger must keep both, or Redis would count one PostgreSQL does not have."""
    await harness.create_campaign()
    token = await harness.voter()
    first = await harness.vote(token, "c005", vote_id="reused-vote-id-0001")
    assert first.status_code == 200
    flusher = flusher_for(harness, "f")
    try:
        await flusher.drain()
        row = await harness.pg.fetchrow("SELECT voter_id, shard, day FROM votes")
        assert row is not None
        later = (row["day"] + __import__("datetime").timedelta(days=3)).isoformat()
        # what cast_vote.lua writes when the voter reuses the id three days later
        await harness.redis.hincrby(keys.tally("t2026", row["shard"]), "c005", 1)
        await harness.redis.xadd(keys.ledger("t2026", row["shard"]), {entry.FIELD: entry.pack(
            entry.Entry("reused-vote-id-0001", row["voter_id"], "c005", "", "203.0.113.7",
                        later, False))})
        assert await flusher.drain() == 1
    finally:
        await flusher.close()
    assert await harness.pg.fetchval("SELECT count(*) FROM votes") == 2
    assert await pg_tallies(harness.pg) == {"c005": 2}
    shards = harness.settings.shards
    assert await reconcile.reconcile(harness.redis, harness.pg, "t2026", shards) == []


async def test_patching_one_rule_keeps_the_others(harness: Harness) -> None:
    await harness.create_campaign(rules={"votes_per_day": 7, "ip_per_day": 0})
    r = await harness.client.patch("/api/v1/admin/campaigns/t2026",
                                   json={"rules": {"per_candidate_per_day": 2}}, headers=ADMIN)
    assert r.status_code == 200, r.text
    rules = r.json()["rules"]
    assert (rules["votes_per_day"], rules["per_candidate_per_day"], rules["ip_per_day"]) == (
        7, 2, 0)
    assert rules["identity"] == ["anonymous", "partner"]
    bad = await harness.client.patch("/api/v1/admin/campaigns/t2026",
                                     json={"rules": {"votes_per_dya": 3}}, headers=ADMIN)
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_request"
