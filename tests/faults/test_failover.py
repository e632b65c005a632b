"""Failover of a replicated Redis Cluster (issue 12 §2): 3 masters + 3 replicas, the web app
and the flusher as real processes in cluster mode, votes from many voters; ``kill -9`` one
master, its replica is promoted, the killed node comes back as the new master's replica, and
votes on its slots flow again. (With replica acks = 1 and one replica per master, the
promoted master has no replica until then, so its slots answer 503 meanwhile: a second
replica per master keeps them voting through the failure.)

With ``VOTING_REDIS_REPLICA_ACKS=1`` nothing acknowledged is lost: every acknowledged
vote_id is in the ledger exactly once, acknowledged <= counted <= acknowledged + unknown per
candidate, and Redis tallies equal PostgreSQL once the flusher has drained — the dead
master's stream entries included, which the promoted replica holds. With 0 the test reports
what was lost. Figures are printed (``pytest tests/faults/test_failover.py -s``); nothing here
asserts a duration.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.conftest import fresh_database
from tests.faults.support import CID, CLIENTS, PHASE, SHARDS, Load, Outcomes, started
from voting_service import embedded
from voting_service.ledger import repair
from voting_service.redis import keys, store
from voting_service.settings import Settings
from voting_service.stack import Stack

pytestmark = pytest.mark.faults

VOTERS = 400
NODE_TIMEOUT_MS = 1000
"""cluster-node-timeout: how long a silent master goes unnoticed before its replica takes
over (production: a few seconds; short here to keep the test quick)."""
SECRET = "failover-secret-key-0123456789"
PEPPER = "failover-pepper-0123456789"


@pytest.fixture(scope="module")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = embedded.PostgresServer(tmp_path_factory.mktemp("failover-pg")).start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
async def stack(request: pytest.FixtureRequest, tmp_path: Path,
                pg_server: str) -> AsyncIterator[Stack]:
    acks: int = request.param
    database = await fresh_database(pg_server,
                                    f"failover_{acks}_{request.node.originalname[5:25]}")
    s = Stack(tmp_path, cluster=True, replicas=1, node_timeout_ms=NODE_TIMEOUT_MS,
              database_url=database, secret_key=SECRET, pepper=PEPPER, shards=SHARDS,
              admin_tokens="admin:failover-admin-token-0123456789",
              extra={"VOTING_REDIS_REPLICA_ACKS": str(acks), "VOTING_DRIFT_REPAIR_INTERVAL": "2"})
    try:
        yield await started(s, "failover-flusher", net_per_minute=0, net_per_day=0)
    finally:
        s.stop()


def cluster_of(stack: Stack) -> embedded.ValkeyCluster:
    assert stack.cluster is not None
    return stack.cluster


async def _shard_masters(url: str) -> dict[int, int]:
    """Shard group -> port of the master holding its slot."""
    client = store.connect(Settings(redis_url=url, redis_cluster=True))
    try:
        assert isinstance(client, store.RedisCluster)
        await client.initialize()
        result = {}
        for shard in range(SHARDS):
            node = client.get_node_from_key(keys.tally(CID, shard))
            assert node is not None
            result[shard] = int(node.port)
        return result
    finally:
        await client.aclose()


async def _roles(cluster: embedded.ValkeyCluster) -> tuple[
        embedded.ValkeyServer, embedded.ValkeyServer, embedded.ValkeyServer, set[int]]:
    """The victim, its heir, a surviving master, and the shard groups the victim serves."""
    shard_master = await _shard_masters(cluster.url)
    victim_port = next(port for port in sorted(set(shard_master.values()))
                       if port != cluster.nodes[0].port)
    victim = next(n for n in cluster.nodes if n.port == victim_port)
    hit = {s for s, port in shard_master.items() if port == victim_port}
    heir = next(n for n in cluster.nodes if n is not victim
                and f"master_port:{victim.port}" in n.info("replication").split())
    survivor = next(n for n in cluster.nodes if n is not victim and n in cluster.masters())
    return victim, heir, survivor, hit


def _voted_on(hit: set[int], since: float) -> Callable[[Outcomes], bool]:
    """Whether a vote on one of the shard groups ``hit`` was acknowledged after ``since``."""
    return lambda out: any(t > since and s in hit for t, s in out.acked_at)


async def _tallies(stack: Stack, url: str) -> tuple[dict[str, int], dict[str, int],
                                                    dict[str, str], int]:
    """Redis tallies, PostgreSQL tallies, the ledger (vote_id -> candidate), duplicates."""
    redis = store.connect(Settings(redis_url=url, redis_cluster=True))
    try:
        in_redis = store.sum_tallies(await store.shard_tallies(redis, CID, SHARDS))
    finally:
        await redis.aclose()
    conn = await asyncpg.connect(stack.database_url)
    try:
        # one snapshot: the flusher commits meanwhile, and a ledger read before its commit
        # beside tallies read after it would show its rows as lost
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            ledger = {r["vote_id"]: r["candidate_id"] for r in await conn.fetch(
                "SELECT vote_id, candidate_id FROM votes WHERE campaign_id = $1", CID)}
            twice = int(await conn.fetchval(
                "SELECT count(*) FROM (SELECT vote_id FROM votes GROUP BY vote_id"
                " HAVING count(*) > 1) d"))
            in_pg = {r["candidate_id"]: r["votes"] for r in await conn.fetch(
                "SELECT candidate_id, votes FROM tallies WHERE campaign_id = $1", CID)
                if r["votes"]}
    finally:
        await conn.close()
    return in_redis, in_pg, ledger, twice


@pytest.mark.parametrize("stack", [1, 0], indirect=True, ids=["replica-acks-1", "replica-acks-0"])
async def test_master_sigkill_fails_over_without_losing_acknowledged_votes(
    stack: Stack,
) -> None:
    acks = int(stack.env["VOTING_REDIS_REPLICA_ACKS"])
    load = Load(stack, VOTERS)
    cluster = cluster_of(stack)
    victim, heir, survivor, hit = await _roles(cluster)

    async with load.voting():
        await asyncio.sleep(PHASE)
        acked_before = len(load.out.acknowledged)
        killed_at = time.monotonic()
        victim.kill()  # SIGKILL: no goodbye to its replica or the cluster
        while "role:master" not in heir.info("replication"):
            assert time.monotonic() - killed_at < 30, "the replica was not promoted"
            await asyncio.sleep(0.05)
        cluster.wait_ok(30, via=survivor)
        promoted_at = time.monotonic() - killed_at
        # the machine comes back (or is replaced) and rejoins as the new master's replica:
        # with replica acks, the promoted master accepts votes again once it has one
        victim.start()
        try:
            recovered_at = await load.until(_voted_on(hit, killed_at), 45,
                                            "votes on the dead master's slots")
        except AssertionError as exc:
            role = victim.info("replication")[:200]
            pytest.fail(f"{exc}; old master: {role}\nweb log:\n{stack.web.tail()}")
        await asyncio.sleep(PHASE)
    out = load.out
    again = recovered_at - killed_at
    assert "role:slave" in victim.info("replication"), "the old master did not rejoin"

    # the flusher drains what the promoted replicas hold
    url = survivor.url
    deadline = time.monotonic() + (45 if acks else 15)
    while True:
        in_redis, in_pg, ledger, twice = await _tallies(stack, url)
        if in_redis == in_pg or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)

    ack, unknown, counted = (Counter(out.acknowledged.values()), Counter(out.unknown.values()),
                             Counter(ledger.values()))
    lost = set(out.acknowledged) - set(ledger)
    redis_behind = sum(max(in_pg.get(c, 0) - in_redis.get(c, 0), 0) for c in in_pg)
    print(f"\nfailover, VOTING_REDIS_REPLICA_ACKS={acks}: {len(out.acknowledged)} acknowledged "
          f"({acked_before} before the kill), {len(out.unknown)} unknown, "
          f"rejected {dict(out.rejected)}; votes on the dead master's slots again after "
          f"{again:.2f} s (replica promoted, cluster_state ok, after {promoted_at:.2f} s; "
          f"cluster-node-timeout {NODE_TIMEOUT_MS} ms); acknowledged votes lost: {len(lost)}; "
          f"Redis behind PostgreSQL by {redis_behind} vote(s)")

    assert out.acknowledged and acked_before, "the load did not run"
    assert twice == 0, "a vote is in the ledger twice"
    assert not set(ledger) - set(out.acknowledged) - set(out.unknown), "votes nobody cast"
    if acks == 0:
        return  # the figures above are the point: what a failover costs without replica acks
    assert not lost, f"{len(lost)} acknowledged votes lost"
    for cand in set(ack) | set(counted):
        assert ack[cand] <= counted[cand] <= ack[cand] + unknown[cand], cand
    assert dict(counted) == in_pg
    assert in_redis == in_pg, "Redis and PostgreSQL disagree after the drain"


FILLER_MB = 24
"""Replication stream written past a stopped replica before its master dies: more than the
kernel's socket buffers on both ends hold (a few MiB each), so what follows stays in the
master's own output buffer and dies with it — the replica is stale, not merely paused."""


def _tag_on(client: store.RedisCluster, port: int) -> str:
    """A hash tag whose slot the master on ``port`` serves."""
    for n in range(100_000):
        node = client.get_node_from_key(f"{{filler:{n}}}")
        if node is not None and int(node.port) == port:
            return f"{{filler:{n}}}"
    raise AssertionError(f"no slot of port {port} found")


async def _fill_replication(url: str, port: int) -> None:
    """``FILLER_MB`` MiB through the master on ``port`` (one key, rewritten)."""
    client = store.connect(Settings(redis_url=url, redis_cluster=True), socket_timeout=30)
    try:
        assert isinstance(client, store.RedisCluster)
        await client.initialize()
        key = _tag_on(client, port) + ":filler"
        blob = "x" * (1 << 20)
        for _ in range(FILLER_MB):
            await client.set(key, blob)
        await client.delete(key)
    finally:
        await client.aclose()


async def _repairs(url: str) -> dict[str, dict[str, int]]:
    client = store.connect(Settings(redis_url=url, redis_cluster=True))
    try:
        return await repair.counts(client)
    finally:
        await client.aclose()


async def _retry(stack: Stack, votes: dict[str, tuple[str, str]]) -> Counter[int]:
    """Send each (vote_id -> (token, candidate)) again with its own vote_id: statuses."""
    statuses: Counter[int] = Counter()
    async with httpx.AsyncClient(base_url=stack.base, timeout=5.0) as http:
        for vote_id, (token, cand) in votes.items():
            r = await http.post(f"/api/v1/campaigns/{CID}/votes",
                                json={"candidate_id": cand, "vote_id": vote_id},
                                headers={"X-Voter-Token": token})
            statuses[r.status_code] += 1
    return statuses


@pytest.mark.parametrize("stack", [1], indirect=True, ids=["replica-acks-1"])
async def test_lagging_replica_promoted_leaves_redis_equal_to_postgres(stack: Stack) -> None:
    """Issue 23 §5: the victim's replica is stopped (SIGSTOP) and left behind by more than
    the socket buffers hold while votes keep coming (its master answers them 503: no replica
    acknowledges); then the master gets ``kill -9``, the stale replica is resumed and
    promoted, and the old master restarts (its AOF holds the 503'd votes) and rejoins as a
    replica. After the drain Redis must equal PostgreSQL, and a 503'd vote that reached the
    ledger must not be countable a second time by its retry."""
    load = Load(stack, VOTERS)
    cluster = cluster_of(stack)
    victim, heir, survivor, hit = await _roles(cluster)

    async with load.voting():
        await asyncio.sleep(PHASE)
        heir.signal(signal.SIGSTOP)
        stopped = True
        try:
            await _fill_replication(cluster.url, victim.port)
            lag_from = len(load.out.unknown)
            # votes on the victim's slots: in its AOF, answered 503
            await load.until(lambda out: len(out.unknown) >= lag_from + 2 * CLIENTS, 30,
                             "votes answered 503 while the replica is stopped")
            lagged = len(load.out.unknown) - lag_from
            killed_at = time.monotonic()
            victim.kill()
            heir.signal(signal.SIGCONT)
            stopped = False
        finally:
            if stopped:
                heir.signal(signal.SIGCONT)
        while "role:master" not in heir.info("replication"):
            if time.monotonic() - killed_at > 8:  # not elected (its data looked too old)
                cluster.cli(heir, "cluster", "failover", "takeover")
            assert time.monotonic() - killed_at < 30, "the replica was not promoted"
            await asyncio.sleep(0.05)
        cluster.wait_ok(30, via=survivor)
        victim.start()  # with its AOF: the 503'd votes the promoted replica never got
        await load.until(_voted_on(hit, killed_at), 60, "votes on the dead master's slots")
        await asyncio.sleep(PHASE)
    assert "role:slave" in victim.info("replication"), "the old master did not rejoin"

    url = survivor.url

    async def drained() -> tuple[dict[str, int], dict[str, int], dict[str, str], int]:
        deadline = time.monotonic() + 45
        while True:
            found = await _tallies(stack, url)
            if found[0] == found[1] or time.monotonic() > deadline:
                return found
            await asyncio.sleep(0.5)

    in_redis, in_pg, ledger, twice = await drained()
    out = load.out
    lost = set(out.acknowledged) - set(ledger)
    ledgered_503 = {v: (out.token[v], c) for v, c in out.unknown.items() if v in ledger}
    print(f"\nlagging failover: {len(out.acknowledged)} acknowledged, {len(out.unknown)} "
          f"answered 503 or unanswered ({lagged} while the replica was stopped), "
          f"{len(ledgered_503)} of those in the ledger; ledger {sum(in_pg.values())}, "
          f"Redis {sum(in_redis.values())}; acknowledged lost: {len(lost)}")
    assert out.acknowledged and lagged, "the load did not run"
    assert not lost, f"{len(lost)} acknowledged votes lost"
    assert twice == 0, "a vote is in the ledger twice"
    assert not set(ledger) - set(out.acknowledged) - set(out.unknown), "votes nobody cast"
    assert in_redis == in_pg, "Redis and PostgreSQL disagree after the drain"

    # the voters whose 503'd votes are counted retry them: each is answered, counted once
    statuses = await _retry(stack, ledgered_503)
    assert set(statuses) <= {200}, statuses
    in_redis, in_pg, ledger, twice = await drained()
    assert twice == 0, "a 503'd vote in the ledger was counted again by its retry"
    assert in_redis == in_pg, "Redis and PostgreSQL disagree after the retries"
    # and equal by the flusher's commits alone, not by the drift repair's mending
    assert await _repairs(url) == {}, "the flusher committed what the new master lacked"
