"""Replica acknowledgements (issue 12 §1): with ``VOTING_REDIS_REPLICA_ACKS=1`` a vote is
answered 200 only once a replica holds it; a missing or stalled replica means 503 (and an
unready, or refused, worker), and the retry with the same vote_id is counted once."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.conftest import ADMIN, Backend, Harness, client_for, make_settings, redis_tallies
from voting_service import embedded
from voting_service.app import create_app
from voting_service.ledger import durability
from voting_service.redis import keys, store
from voting_service.settings import Settings
from voting_service.vote.identity import network_prefixes

CLIENT_IP = "203.0.113.7"
"""The address ``client_for`` gives every request."""


async def until_durable(settings: Settings, timeout: float = 30) -> None:
    """Until every primary meets the replica acks: a new replica first rebuilds its AOF."""
    client = store.connect(settings)
    deadline = time.monotonic() + timeout
    try:
        while True:
            found = await durability.check(client, settings.redis_replica_acks)
            if found.safe:
                return
            assert time.monotonic() < deadline, found.reason
            await asyncio.sleep(0.2)
    finally:
        await client.aclose()


@pytest.fixture(scope="module")
def replicated_cluster(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[embedded.ValkeyCluster]:
    cluster = embedded.ValkeyCluster(tmp_path_factory.mktemp("rc"), replicas=1).start()
    try:
        yield cluster
    finally:
        cluster.stop()


def port_of(client: store.AnyRedis, key: str) -> int:
    """Port of the master that holds ``key``."""
    assert isinstance(client, store.RedisCluster)
    node = client.get_node_from_key(key)
    assert node is not None
    return int(node.port)


@contextlib.asynccontextmanager
async def running(settings: Settings, pg_url: str) -> AsyncIterator[Harness]:
    redis = store.connect(settings)
    if isinstance(redis, store.RedisCluster):
        await redis.flushall(target_nodes=store.RedisCluster.PRIMARIES)
    else:
        await redis.flushall()
    pg = await asyncpg.connect(pg_url)
    await pg.execute("TRUNCATE votes, tallies, audit_log, channels, candidates, campaigns CASCADE")
    app = create_app(settings)
    try:
        async with app.router.lifespan_context(app), client_for(app) as client:
            yield Harness(app, client, settings, redis, pg)
    finally:
        await pg.close()
        await redis.aclose()


async def test_single_node_without_replica_is_refused(tmp_path: Path, migrated: str) -> None:
    master = embedded.ValkeyServer(tmp_path / "m").start()
    try:
        settings = make_settings(Backend("m", master.url, False), migrated,
                                 redis_replica_acks=1)
        client = store.connect(settings)
        try:
            found = await durability.check(client, 1)
            assert not found.safe
            assert "VOTING_REDIS_REPLICA_ACKS=1" in found.reason
            assert (await durability.check(client, 0)).safe
        finally:
            await client.aclose()
        app = create_app(settings)
        with pytest.raises(RuntimeError, match="refusing to start"):
            async with app.router.lifespan_context(app):
                pass
        # accepted explicitly: the worker starts, but a vote nobody replicates is never a 200
        weak = make_settings(Backend("m", master.url, False), migrated, redis_replica_acks=1,
                             accept_weak_durability=True)
        async with running(weak, migrated) as h:
            await h.create_campaign()
            # (signed directly: minting counts its limits in Redis, and is a 503 here too)
            r = await h.vote(h.app.state.services.tokens.issue("t2026"), "c001")
            assert r.status_code == 503, r.text
            assert r.json()["code"] == "unavailable"
    finally:
        master.stop()


async def test_single_node_vote_waits_for_its_replica(tmp_path: Path, migrated: str) -> None:
    master = embedded.ValkeyServer(tmp_path / "m").start()
    replica = embedded.ValkeyServer(tmp_path / "r", replica_of=master.port).start()
    try:
        replica.wait_replica_ready()
        settings = make_settings(Backend("m", master.url, False), migrated,
                                 redis_replica_acks=1)
        await until_durable(settings)
        async with running(settings, migrated) as h:
            assert (await h.client.get("/readyz")).status_code == 200
            await h.create_campaign()
            token = await h.voter()
            r = await h.vote(token, "c003")
            assert r.status_code == 200, r.text
            # the replica holds the vote the moment it is acknowledged
            shard = keys.shard_of(h.app.state.services.tokens.voter(token, "t2026"),
                                  settings.shards)
            replica_client = store.connect(settings, url=replica.url)
            try:
                held = await replica_client.hget(keys.tally("t2026", shard), "c003")
            finally:
                await replica_client.aclose()
            assert held == "1"

            replica.signal(signal.SIGSTOP)  # alive but silent: no acknowledgement comes
            try:
                vote_id = uuid.uuid4().hex
                r = await h.vote(token, "c004", vote_id=vote_id)
                assert r.status_code == 503, r.text
                ready = await h.client.get("/readyz")
                assert ready.status_code == 503
                assert "REPLICA_ACKS" in ready.json()["checks"]["redis"]
            finally:
                replica.signal(signal.SIGCONT)
            again = await h.vote(token, "c004", vote_id=vote_id)
            assert again.status_code == 200, again.text
            assert again.json()["vote_id"] == vote_id
            assert await redis_tallies(h) == {"c003": 1, "c004": 1}
    finally:
        replica.stop()
        master.stop()


async def test_cluster_vote_waits_for_each_masters_replica(
    replicated_cluster: embedded.ValkeyCluster, migrated: str
) -> None:
    settings = make_settings(Backend("rc", replicated_cluster.url, True), migrated,
                             redis_replica_acks=1)
    await until_durable(settings)
    async with running(settings, migrated) as h:
        assert (await h.client.get("/readyz")).status_code == 200
        await h.create_campaign()
        tokens = [await h.voter() for _ in range(24)]  # spread over every shard and master
        for token in tokens:
            r = await h.vote(token, "c001")
            assert r.status_code == 200, r.text
        assert await redis_tallies(h) == {"c001": 24}

        # stall the replica of a master that holds voters but not the client's IP limits
        # (those are on the IP's slot: stalling its replica would stop every vote)
        ip_master = port_of(h.redis, keys.limits("t2026", network_prefixes(CLIENT_IP)[1]))
        voter_masters = [port_of(h.redis, keys.tally("t2026", keys.shard_of(
            h.app.state.services.tokens.voter(token, "t2026"), settings.shards)))
            for token in tokens]
        masters = replicated_cluster.masters()
        replica, its_master = next(
            (n, port) for n in replicated_cluster.nodes if n not in masters
            for port in [int(n.info("replication").split("master_port:")[1].split()[0])]
            if port != ip_master and port in voter_masters)
        stalled = [port == its_master for port in voter_masters]
        assert any(stalled) and not all(stalled)

        vote_ids = [uuid.uuid4().hex for _ in tokens]
        replica.signal(signal.SIGSTOP)
        try:
            answers = [await h.vote(token, "c002", vote_id=vote_id)
                       for token, vote_id in zip(tokens, vote_ids, strict=True)]
            # the stalled replica's master answers 503; the other masters still vote
            assert [r.status_code for r in answers] == [503 if s else 200 for s in stalled]
            assert (await h.client.get("/readyz")).status_code == 503
        finally:
            replica.signal(signal.SIGCONT)
        retried = [await h.vote(token, "c002", vote_id=vote_id)
                   for token, vote_id in zip(tokens, vote_ids, strict=True)]
        assert [r.status_code for r in retried] == [200] * len(tokens)
        assert [r.json()["vote_id"] for r in retried] == vote_ids
        assert await redis_tallies(h) == {"c001": 24, "c002": 24}


async def test_a_retry_on_another_worker_waits_for_the_first_answers_replica(
    tmp_path: Path, migrated: str
) -> None:
    """A vote 503'd because its replica stalled, retried through another worker (another
    connection to the master) while the replica is still silent: the retry finds the first
    answer, and must not be a 200 — the barrier waits for the connection's own writes, so a
    retry that wrote nothing would be acknowledged while the vote is on the master alone.
    Both ways a retry finds its first answer: the vote script, and the look-up after a
    refusal (here: the campaign paused meanwhile), each through a worker of its own."""
    master = embedded.ValkeyServer(tmp_path / "m").start()
    replica = embedded.ValkeyServer(tmp_path / "r", replica_of=master.port).start()
    url = "/api/v1/campaigns/t2026/votes"
    try:
        replica.wait_replica_ready()
        settings = make_settings(Backend("m", master.url, False), migrated,
                                 redis_replica_acks=1)
        await until_durable(settings)
        async with running(settings, migrated) as first, contextlib.AsyncExitStack() as stack:
            workers = []
            for _ in range(2):  # more workers: each its own connection to Valkey
                app = create_app(settings)
                await stack.enter_async_context(app.router.lifespan_context(app))
                workers.append(await stack.enter_async_context(client_for(app)))
            by_script, by_lookup = workers
            # no network limit: its write (on the address's node, in a Cluster on another
            # master) would give the connection a fresh offset and hide what is tested
            await first.create_campaign(rules={"net_per_minute": 0, "net_per_day": 0})
            token = await first.voter()
            headers = {"X-Voter-Token": token}

            async def until(worker: httpx.AsyncClient, status: str) -> None:
                deadline = time.monotonic() + 30
                while (r := await worker.get("/api/v1/campaigns/t2026")).status_code != 200 \
                        or r.json()["status"] != status:
                    assert time.monotonic() < deadline, f"a worker never saw {status!r}"
                    await asyncio.sleep(0.1)

            for n, worker in enumerate(workers, start=1):  # each has written: not behind
                await until(worker, "open")
                r = await worker.post(url, json={"candidate_id": f"c00{n}"}, headers=headers)
                assert r.status_code == 200, r.text
            votes = {cand: {"candidate_id": cand, "vote_id": uuid.uuid4().hex}
                     for cand in ("c003", "c004")}
            replica.signal(signal.SIGSTOP)
            try:
                for body in votes.values():
                    r = await first.client.post(url, json=body, headers=headers)
                    assert r.status_code == 503, r.text
                retried = await by_script.post(url, json=votes["c003"], headers=headers)
                assert retried.status_code == 503, retried.text
                r = await first.client.patch("/api/v1/admin/campaigns/t2026",
                                             json={"status": "paused"}, headers=ADMIN)
                assert r.status_code == 200, r.text
                await until(by_lookup, "paused")
                retried = await by_lookup.post(url, json=votes["c004"], headers=headers)
                assert retried.status_code == 503, retried.text
            finally:
                replica.signal(signal.SIGCONT)
            for body in votes.values():  # paused: both answered by the look-up now
                again = await by_lookup.post(url, json=body, headers=headers)
                assert again.status_code == 200, again.text
                assert again.json()["vote_id"] == body["vote_id"]
            assert await redis_tallies(first) == {"c001": 1, "c002": 1, "c003": 1, "c004": 1}
    finally:
        replica.stop()
        master.stop()
