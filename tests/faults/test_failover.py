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
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.conftest import campaign_payload, fresh_database
from voting_service import embedded
from voting_service.ledger import repair
from voting_service.settings import Settings
from voting_service.vote import keys, store
from voting_service.vote.identity import VoterTokens

pytestmark = pytest.mark.faults

PHASE = float(os.environ.get("FAULT_SECONDS", "2.5"))
CLIENTS = 12
VOTERS = 400
SHARDS = 8
NODE_TIMEOUT_MS = 1000
"""cluster-node-timeout: how long a silent master goes unnoticed before its replica takes
over (production: a few seconds; short here to keep the test quick)."""
SECRET = "failover-secret-key-0123456789"
PEPPER = "failover-pepper-0123456789"
CID = "t2026"


@dataclass
class Outcomes:
    acknowledged: dict[str, str] = field(default_factory=dict)  # vote_id -> candidate
    unknown: dict[str, str] = field(default_factory=dict)
    rejected: Counter[int] = field(default_factory=Counter)
    acked_at: list[tuple[float, int]] = field(default_factory=list)  # (monotonic, shard)
    token: dict[str, str] = field(default_factory=dict)  # vote_id -> the voter's token


@dataclass
class Stack:
    dir: Path
    cluster: embedded.ValkeyCluster
    pg_url: str
    env: dict[str, str]
    port: int
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def spawn(self, *args: str) -> subprocess.Popen[bytes]:
        log = open(self.dir / f"{args[0]}.log", "ab")  # noqa: SIM115 - lives with the process
        proc = subprocess.Popen([sys.executable, "-m", "voting_service.cli", *args],
                                env=self.env, stdout=log, stderr=log, start_new_session=True)
        self.procs.append(proc)
        return proc

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "voting_service.cli", *args],
                              env=self.env, capture_output=True, text=True, timeout=120)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.cluster.stop()


@pytest.fixture(scope="module")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = embedded.PostgresServer(tmp_path_factory.mktemp("failover-pg")).start()
    try:
        yield server.url
    finally:
        server.stop()


async def _wait_ready(base: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            try:
                if (await client.get(base + "/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
    raise AssertionError("service did not become ready")


@pytest.fixture
async def stack(request: pytest.FixtureRequest, tmp_path: Path,
                pg_server: str) -> AsyncIterator[Stack]:
    acks: int = request.param
    cluster = embedded.ValkeyCluster(tmp_path / "cluster", replicas=1,
                                     node_timeout_ms=NODE_TIMEOUT_MS).start()
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    env.update({
        "REDIS_URL": cluster.url, "VOTING_REDIS_CLUSTER": "1",
        "VOTING_REDIS_REPLICA_ACKS": str(acks),
        "DATABASE_URL": await fresh_database(
            pg_server, f"failover_{acks}_{request.node.originalname[5:25]}"),
        "VOTING_SECRET_KEY": SECRET, "VOTING_PEPPER": PEPPER, "VOTING_SHARDS": str(SHARDS),
        "VOTING_ADMIN_TOKENS": "admin:failover-admin-token-0123456789",
        "VOTING_DRIFT_REPAIR_INTERVAL": "2",
    })
    s = Stack(tmp_path, cluster, env["DATABASE_URL"], env, embedded.free_port())
    try:
        assert s.cli("migrate").returncode == 0
        payload = campaign_payload(candidates=20, rules={
            "votes_per_day": 1000, "per_candidate_per_day": 1000,
            "net_per_minute": 0, "net_per_day": 0})
        (tmp_path / "campaign.json").write_text(json.dumps(payload))
        loaded = s.cli("campaign", "load", str(tmp_path / "campaign.json"))
        assert loaded.returncode == 0, loaded.stderr
        s.spawn("serve", "--port", str(s.port))
        s.spawn("flusher", "--name", "failover-flusher")
        await _wait_ready(s.base)
        yield s
    finally:
        s.stop()


class Load:
    """Concurrent clients voting (each vote a new vote_id) until stopped."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        tokens = VoterTokens([SECRET], PEPPER)
        self.tokens = [tokens.issue(CID) for _ in range(VOTERS)]
        self.shard = {t: keys.shard_of(tokens.voter(t, CID), SHARDS) for t in self.tokens}
        self.out = Outcomes()
        self.stop = asyncio.Event()

    async def client(self, seed: int) -> None:
        rng = random.Random(seed)
        async with httpx.AsyncClient(base_url=self.stack.base, timeout=3.0) as http:
            while not self.stop.is_set():
                vote_id, cand = uuid.uuid4().hex, f"c{rng.randint(1, 20):03d}"
                token = rng.choice(self.tokens)
                self.out.token[vote_id] = token
                try:
                    r = await http.post(f"/api/v1/campaigns/{CID}/votes",
                                        json={"candidate_id": cand, "vote_id": vote_id},
                                        headers={"X-Voter-Token": token})
                except httpx.TransportError:
                    self.out.unknown[vote_id] = cand
                    await asyncio.sleep(0.05)
                    continue
                if r.status_code == 200:
                    self.out.acknowledged[vote_id] = cand
                    self.out.acked_at.append((time.monotonic(), self.shard[token]))
                elif r.status_code >= 500:
                    self.out.unknown[vote_id] = cand
                    await asyncio.sleep(0.05)
                else:
                    self.out.rejected[r.status_code] += 1


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


async def _tallies(stack: Stack, url: str) -> tuple[dict[str, int], dict[str, int],
                                                    dict[str, str], int]:
    """Redis tallies, PostgreSQL tallies, the ledger (vote_id -> candidate), duplicates."""
    redis = store.connect(Settings(redis_url=url, redis_cluster=True))
    try:
        in_redis = store.sum_tallies(await store.shard_tallies(redis, CID, SHARDS))
    finally:
        await redis.aclose()
    conn = await asyncpg.connect(stack.pg_url)
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
    load = Load(stack)
    shard_master = await _shard_masters(stack.cluster.url)
    victim_port = next(port for port in sorted(set(shard_master.values()))
                       if port != stack.cluster.nodes[0].port)
    victim = next(n for n in stack.cluster.nodes if n.port == victim_port)
    hit = {s for s, port in shard_master.items() if port == victim_port}
    heir = next(n for n in stack.cluster.nodes if n is not victim
                and f"master_port:{victim.port}" in n.info("replication").split())
    survivor = next(n for n in stack.cluster.nodes if n is not victim and n in
                    stack.cluster.masters())

    tasks = [asyncio.create_task(load.client(i)) for i in range(CLIENTS)]
    try:
        await asyncio.sleep(PHASE)
        acked_before = len(load.out.acknowledged)
        killed_at = time.monotonic()
        victim.kill()  # SIGKILL: no goodbye to its replica or the cluster
        while "role:master" not in heir.info("replication"):
            assert time.monotonic() - killed_at < 30, "the replica was not promoted"
            await asyncio.sleep(0.05)
        stack.cluster.wait_ok(30, via=survivor)
        promoted_at = time.monotonic() - killed_at
        # the machine comes back (or is replaced) and rejoins as the new master's replica:
        # with replica acks, the promoted master accepts votes again once it has one
        victim.start()
        recovered_at = None
        while time.monotonic() - killed_at < 45:
            if any(t > killed_at and s in hit for t, s in load.out.acked_at):
                recovered_at = time.monotonic()
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(PHASE)
    finally:
        load.stop.set()
        await asyncio.gather(*tasks)
    out = load.out
    if recovered_at is None:
        log = (stack.dir / "serve.log").read_text(errors="replace")[-3000:]
        role = victim.info("replication")[:200]
        pytest.fail(f"votes on the dead master's slots never came back; old master: {role}\n"
                    f"web log:\n{log}")
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
    load = Load(stack)
    shard_master = await _shard_masters(stack.cluster.url)
    victim_port = next(port for port in sorted(set(shard_master.values()))
                       if port != stack.cluster.nodes[0].port)
    victim = next(n for n in stack.cluster.nodes if n.port == victim_port)
    hit = {s for s, port in shard_master.items() if port == victim_port}
    heir = next(n for n in stack.cluster.nodes if n is not victim
                and f"master_port:{victim.port}" in n.info("replication").split())
    survivor = next(n for n in stack.cluster.nodes if n is not victim and n in
                    stack.cluster.masters())

    tasks = [asyncio.create_task(load.client(i)) for i in range(CLIENTS)]
    try:
        await asyncio.sleep(PHASE)
        heir.signal(signal.SIGSTOP)
        stopped = True
        try:
            await _fill_replication(stack.cluster.url, victim_port)
            lag_from = len(load.out.unknown)
            await asyncio.sleep(PHASE)  # votes on the victim's slots: in its AOF, answered 503
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
                stack.cluster.cli(heir, "cluster", "failover", "takeover")
            assert time.monotonic() - killed_at < 30, "the replica was not promoted"
            await asyncio.sleep(0.05)
        stack.cluster.wait_ok(30, via=survivor)
        victim.start()  # with its AOF: the 503'd votes the promoted replica never got
        recovered = False
        while time.monotonic() - killed_at < 60:
            if any(t > killed_at and s in hit for t, s in load.out.acked_at):
                recovered = True
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(PHASE)
    finally:
        load.stop.set()
        await asyncio.gather(*tasks)
    assert recovered, "votes on the dead master's slots never came back"
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
