"""Tables A (Redis alone) and A2 (Valkey instructions): the vote's scripts straight into
Valkey through ``pipeline.Pipeline``, no HTTP, this checkout beside ``--baseline``.

Each row is one ``redis_ceiling.py`` run in a process of its own that imports the package of
the checkout it measures (this one, or ``--baseline`` exported from git).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from voting_service import embedded

from .. import dataset, instructions
from ..context import SHARDS, Context
from ..procs import REPO, python
from ..report import pct, table

GOAL_VALKEY_US = 25.0
"""Valkey CPU µs per vote on a single node with appendfsync always (issue 28; Cluster: 30)."""
CEILING_GRIND_VOTES = 3000
"""Votes of one callgrind row (table A2): enough that connecting and INFO are noise."""


async def run(ctx: Context) -> dict[str, Any]:
    """Table A: the scripts straight into Valkey, metered per vote, the package of this
    checkout against ``--baseline`` (the vote path before issue 28) in the same run, two
    interleaved rounds each: a single node (one call a vote; and ``cast_vote.lua`` alone)
    and a 3-master Cluster (two calls a vote, in two slots), all ``appendfsync always``.
    Two workloads: ``full``, rounds in which every voter casts one vote (so nearly every
    vote is its voter's first of the day: a new quota hash and its expiry, the dearest
    kind); ``row``, each voter's ten votes one after the other from its own address, as a
    citizen votes on the page (a day's first vote, then nine into the hash it made)."""
    workloads = {"full": _workload(ctx, "luaceiling", in_a_row=False),
                 "row": _workload(ctx, "luarow", in_a_row=True)}
    workloads["cast_vote"] = workloads["full"]  # the same votes, the IP caps at 0
    variants = [("after", REPO)]
    if ctx.o.baseline:
        base = ctx.res.workdir / "baseline"
        await asyncio.to_thread(_export_checkout, ctx.o.baseline, base)
        variants.insert(0, ("before", base))
    # every (variant, round, mode, backend) run gets fresh (voter, candidate) pairs
    modes = {"single": ("full", "cast_vote", "row"), "cluster": ("full", "row")}
    runs = [(v, r, m, b) for b in ("single", "cluster") for r in range(2)
            for v in variants for m in modes[b]]
    grinding = ctx.o.instructions and instructions.available()
    grinds = [(v, m, b) for b in ("single", "cluster") for m in modes[b] for v in variants]
    slices = _Slices(workloads, grinds if grinding else [], CEILING_GRIND_VOTES + 300,
                     [m for _, _, m, _ in runs])
    out: list[dict[str, Any]] = ctx.keep("ceiling", [])
    cluster: embedded.ValkeyCluster | None = None
    try:
        for i, ((variant, path), rnd, mode, backend) in enumerate(runs):
            if backend == "cluster" and cluster is None:
                cluster = await asyncio.to_thread(_start_cluster, ctx.res.workdir)
                ctx.log(f"A: 3-master cluster on {cluster.url} (appendfsync always)")
            url = cluster.url if cluster else ctx.valkey_url
            masters = [n.url for n in cluster.masters()] if cluster else [url]
            spec = {"url": url, "cluster": cluster is not None, "masters": masters,
                    "campaign": workloads[mode][0], "plan": slices.run(mode),
                    "shards": SHARDS, "concurrency": ctx.o.ceiling_concurrency,
                    "seconds": ctx.o.ceiling_seconds, "full": mode != "cast_vote",
                    "mode": mode}
            ctx.log(f"A: Redis ceiling, {variant} {backend} {mode} round {rnd + 1}")
            row = await _ceiling_run(ctx.res.workdir / f"ceiling-{i}.json", path, spec)
            row.update(variant=variant, backend=backend, round=rnd + 1)
            out.append(row)
    finally:
        if cluster is not None:
            await asyncio.to_thread(cluster.stop)
    result: dict[str, Any] = {"ceiling": out}
    if grinding:
        result["ceiling_instructions"] = await _instructions(ctx, workloads, grinds, slices)
    return result


Workload = tuple[dict[str, Any], list[tuple[str, str, str]]]
"""A campaign and its votes, ``(voter id, candidate id, address)``."""


def _workload(ctx: Context, cid: str, *, in_a_row: bool) -> Workload:
    """The campaign ``cid`` and its voters' ten votes each: in rounds, each from the next
    address of the pool; in a row, each voter from an address of its own."""
    voters = dataset.synthetic_voter_ids(ctx.o.voters, ctx.pepper, cid)
    pairs = dataset.Pairs(ctx.o.voters, ctx.o.candidates, 10, seed=3, in_a_row=in_a_row)
    ips = ctx.ips
    plan = [(voters[v], f"c{c + 1:03d}", ips[(v if in_a_row else i) % len(ips)])
            for i, (v, c) in enumerate(pairs)]
    return dataset.bench_campaign(ctx.o.candidates, cid), plan


class _Slices:
    """Hands each run and each callgrind row votes of its workload that no other takes:
    the callgrind rows' from the end of the plan, the runs' evenly from the rest."""

    def __init__(self, workloads: dict[str, Workload], grinds: list[tuple[Any, str, str]],
                 per_grind: int, run_modes: list[str]) -> None:
        self.plans: dict[int, list[tuple[str, str, str]]] = {}
        self.grind: dict[int, list[list[tuple[str, str, str]]]] = {}
        self.size: dict[int, int] = {}
        self.taken: dict[int, int] = {}
        self.key = {mode: id(w) for mode, w in workloads.items()}
        for mode, (_, plan) in workloads.items():
            k = self.key[mode]
            if k in self.plans:
                continue
            users = [m for m in workloads if self.key[m] == k]
            n = sum(1 for _, m, _ in grinds if m in users)
            cut = len(plan) - n * per_grind
            self.plans[k] = plan[:cut]
            self.grind[k] = [plan[cut + j * per_grind:cut + (j + 1) * per_grind]
                             for j in range(n)]
            self.size[k] = cut // max(1, sum(1 for m in run_modes if m in users))
            self.taken[k] = 0

    def run(self, mode: str) -> list[tuple[str, str, str]]:
        k = self.key[mode]
        start = self.taken[k]
        self.taken[k] += self.size[k]
        return self.plans[k][start:start + self.size[k]]

    def grind_votes(self, mode: str) -> list[tuple[str, str, str]]:
        return self.grind[self.key[mode]].pop()


async def _instructions(ctx: Context, workloads: dict[str, Workload],
                        grinds: list[tuple[tuple[str, Path], str, str]],
                        slices: _Slices) -> list[dict[str, Any]]:
    """Table A2: Valkey's own instructions per vote under callgrind, which do not move
    with the machine's speed: a warm-up (scripts loaded), then the counters zeroed, a
    fixed number of votes, the dump. A fresh node (or Cluster) per row, appendfsync
    always; a Cluster's masters are all counted, and summed."""
    rows: list[dict[str, Any]] = ctx.keep("ceiling_instructions", [])
    grind = instructions.Callgrind(ctx.res.workdir / "callgrind-valkey")
    warm = 300
    for i, ((variant, path), mode, backend) in enumerate(grinds):
        wrapper = tuple(grind.argv(f"valkey-{i}"))
        start: Callable[[], object]
        if backend == "cluster":
            cluster = embedded.ValkeyCluster(ctx.res.workdir / f"valkey-grind-{i}",
                                             wrapper=wrapper)
            servers, url, start, stop = cluster.nodes, cluster.url, cluster.start, cluster.stop
        else:
            server = embedded.ValkeyServer(ctx.res.workdir / f"valkey-grind-{i}",
                                           wrapper=wrapper)
            servers, url, start, stop = [server], server.url, server.start, server.stop
        ctx.res.servers.extend(servers)
        try:
            await asyncio.to_thread(start)
            pids = [s.process.pid for s in servers if s.process is not None]
            for pid in pids:
                await grind.ready(pid)
            chunk = slices.grind_votes(mode)
            spec = {"url": url, "cluster": backend == "cluster",
                    "masters": [s.url for s in servers], "campaign": workloads[mode][0],
                    "plan": chunk[:warm], "shards": SHARDS, "concurrency": 64,
                    "seconds": 600.0, "full": mode != "cast_vote", "mode": mode}
            await _ceiling_run(ctx.res.workdir / f"grind-warm-{i}.json", path, spec)
            for pid in pids:
                await grind.window_starts(pid)
            spec["plan"] = chunk[warm:]
            row = await _ceiling_run(ctx.res.workdir / f"grind-{i}.json", path, spec)
            total = sum([await grind.window_ends(pid) for pid in pids])  # the masters summed
            rows.append({"variant": variant, "mode": mode, "backend": backend,
                         "votes": row["votes"], "instructions": total,
                         "per_vote": round(total / max(row["votes"], 1)),
                         "outcomes": row["outcomes"]})
            ctx.log(f"A2: {variant} {backend} {mode}: {total / max(row['votes'], 1):,.0f} "
                    "Valkey instructions a vote")
        finally:
            stop()
            for s in servers:
                ctx.res.servers.remove(s)
    return rows


def _start_cluster(workdir: Path) -> embedded.ValkeyCluster:
    """A 3-master cluster (appendfsync always); a node whose bus port another process took
    in the meantime (the machine is shared) means a second try on fresh ports."""
    for attempt in range(3):
        cluster = embedded.ValkeyCluster(workdir / f"ceiling-cluster-{attempt}")
        try:
            return cluster.start()
        except RuntimeError:
            cluster.stop()
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _export_checkout(ref: str, dest: Path) -> None:
    """The package and Lua scripts of ``ref`` (a commit of this repository) into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", ref, "voting_service", "lua"],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)


async def _ceiling_run(spec_file: Path, checkout: Path, spec: dict[str, Any]) -> dict[str, Any]:
    """One metered ``redis_ceiling.py`` run in a process of its own, importing the package
    of ``checkout`` (so the row measures that version's keys, scripts and call packing)."""
    spec_file.write_text(json.dumps(spec))
    env = dict(os.environ, PYTHONPATH=str(checkout))
    proc = await asyncio.create_subprocess_exec(
        python(), str(REPO / "loadtests" / "redis_ceiling.py"), str(spec_file), cwd=checkout,
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    if proc.returncode:
        raise RuntimeError(f"ceiling run failed ({proc.returncode}): {err.decode()[-2000:]}")
    row: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return row


def render(ph: dict[str, Any]) -> str:
    """Tables A (Redis alone) and A2, each when it has rows."""
    out = []
    if ph.get("ceiling"):
        out.append(render_ceiling(ph["ceiling"]))
    if ph.get("ceiling_instructions"):
        rows = [[r.get("backend", "single"), r["mode"], r["variant"], r["votes"],
                 round(r["per_vote"] / 1000, 1),
                 pct(r["outcomes"].get("accepted", 0) / max(r["votes"], 1))]
                for r in ph["ceiling_instructions"]]
        out.append(table(
            "\nA2. Valkey's instructions per vote (valkey-server under callgrind, one node or "
            "a 3-master Cluster, appendfsync always)",
            ["backend", "scripts", "code", "votes", "k instructions/vote", "accepted"], rows,
            "user-space instructions of the server only (not the kernel's write and fsync; "
            "Cluster: its masters summed, two calls a vote); full: nearly every vote its "
            "voter's first of the day; row: each voter's ten votes in a row; they do not move "
            "with the machine's speed: compare before with after here"))
    return "\n".join(out)


def render_ceiling(runs: list[dict[str, Any]]) -> str:
    """Table A: medians over the rounds of each (backend, mode, variant), before beside after."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in runs:
        key = (r.get("backend", "single"), r["mode"], r.get("variant", "after"))
        groups.setdefault(key, []).append(r)
    names = {("single", "full"): "single node, limits + vote (1 call)",
             ("single", "cast_vote"): "single node, cast_vote.lua only (IP caps 0)",
             ("single", "row"): "single node, votes in a row (1 call each)",
             ("cluster", "full"): "3-master Cluster, limits + vote (2 calls)",
             ("cluster", "row"): "3-master Cluster, votes in a row (2 calls each)"}

    def med(rows: list[dict[str, Any]], k: str) -> float:
        values = sorted(float(r["per_vote"][k]) for r in rows
                        if r["per_vote"].get(k) is not None) or [0.0]
        return values[len(values) // 2] if len(values) % 2 else (
            values[len(values) // 2 - 1] + values[len(values) // 2]) / 2

    rows = []
    for (backend, mode, variant), rs in groups.items():
        pv = rs[-1]["per_vote"]
        calls = ", ".join(f"{k} {v:g}" for k, v in pv.get("by_command", {}).items()
                          if k not in ("evalsha", "eval"))
        goal = GOAL_VALKEY_US if backend == "single" else GOAL_VALKEY_US + 5
        cpu = med(rs, "cpu_us")
        rows.append([names.get((backend, mode), f"{backend} {mode}"), variant,
                     round(cpu, 1), med(rs, "sys_us"), med(rs, "script_us"), med(rs, "aof_bytes"),
                     round(1e6 / cpu) if cpu else 0,
                     round(sum(r["rate"] for r in rs) / len(rs)), pv.get("scripts", 0),
                     pv.get("redis_calls", 0),
                     "" if mode == "cast_vote" else ("yes" if cpu <= goal else f"> {goal:g}"),
                     calls])
    return table(
        f"\nA. Redis alone: voting.cast through pipeline.Pipeline, no HTTP "
        f"({runs[0]['concurrency']} coroutines, one uvloop process), appendfsync always; "
        "median of the rounds",
        ["backend, scripts", "code", "Valkey CPU µs/vote", "of it kernel", "script µs/vote",
         "AOF B/vote",
         "votes/s per master core", "client votes/s", "calls/vote", "redis.call/vote",
         "goal", "commands per vote"], rows,
        "Valkey CPU = used_cpu_sys+user of the master(s) over the run (Cluster: summed) / "
        "votes (kernel: used_cpu_sys alone); script µs = INFO commandstats usec of "
        "EVALSHA/EVAL; AOF B = aof_current_size growth; per master core = 1 / Valkey CPU; "
        "before = --baseline, after = this checkout; "
        "client votes/s is what one Python process reached (it is the bottleneck)")
