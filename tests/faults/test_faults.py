"""Fault tests (issue #3): votes flow from concurrent clients while real processes are
killed, paused and restarted; afterwards no acknowledged vote is lost and none is counted
twice:  acknowledged <= counted <= acknowledged + unknown, per candidate.

The short form runs in CI; ``FAULT_SECONDS`` stretches each load phase for a long run.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest

from tests.faults.support import CID, CLIENTS, PHASE, SHARDS, Load, Outcomes, started
from voting_service import embedded
from voting_service.redis import keys, store
from voting_service.settings import Settings
from voting_service.stack import Stack

pytestmark = pytest.mark.faults

VOTERS = 600
SECRET = "fault-secret-key-0123456789"
PEPPER = "fault-pepper-0123456789"


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    s = Stack(tmp_path, secret_key=SECRET, pepper=PEPPER, shards=SHARDS,
              admin_tokens="admin:fault-admin-token-0123456789")
    try:
        yield await started(s, "fault-flusher")
    finally:
        s.stop()


def servers(stack: Stack) -> tuple[embedded.ValkeyServer, embedded.PostgresServer]:
    """The single node and the PostgreSQL the fixture's stack started."""
    assert stack.valkey is not None and stack.pg is not None
    return stack.valkey, stack.pg


async def run_around(stack: Stack, fault: Callable[[Load], Awaitable[None]]) -> Outcomes:
    """``PHASE`` s of votes, the fault (which may watch the load), ``PHASE`` s more."""
    load = Load(stack, VOTERS)
    async with load.voting() as out:
        await asyncio.sleep(PHASE)
        await fault(load)
        await asyncio.sleep(PHASE)
    return out


async def drain_and_check(stack: Stack, out: Outcomes) -> None:
    """Wait for the flusher to empty the streams, then check the ledger invariant."""
    settings = Settings(redis_url=stack.redis_url)
    redis = store.connect(settings)
    try:
        deadline = time.monotonic() + 90
        while True:
            backlog = sum([await redis.xlen(keys.ledger(CID, s)) for s in range(SHARDS)])
            if backlog == 0:
                break
            assert time.monotonic() < deadline, f"flusher did not drain: backlog {backlog}"
            await asyncio.sleep(0.3)
        redis_tallies = store.sum_tallies(await store.shard_tallies(redis, CID, SHARDS))
    finally:
        await redis.aclose()

    conn = await asyncpg.connect(stack.database_url)
    try:
        ledger = {r["vote_id"]: r["candidate_id"] for r in await conn.fetch(
            "SELECT vote_id, candidate_id FROM votes WHERE campaign_id = $1", CID)}
        rows = await conn.fetch("SELECT vote_id, count(*) AS n FROM votes GROUP BY vote_id"
                                " HAVING count(*) > 1")
        pg_tallies = {r["candidate_id"]: r["votes"] for r in await conn.fetch(
            "SELECT candidate_id, votes FROM tallies WHERE campaign_id = $1", CID)
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

    result = stack.cli("reconcile")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no drift" in result.stdout


async def test_redis_sigkill_and_restart(stack: Stack) -> None:
    valkey, _ = servers(stack)

    async def fault(load: Load) -> None:
        valkey.kill()
        await load.until(lambda out: bool(out.unknown), 30, "clients seeing the outage")
        valkey.start()  # same data directory and port: AOF replays every write

    out = await run_around(stack, fault)
    assert out.unknown, "the outage should have been visible to clients"
    await drain_and_check(stack, out)


async def test_flusher_sigkill_mid_batch_and_restart(stack: Stack) -> None:
    async def fault(load: Load) -> None:
        for _ in range(3):
            stack.flushers[-1].kill()
            await asyncio.sleep(0.3)
            stack.start_flusher("fault-flusher")
            await asyncio.sleep(0.5)

    out = await run_around(stack, fault)
    assert not out.unknown, "votes do not depend on the flusher"
    await drain_and_check(stack, out)


async def test_postgres_immediate_stop_and_restart(stack: Stack) -> None:
    _, pg = servers(stack)

    async def fault(load: Load) -> None:
        pg.pg_ctl_stop("immediate")
        down = len(load.out.acknowledged)
        # votes answered while PostgreSQL is down: ten rounds of every client
        await load.until(lambda out: len(out.acknowledged) >= down + 10 * CLIENTS, 30,
                         "votes acknowledged while PostgreSQL is down")
        pg.start()  # crash recovery on the same data directory and port

    out = await run_around(stack, fault)
    assert not out.unknown, "votes keep being accepted while PostgreSQL is down"
    await drain_and_check(stack, out)


async def test_redis_sigstop_gives_fast_503_then_recovers(stack: Stack) -> None:
    valkey, _ = servers(stack)

    async def fault(load: Load) -> None:
        valkey.signal(signal.SIGSTOP)
        try:  # every client has had two paused votes answered (a hung one never is)
            await load.until(lambda out: out.fast_503 + out.slow_failures >= 2 * CLIENTS, 30,
                             "answers while Redis is paused")
        finally:
            valkey.signal(signal.SIGCONT)

    out = await run_around(stack, fault)
    assert out.fast_503 > 0, "clients should get 503 while Redis is paused"
    assert out.slow_failures == 0, "no request may hang past the 1 s contract (plus slack)"
    await drain_and_check(stack, out)
