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
from voting_service.vote.store import AnyRedis

from . import flusher_bench

TEN_MILLION = 10_000_000
LOG_TABLES = "log_state, log_records, log_nodes, log_trees, log_heads"
ROUNDS = 7
"""Rounds of off/on: two rounds put the ratio within ±0.1 of itself from one run to the next
on the shared two cores; the median of seven moved by a few hundredths."""
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
    for r in range(rounds):
        for mode in ("off", "on") if r % 2 == 0 else ("on", "off"):
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
    proofs = await _proofs(pg_url, cid, pepper, len(entries), 500)
    await _empty(pg_url)
    med = {k: statistics.median(v) for k, v in runs.items()}
    paired = [on / off for on, off in zip(runs["on"], runs["off"], strict=True)]
    return {
        "rows": len(entries), "rounds": rounds,
        "off_rows_per_s": round(med["off"]), "on_rows_per_s": round(med["on"]),
        "on_with_tree_rows_per_s": round(med["on_with_tree"]),
        "ratio": round(med["on"] / med["off"], 2),
        "round_ratios": [round(x, 3) for x in paired],
        "round_ratio_median": round(statistics.median(paired), 2),
        "cpu_us_per_row_off": round(statistics.median(cpu["off"]), 2),
        "cpu_us_per_row_on": round(statistics.median(cpu["on"]), 2),
        "cpu_ratio": round(statistics.median(cpu["off"]) / statistics.median(cpu["on"]), 2),
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
        *([f"  rounds' own on/off: median ×{r['round_ratio_median']:.2f}, "
           f"×{min(r['round_ratios']):.2f}–×{max(r['round_ratios']):.2f}"]
          if r.get("round_ratios") else []),
        *([f"  CPU a row (flusher + its PostgreSQL backend): off {r['cpu_us_per_row_off']} µs,"
           f" on {r['cpu_us_per_row_on']} µs → ×{r['cpu_ratio']:.2f} (rows/s the same CPU"
           " buys; steadier than wall time on shared cores)"] if "cpu_ratio" in r else []),
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
