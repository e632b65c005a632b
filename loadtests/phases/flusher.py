"""Table B (into PostgreSQL) and B2 (the transparency log): the flusher end to end on a
backlog, against its PostgreSQL transactions alone and a plain ``executemany``.

The measuring is ``flusher_bench.py``'s and ``log_bench.py``'s; this phase sets up their
Valkey and backlog and orders the rows.
"""

from __future__ import annotations

import asyncio
from typing import Any

from voting_service import embedded

from .. import dataset, flusher_bench, log_bench
from ..context import SHARDS, Context, redis_client
from ..report import table

GOAL_FLUSH = 100_000


async def run(ctx: Context) -> dict[str, Any]:
    cid = "flushbench"
    valkey = embedded.ValkeyServer(ctx.res.workdir / "valkey-flusher", appendfsync="always")
    ctx.res.servers.append(valkey)
    await asyncio.to_thread(valkey.start)
    redis = redis_client(valkey.url)
    out = []
    try:
        voters = dataset.synthetic_voter_ids(max(ctx.o.backlog // 10, 1), ctx.pepper, cid)
        entries = flusher_bench.ledger_entries(ctx.o.backlog, voters, ctx.o.candidates,
                                               ctx.ips, SHARDS, flusher_bench.today())
        await redis.hset("cfg:campaigns", cid, "{}")  # the flusher's list of campaigns
        took = await flusher_bench.fill_backlog(redis, cid, entries)
        ctx.log(f"B: {len(entries)} ledger entries written into {SHARDS} streams "
                f"in {took:.1f}s; flusher drain")
        await flusher_bench.empty_tables(ctx.pg_url)
        reader = redis_client(valkey.url)
        try:
            flushed = await flusher_bench.flusher_drain(redis, ctx.pg_url, cid, SHARDS,
                                                        ctx.o.db_seconds * 2, reader)
        finally:
            await reader.aclose()
        out.append(flushed.as_dict())
        batch = int(flushed.notes.get("rows_per_batch") or 2000 * SHARDS)
        ctx.log(f"B: PostgreSQL only, {batch} rows a transaction")
        await flusher_bench.empty_tables(ctx.pg_url)
        out.append((await flusher_bench.copy_marks(ctx.pg_url, cid, entries, batch,
                                                   ctx.o.db_seconds)).as_dict())
        ctx.log(f"B: executemany, {batch} rows a transaction")
        await flusher_bench.empty_tables(ctx.pg_url)
        out.append((await flusher_bench.executemany(
            ctx.pg_url, flusher_bench.records(cid, entries), batch,
            ctx.o.db_seconds)).as_dict())
        await flusher_bench.empty_tables(ctx.pg_url)
        ctx.log("B2: the transparency log, off and on")
        reader = redis_client(valkey.url)
        try:
            logged = ctx.keep("log", await log_bench.log_phase(
                redis, reader, ctx.pg_url, cid, SHARDS, entries, ctx.pepper,
                ctx.o.db_seconds * 2, log=ctx.log))
        finally:
            await reader.aclose()
    finally:
        await redis.aclose()
        valkey.stop()
        ctx.res.servers.remove(valkey)
    return {"log": logged, "flusher": out}


def render(ph: dict[str, Any]) -> str:
    """Table B (into PostgreSQL), then the transparency log's (``log_bench.render``)."""
    out = []
    if "flusher" in ph:
        rows = [[f["method"], f["rows"], f["seconds"], f["rows_per_s"],
                 "yes" if f["rows_per_s"] >= GOAL_FLUSH else "no",
                 "" if f["complete"] else "time bound hit"] for f in ph["flusher"]]
        note = ("the flusher row is end to end (Redis streams in, committed ledger and tallies, "
                "XTRIM out); the other two are PostgreSQL only, from rows built beforehand")
        first = ph["flusher"][0]
        if first.get("stage_seconds"):
            parts = ", ".join(f"{k} {v:.2f} s" for k, v in first["stage_seconds"].items())
            note += (f"\nflusher: {first.get('batches')} passes of ~{first.get('rows_per_batch')} "
                     f"rows; time in {parts} (collect = waiting for reads not "
                     "yet in; write = marks + COPY + tallies + commit)")
        out.append(table(
            "\nB. Into PostgreSQL: the same ledger rows, three ways (empty tables each time)",
            ["method", "rows", "s", "rows/s", f"≥ {GOAL_FLUSH:,}", ""], rows, note))
    if "log" in ph:
        out.append(log_bench.render(ph["log"]))
    return "\n".join(out)
