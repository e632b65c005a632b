"""Fault tests (issue #3): votes flow from concurrent clients while real processes are
killed, paused and restarted; afterwards no acknowledged vote is lost and none is counted
twice:  acknowledged <= counted <= acknowledged + unknown, per candidate.

The short form runs in CI; ``FAULT_SECONDS`` stretches each load phase for a long run.
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
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.conftest import campaign_payload
from voting_service import embedded
from voting_service.settings import Settings
from voting_service.vote import keys, store
from voting_service.vote.identity import VoterTokens

pytestmark = pytest.mark.faults

PHASE = float(os.environ.get("FAULT_SECONDS", "2.5"))
CLIENTS = 12
VOTERS = 600
SHARDS = 8
SECRET = "fault-secret-key-0123456789"
PEPPER = "fault-pepper-0123456789"


@dataclass
class Outcomes:
    acknowledged: dict[str, str] = field(default_factory=dict)  # vote_id -> candidate
    unknown: dict[str, str] = field(default_factory=dict)
    rejected: Counter[int] = field(default_factory=Counter)
    fast_503: int = 0
    slow_failures: int = 0


@dataclass
class Stack:
    dir: Path
    valkey: embedded.ValkeyServer
    pg: embedded.PostgresServer
    env: dict[str, str]
    port: int
    web: subprocess.Popen[bytes] | None = None
    flusher: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def spawn(self, *args: str) -> subprocess.Popen[bytes]:
        log = open(self.dir / f"{args[0]}.log", "ab")  # noqa: SIM115 - lives with the process
        return subprocess.Popen([sys.executable, "-m", "voting_service.cli", *args],
                                env=self.env, stdout=log, stderr=log, start_new_session=True)

    def start_flusher(self) -> None:
        self.flusher = self.spawn("flusher", "--name", "fault-flusher")

    def stop_all(self) -> None:
        for proc in (self.web, self.flusher):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.valkey.stop()
        self.pg.stop()


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
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    valkey = embedded.ValkeyServer(tmp_path / "valkey").start()
    pg = embedded.PostgresServer(tmp_path / "pg").start()
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    env.update({
        "REDIS_URL": valkey.url, "DATABASE_URL": pg.url, "VOTING_SECRET_KEY": SECRET,
        "VOTING_PEPPER": PEPPER, "VOTING_SHARDS": str(SHARDS),
        "VOTING_ADMIN_TOKENS": "admin:fault-admin-token-0123456789",
    })
    s = Stack(tmp_path, valkey, pg, env, embedded.free_port())
    try:
        for args in (["migrate"],):
            subprocess.run([sys.executable, "-m", "voting_service.cli", *args], env=env,
                           check=True, capture_output=True)
        payload = campaign_payload(candidates=20, rules={"votes_per_day": 1000,
                                                         "per_candidate_per_day": 1000})
        (tmp_path / "campaign.json").write_text(json.dumps(payload))
        subprocess.run([sys.executable, "-m", "voting_service.cli", "campaign", "load",
                        str(tmp_path / "campaign.json")], env=env, check=True,
                       capture_output=True)
        s.web = s.spawn("serve", "--port", str(s.port))
        s.start_flusher()
        await _wait_ready(s.base)
        yield s
    finally:
        s.stop_all()


class Load:
    """Concurrent clients voting until stopped; every answer classified."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        tokens = VoterTokens([SECRET], PEPPER)
        self.tokens = [tokens.issue("t2026") for _ in range(VOTERS)]
        self.out = Outcomes()
        self.stop = asyncio.Event()

    async def client(self, seed: int) -> None:
        rng = random.Random(seed)
        async with httpx.AsyncClient(base_url=self.stack.base, timeout=3.0) as http:
            while not self.stop.is_set():
                vote_id = uuid.uuid4().hex
                cand = f"c{rng.randint(1, 20):03d}"
                started = time.monotonic()
                try:
                    r = await http.post(
                        "/api/v1/campaigns/t2026/votes",
                        json={"candidate_id": cand, "vote_id": vote_id},
                        headers={"X-Voter-Token": rng.choice(self.tokens)},
                    )
                except httpx.TransportError as exc:
                    self.out.unknown[vote_id] = cand
                    if isinstance(exc, httpx.TimeoutException):
                        self.out.slow_failures += 1
                    await asyncio.sleep(0.05)
                    continue
                if r.status_code == 200:
                    self.out.acknowledged[vote_id] = cand
                elif r.status_code >= 500:
                    self.out.unknown[vote_id] = cand
                    if r.status_code == 503 and time.monotonic() - started < 2.0:
                        self.out.fast_503 += 1
                    else:
                        self.out.slow_failures += 1
                    await asyncio.sleep(0.05)
                else:
                    self.out.rejected[r.status_code] += 1

    async def run_around(self, fault: Callable[[], Awaitable[None]]) -> Outcomes:
        tasks = [asyncio.create_task(self.client(i)) for i in range(CLIENTS)]
        try:
            await asyncio.sleep(PHASE)
            await fault()
            await asyncio.sleep(PHASE)
        finally:
            self.stop.set()
            await asyncio.gather(*tasks)
        return self.out


async def drain_and_check(stack: Stack, out: Outcomes) -> None:
    """Wait for the flusher to empty the streams, then check the ledger invariant."""
    settings = Settings(redis_url=stack.valkey.url)
    redis = store.connect(settings)
    try:
        deadline = time.monotonic() + 90
        while True:
            backlog = sum([await redis.xlen(keys.ledger("t2026", s)) for s in range(SHARDS)])
            if backlog == 0:
                break
            assert time.monotonic() < deadline, f"flusher did not drain: backlog {backlog}"
            await asyncio.sleep(0.3)
        redis_tallies = store.sum_tallies(await store.shard_tallies(redis, "t2026", SHARDS))
    finally:
        await redis.aclose()

    conn = await asyncpg.connect(stack.pg.url)
    try:
        ledger = {r["vote_id"]: r["candidate_id"] for r in await conn.fetch(
            "SELECT vote_id, candidate_id FROM votes WHERE campaign_id = 't2026'")}
        rows = await conn.fetch("SELECT vote_id, count(*) AS n FROM votes GROUP BY vote_id"
                                " HAVING count(*) > 1")
        pg_tallies = {r["candidate_id"]: r["votes"] for r in await conn.fetch(
            "SELECT candidate_id, votes FROM tallies WHERE campaign_id = 't2026'")
            if r["votes"]}
    finally:
        await conn.close()

    assert out.acknowledged, "no vote was acknowledged: the load did not run"
    assert rows == [], "a vote is in the ledger twice"
    missing = set(out.acknowledged) - set(ledger)
    assert not missing, f"{len(missing)} acknowledged votes lost"
    unexplained = set(ledger) - set(out.acknowledged) - set(out.unknown)
    assert not unexplained, f"{len(unexplained)} votes counted that nobody cast"
    ack = Counter(out.acknowledged.values())
    unknown = Counter(out.unknown.values())
    counted = Counter(ledger.values())
    for cand in set(ack) | set(counted):
        assert ack[cand] <= counted[cand] <= ack[cand] + unknown[cand], cand
    assert dict(counted) == pg_tallies
    assert redis_tallies == pg_tallies

    result = subprocess.run([sys.executable, "-m", "voting_service.cli", "reconcile"],
                            env=stack.env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no drift" in result.stdout


async def test_redis_sigkill_and_restart(stack: Stack) -> None:
    async def fault() -> None:
        stack.valkey.kill()
        await asyncio.sleep(0.5)
        stack.valkey.start()  # same data directory and port: AOF replays every write

    out = await Load(stack).run_around(fault)
    assert out.unknown, "the outage should have been visible to clients"
    await drain_and_check(stack, out)


async def test_flusher_sigkill_mid_batch_and_restart(stack: Stack) -> None:
    async def fault() -> None:
        for _ in range(3):
            assert stack.flusher is not None
            stack.flusher.send_signal(signal.SIGKILL)
            stack.flusher.wait()
            await asyncio.sleep(0.3)
            stack.start_flusher()
            await asyncio.sleep(0.5)

    out = await Load(stack).run_around(fault)
    assert not out.unknown, "votes do not depend on the flusher"
    await drain_and_check(stack, out)


async def test_postgres_immediate_stop_and_restart(stack: Stack) -> None:
    async def fault() -> None:
        stack.pg.pg_ctl_stop("immediate")
        await asyncio.sleep(3)
        stack.pg.start()  # crash recovery on the same data directory and port

    out = await Load(stack).run_around(fault)
    assert not out.unknown, "votes keep being accepted while PostgreSQL is down"
    await drain_and_check(stack, out)


async def test_redis_sigstop_gives_fast_503_then_recovers(stack: Stack) -> None:
    async def fault() -> None:
        stack.valkey.signal(signal.SIGSTOP)
        await asyncio.sleep(3)
        stack.valkey.signal(signal.SIGCONT)

    load = Load(stack)
    out = await load.run_around(fault)
    assert out.fast_503 > 0, "clients should get 503 while Redis is paused"
    assert out.slow_failures == 0, "no request may hang past the 1 s contract (plus slack)"
    await drain_and_check(stack, out)

