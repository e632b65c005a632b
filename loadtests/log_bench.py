"""What the transparency log costs (issue #26), beside table B.

* the flusher end to end with log positions off and on, ``ROUNDS`` interleaved rounds (off
  then on, on then off, ...: a drift of the machine weighs on both alike), each on a fresh
  backlog and empty tables; the ratio is of the medians, beside the median and range of the
  rounds' own on/off ratios (how far one round's figure can be trusted on a noisy machine);
  "on" also counts building the tree (the stored subtrees) and signing a head after the
  drain, which the flusher's log tick does in the same process;
* inclusion and consistency proofs a second, through the routes' own code (one connection,
  one after the other), on the tree just built;
* signing a head: the Ed25519 signature alone and the whole ``sign_head`` (root + sign +
  insert);
* proof sizes at 10 million votes, computed (no data needed: the shape of the tree).
"""

from __future__ import annotations

import random
import statistics
import time
from typing import Any

import asyncpg

from voting_service.ledger import merkle, transparency
from voting_service.redis.store import AnyRedis

from . import flusher_bench

TEN_MILLION = 10_000_000
LOG_TABLES = "log_state, log_records, log_nodes, log_trees, log_heads"
ROUNDS = 9
"""Rounds of off/on. On the shared two cores one round's own on/off ratio ranged from ×0.6 to
×2.0 (50,000-row drains of a quarter of a second): two rounds could land either side of the
0.8 goal; the table gives the medians of nine, and the spread of the rounds beside them."""
SEED = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"


async def _empty(pg_url: str) -> None:
    await flusher_bench.empty_tables(pg_url)
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute(f"TRUNCATE {LOG_TABLES}")
    finally:
        await conn.close()


async def _build_and_sign(pg_url: str, cid: str, config: transparency.LogConfig
                          ) -> tuple[float, float]:
    conn = await asyncpg.connect(pg_url)
    try:
        started = time.monotonic()
        async with conn.transaction():
            await transparency.build(conn, cid, config.pepper)
        built = time.monotonic() - started
        started = time.monotonic()
        head = await transparency.sign_head(conn, cid, config, force=True)
        assert head is not None
        return built, time.monotonic() - started
    finally:
        await conn.close()


async def _proofs(pg_url: str, cid: str, pepper: str, size: int, n: int) -> dict[str, Any]:
    conn = await asyncpg.connect(pg_url)
    rng = random.Random(26)
    try:
        started = time.monotonic()
        for _ in range(n):
            t = await transparency.tree(conn, cid, pepper)
            await transparency.inclusion_proof(t, rng.randrange(size), size)
        inclusion = n / (time.monotonic() - started)
        started = time.monotonic()
        for _ in range(n):
            t = await transparency.tree(conn, cid, pepper)
            first = rng.randrange(1, size)
            await transparency.consistency_proof(t, first, size)
        consistency = n / (time.monotonic() - started)
    finally:
        await conn.close()
    return {"inclusion_per_s": round(inclusion), "consistency_per_s": round(consistency),
            "proofs": n}


def _signing_us(config: transparency.LogConfig, n: int = 2000) -> float:
    assert config.key is not None
    message = transparency.head_message("c", TEN_MILLION, bytes(32), 0)
    started = time.perf_counter()
    for _ in range(n):
        config.key.sign(message)
    return (time.perf_counter() - started) / n * 1e6


def sizes_at(size: int = TEN_MILLION) -> dict[str, Any]:
    """Hashes in proofs of a tree of ``size`` leaves, and what the stored tree reads for
    them (nodes by key, leaves in 256-leaf chunks), from the tree's shape alone."""
    rng = random.Random(10)
    lengths, consistency, reads = [], [], []
    stored = transparency.Stored(None, "c", "", size // transparency.CHUNK * transparency.CHUNK)
    for index in [0, size // 2, size - 1, *(rng.randrange(size) for _ in range(200))]:
        lengths.append(len(merkle.inclusion(lambda a, b: merkle.EMPTY, index, size)))
        nodes: set[tuple[int, int]] = set()
        chunks: set[int] = set()
        for start, end in transparency._needed(merkle.inclusion, index, size):
            stored._plan(start, end, nodes, chunks)
        reads.append((len(nodes), len(chunks)))
    for first in [1, size // 2, size - 1, *(rng.randrange(1, size) for _ in range(200))]:
        consistency.append(len(merkle.consistency(lambda a, b: merkle.EMPTY, first, size)))
    return {"size": size, "inclusion_hashes_max": max(lengths),
            "inclusion_bytes_max": 32 * max(lengths),
            "consistency_hashes_max": max(consistency),
            "consistency_bytes_max": 32 * max(consistency),
            "inclusion_reads_nodes_max": max(r[0] for r in reads),
            "inclusion_reads_chunks_max": max(r[1] for r in reads)}


async def log_phase(redis: AnyRedis, reader: AnyRedis, pg_url: str, cid: str, shards: int,
                    entries: list[flusher_bench.Entry], pepper: str, max_seconds: float,
                    rounds: int = ROUNDS, log: Any = print) -> dict[str, Any]:
    config = transparency.LogConfig(pepper, transparency.signing_key(SEED))
    runs: dict[str, list[float]] = {"off": [], "on": [], "on_with_tree": []}
    extra: dict[str, list[float]] = {"build_s": [], "sign_head_s": []}
    cpu: dict[str, list[float]] = {"off": [], "on": []}
    """CPU µs a row of the flusher's process and its PostgreSQL backend."""
    for r in range(rounds):  # the last round ends "on": the proofs read its tree
        for mode in ("off", "on") if (rounds - 1 - r) % 2 == 0 else ("on", "off"):
            await _empty(pg_url)
            await flusher_bench.fill_backlog(redis, cid, entries)
            got = await flusher_bench.flusher_drain(redis, pg_url, cid, shards, max_seconds,
                                                    reader, log_positions=mode == "on")
            runs[mode].append(got.rate)
            cpu_row = sum(got.notes["cpu_us_per_row"].values())
            cpu[mode].append(cpu_row)
            line = (f"B2 round {r + 1}: log {mode}, {got.rate:,.0f} rows/s, "
                    f"{cpu_row:.2f} CPU µs a row")
            if mode == "on":
                built, signed = await _build_and_sign(pg_url, cid, config)
                extra["build_s"].append(built)
                extra["sign_head_s"].append(signed)
                runs["on_with_tree"].append(got.rows / (got.seconds + built + signed))
                line += f"; tree {built:.2f} s, head {signed * 1000:.1f} ms"
            log(line)
    proofs = await _proofs(pg_url, cid, pepper, len(entries), 500)  # on the last tree built
    batch = round(len(entries) / max(got.notes["batches"], 1))
    pg_only: dict[str, list[float]] = {"off": [], "on": []}
    wal: dict[str, list[float]] = {"off": [], "on": []}
    for r in range(rounds):
        for mode in ("off", "on") if r % 2 == 0 else ("on", "off"):
            await _empty(pg_url)
            tx = await flusher_bench.copy_marks(pg_url, cid, entries, batch, max_seconds,
                                                log_positions=mode == "on")
            pg_only[mode].append(tx.rate)
            wal[mode].append(tx.notes["wal_bytes_per_row"])
        log(f"B2 round {r + 1}, PostgreSQL only: off {pg_only['off'][-1]:,.0f}, "
            f"on {pg_only['on'][-1]:,.0f} rows/s")
    await _empty(pg_url)
    med = {k: statistics.median(v) for k, v in runs.items()}
    paired = [on / off for on, off in zip(runs["on"], runs["off"], strict=True)]
    quartiles = statistics.quantiles(paired, n=4) if len(paired) > 1 else paired * 3
    pg_med = {k: statistics.median(v) for k, v in pg_only.items()}
    return {
        "rows": len(entries), "rounds": rounds,
        "off_rows_per_s": round(med["off"]), "on_rows_per_s": round(med["on"]),
        "on_with_tree_rows_per_s": round(med["on_with_tree"]),
        "ratio": round(med["on"] / med["off"], 2),
        "round_ratios": [round(x, 3) for x in paired],
        "round_ratio_quartiles": [round(x, 2) for x in quartiles],
        "best_ratio": round(max(runs["on"]) / max(runs["off"]), 2),
        "cpu_us_per_row_off": round(statistics.median(cpu["off"]), 2),
        "cpu_us_per_row_on": round(statistics.median(cpu["on"]), 2),
        "pg_only_rows_per_tx": batch,
        "pg_only_off_rows_per_s": round(pg_med["off"]),
        "pg_only_on_rows_per_s": round(pg_med["on"]),
        "pg_only_ratio": round(pg_med["on"] / pg_med["off"], 2),
        "wal_bytes_per_row_off": statistics.median(wal["off"]),
        "wal_bytes_per_row_on": statistics.median(wal["on"]),
        "ratio_with_tree": round(med["on_with_tree"] / med["off"], 2),
        "tree_build_rows_per_s": round(len(entries) / statistics.median(extra["build_s"])),
        "sign_head_ms": round(statistics.median(extra["sign_head_s"]) * 1000, 1),
        "ed25519_sign_us": round(_signing_us(config), 1),
        **proofs, "at_10m": sizes_at(),
    }


def render(r: dict[str, Any]) -> str:
    z = r["at_10m"]
    return "\n".join([
        "\nB2. Transparency log: the flusher end to end with log positions off / on "
        f"({r['rows']:,} rows, median of {r['rounds']} interleaved rounds)",
        f"  log off            {r['off_rows_per_s']:>10,} rows/s",
        f"  log on             {r['on_rows_per_s']:>10,} rows/s   ×{r['ratio']:.2f} of off"
        " (goal ≥ 0.8)",
        *([f"  the rounds' own on/off: middle half ×{r['round_ratio_quartiles'][0]:.2f}–"
           f"×{r['round_ratio_quartiles'][2]:.2f}, all ×{min(r['round_ratios']):.2f}–"
           f"×{max(r['round_ratios']):.2f} (how far one round can be off); best round on "
           f"/ best off ×{r['best_ratio']:.2f}"]
          if r.get("round_ratio_quartiles") else []),
        *([f"  PostgreSQL only     off {r['pg_only_off_rows_per_s']:,}, on "
           f"{r['pg_only_on_rows_per_s']:,} rows/s   ×{r['pg_only_ratio']:.2f} (the same "
           f"transactions of {r['pg_only_rows_per_tx']:,} rows, encoded beforehand: what the "
           "log costs PostgreSQL)"] if "pg_only_ratio" in r else []),
        *([f"  WAL a row           off {r['wal_bytes_per_row_off']:.0f}, on "
           f"{r['wal_bytes_per_row_on']:.0f} bytes (the same whatever the machine's speed)"]
          if "wal_bytes_per_row_on" in r else []),
        f"  on + tree + head   {r['on_with_tree_rows_per_s']:>10,} rows/s   "
        f"×{r['ratio_with_tree']:.2f} (building the stored subtrees and signing a head"
        " counted as if serial with the drain)",
        f"  tree building alone {r['tree_build_rows_per_s']:,} leaves/s (leaf hashes in SQL)",
        f"  proofs, one connection: {r['inclusion_per_s']:,} inclusion/s, "
        f"{r['consistency_per_s']:,} consistency/s",
        f"  signing a head: {r['sign_head_ms']} ms in all (root, Ed25519, insert); "
        f"Ed25519 alone {r['ed25519_sign_us']} µs",
        f"  at {z['size']:,} votes: inclusion proof ≤ {z['inclusion_hashes_max']} hashes "
        f"({z['inclusion_bytes_max']} bytes), consistency ≤ {z['consistency_hashes_max']} "
        f"hashes ({z['consistency_bytes_max']} bytes); an inclusion proof reads ≤ "
        f"{z['inclusion_reads_nodes_max']} stored nodes and ≤ "
        f"{z['inclusion_reads_chunks_max']} chunk(s) of 256 leaves",
    ])
