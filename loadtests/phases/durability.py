"""Table B (cost of durability): the vote endpoint, 1 worker, on a fresh Valkey each row —
``appendfsync everysec`` (the service adds WAITAOF), AOF off (full runs), and a master with
one replica answering after the master's fsync alone or also the replica's."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from voting_service import embedded
from voting_service.ledger import campaigns, durability

from ..context import Context
from ..loadgen import LoadResult
from ..report import pct, table


async def run(ctx: Context) -> dict[str, Any]:
    rows: list[dict[str, Any]] = ctx.keep("durability", [])
    modes = [("everysec", True)] + ([("no", False)] if ctx.o.weak_reference else [])
    for fsync, aof in modes:
        label = f"appendfsync {fsync}" if aof else "appendonly no"
        valkey = embedded.ValkeyServer(ctx.res.workdir / f"valkey-{fsync}",
                                       appendfsync="everysec" if not aof else fsync,
                                       appendonly=aof)
        ctx.res.servers.append(valkey)
        await asyncio.to_thread(valkey.start)
        try:
            async with ctx.stores(valkey.url) as (conn, redis):
                await campaigns.push_all_snapshots(conn, redis)
                found = await durability.check(redis)
            extra_env = {} if found.safe else {"VOTING_ACCEPT_WEAK_DURABILITY": "1"}
            env = ctx.service_env(valkey.url, **extra_env)
            result, extra = await ctx.vote_phase(f"durability-{fsync}", valkey.url, env, 1, 0)
            rows.append(_row(ctx, label, found, result, extra, weak=bool(extra_env)))
        finally:
            valkey.stop()
            ctx.res.servers.remove(valkey)
    for run_, acks in enumerate((0, 1, 0, 1)):  # twice each, interleaved: a noisy machine
        await _replica_acks_row(ctx, rows, acks, run_)
    return {"durability": rows}


def _row(ctx: Context, label: str, found: durability.Durability, result: LoadResult,
         extra: dict[str, Any], *, weak: bool) -> dict[str, Any]:
    ctx.log(f"{label}: {result.rps:,.0f} votes/s ({found.reason})")
    return {"valkey": label, "mode": found.reason, "safe": found.safe,
            "waitaof": found.waitaof, "vote": result.as_dict(), "weak_flag": weak, **extra}


async def _replica_acks_row(ctx: Context, rows: list[dict[str, Any]], acks: int,
                            run: int) -> None:
    """The vote endpoint on a master with one replica (both AOF always), answering after
    the master's fsync only (0) or also a replica's (1, ``VOTING_REDIS_REPLICA_ACKS``)."""
    master = embedded.ValkeyServer(ctx.res.workdir / f"valkey-acks{run}-m")
    ctx.res.servers.append(master)
    await asyncio.to_thread(master.start)
    replica = embedded.ValkeyServer(ctx.res.workdir / f"valkey-acks{run}-r",
                                    replica_of=master.port)
    ctx.res.servers.append(replica)
    await asyncio.to_thread(replica.start)
    try:
        await asyncio.to_thread(replica.wait_replica_ready)
        async with ctx.stores(master.url) as (conn, redis):
            await campaigns.push_all_snapshots(conn, redis)
            deadline = time.monotonic() + 30
            while not (found := await durability.check(redis, acks)).safe:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"replica never acknowledged: {found.reason}")
                await asyncio.sleep(0.2)
        env = ctx.service_env(master.url, VOTING_REDIS_REPLICA_ACKS=str(acks))
        result, extra = await ctx.vote_phase(f"replica-acks-{acks}-{run}", master.url, env,
                                             1, 0)
        rows.append(_row(ctx, f"always + 1 replica, replica acks {acks}", found, result,
                         extra, weak=False))
    finally:
        for server in (replica, master):
            server.stop()
            ctx.res.servers.remove(server)


def render(ph: dict[str, Any]) -> str:
    """The durability table; its first row is table A's 1-worker vote (appendfsync always)."""
    if "durability" not in ph:
        return ""
    rows = []
    base = next((r for r in ph.get("http", []) if r["workers"] == 1), None)
    if base:
        v = base["vote"]
        rows.append(["appendfsync always (= A, 1 worker)", "AOF with appendfsync always",
                     v["rps"], v["p50_ms"], v["p99_ms"], pct(v["ok_fraction"])])
    for r in ph["durability"]:
        v = r["vote"]
        mode = r["mode"] + (" [VOTING_ACCEPT_WEAK_DURABILITY=1]" if r["weak_flag"] else "")
        rows.append([r["valkey"], mode, v["rps"], v["p50_ms"], v["p99_ms"],
                     pct(v["ok_fraction"])])
    return table(
        "\nB. Cost of durability: vote endpoint, 1 worker, fresh Valkey each",
        ["valkey", "mode the service ran in", "votes/s", "p50 ms", "p99 ms", "200s"], rows)
