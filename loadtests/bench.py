"""``python -m loadtests.bench`` (``make bench``): side-by-side throughput figures.

One run, on its own embedded Valkey and PostgreSQL in a temp dir, traffic to 127.0.0.1 only:

A.  HTTP: the vote endpoint (b) against a bare Starlette endpoint (a) on the same server
    settings, with 1 and 2 workers — votes/s, p50, p99, share of 200s, b/a (goal ≥ 0.6);
    plus the Redis ceiling: the Lua scripts called straight through ``pipeline.Pipeline``.
B.  The flusher: rows/s end to end (streams → committed ledger and tallies) and of its
    PostgreSQL half alone, against a plain ``executemany`` (goal ≥ 100,000 rows/s); its lag
    while A's vote phases run at full rate; and the cost of durability: ``appendfsync
    always`` vs ``everysec`` (+ WAITAOF).
C.  The cost of the anti-fraud features (issue #4): the vote endpoint, 1 worker, with proof
    of work off/on × IP limits off/on, each against the baseline (goal: the full path keeps
    ≥ 75 % of the baseline's votes/s); see ``phases/antifraud.py``.
D.  The vote path by credential (partner JWT, anonymous token, SMS voter) against the bare
    request in alternating rounds, by votes/s, p50/p99 and server CPU per request; and vote
    p95 with and without 2,000 ``/live`` watchers (issue #9); see ``phases/votepath.py``.

The service, the bare app and the flusher run as real processes (``voting-service serve``,
``voting-service flusher``), started in their own sessions and always stopped, also on
Ctrl-C. The table goes to stdout, progress to stderr, everything to bench-results/*.json.
The machine has two cores: the load generator, Valkey, PostgreSQL and the flusher share them
with the server under test, so absolute numbers are low; the ratios are the point.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import uvloop

from .context import SHARDS, Context, Options, Resources
from .phases import antifraud, ceiling, durability, flusher, http, metrics, votepath
from .procs import REPO, Children, sigterm_as_interrupt
from .report import table

BASELINE = "93ad812"
"""The vote path before issue 28 (key layout, scripts, call): table A's "before" rows."""
ROLES = ("server", "valkey", "postgres", "flusher", "load generator", "other")
RUNS: dict[str, Callable[[Context], Awaitable[dict[str, Any]]]] = {
    "ceiling": ceiling.run, "flusher": flusher.run, "http": http.run,
    "durability": durability.run, "antifraud": antifraud.run, "votepath": votepath.run,
    "metrics": metrics.run}
"""Every phase, in the order a run takes them."""

PHASES = tuple(RUNS)


def parse_args(argv: list[str] | None = None) -> Options:
    p = argparse.ArgumentParser(prog="python -m loadtests.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="short phases, 5-15 minutes in all")
    p.add_argument("--voters", type=int, help="voter tokens (default 80000, quick 40000)")
    p.add_argument("--candidates", type=int, default=100)
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--threads", type=int, default=1,
                   help="wrk threads (or client processes); one leaves the server most CPU")
    p.add_argument("--warmup", type=float, help="seconds (default 2, quick 1)")
    p.add_argument("--seconds", type=float, help="measured seconds (default 10, quick 4)")
    p.add_argument("--workers", default="1,2", help="server worker counts, e.g. 1,2")
    p.add_argument("--backlog", type=int, help="ledger rows (default 200000, quick 50000)")
    p.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto")
    p.add_argument("--no-install", action="store_true", help="never apt-get install wrk")
    p.add_argument("--only", default=",".join(PHASES),
                   help=f"comma-separated phases to run, of {', '.join(PHASES)}")
    p.add_argument("--profile", action="store_true",
                   help="py-spy the vote server's workers during the measured windows")
    p.add_argument("--instructions", action=argparse.BooleanOptionalAction,
                   help="count the vote server's instructions per request under callgrind "
                        "(table D3; default on, off with --quick)")
    p.add_argument("--baseline", default=BASELINE,
                   help="commit whose scripts and call packing table A measures beside this "
                        f"checkout's (default {BASELINE}, the vote path before issue 28; "
                        "'' for none)")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (logs, data)")
    p.add_argument("--out-dir", type=Path, default=REPO / "bench-results")
    a = p.parse_args(argv)
    phases = frozenset(x.strip() for x in a.only.split(",") if x.strip())
    if not phases <= set(PHASES):
        p.error(f"--only: unknown phase(s) {sorted(phases - set(PHASES))}")
    if not 10 <= a.candidates <= 999:
        p.error("--candidates: 10..999 (each voter votes for 10 distinct candidates a day)")
    if not 1 <= a.threads <= a.connections:
        p.error("--threads must be between 1 and --connections")
    quick = bool(a.quick)
    return Options(
        quick=quick,
        voters=a.voters or (40000 if quick else 80000),
        candidates=a.candidates,
        connections=a.connections,
        threads=a.threads,
        warmup=a.warmup if a.warmup is not None else (1.0 if quick else 2.0),
        seconds=a.seconds if a.seconds is not None else (4.0 if quick else 10.0),
        workers=tuple(int(w) for w in a.workers.split(",")),
        backlog=a.backlog or (50_000 if quick else 200_000),
        db_seconds=6.0 if quick else 12.0,
        ceiling_seconds=2.0 if quick else 4.0,
        ceiling_concurrency=512,
        loadgen=a.loadgen,
        install_wrk=not a.no_install,
        phases=phases,
        weak_reference=not quick,
        baseline=a.baseline,
        profile=bool(a.profile),
        instructions=not quick if a.instructions is None else bool(a.instructions),
        keep=bool(a.keep),
        out_dir=a.out_dir,
    )


async def run(ctx: Context) -> None:
    """Set up, then each phase chosen with ``--only`` in turn: a phase that fails is
    reported in the results and the others run all the same."""
    await ctx.setup()
    for name, step in RUNS.items():
        if name not in ctx.o.phases:
            continue
        try:
            ctx.results["phases"].update(await step(ctx))
        except Exception as exc:  # report it, run the other phases all the same
            ctx.log(f"phase {name} failed: {exc!r}")
            tail = traceback.format_exc().strip().splitlines()[-6:]
            ctx.results.setdefault("errors", {})[name] = "\n".join(tail)
    ctx.results["total_s"] = round(time.monotonic() - ctx.started, 1)


def _loads(ph: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The HTTP loads of tables A, B (durability) and C, labelled for the CPU table."""
    out = [(f"{label} w{r['workers']}", r[key]) for r in ph.get("http", [])
           for key, label in (("bare", "a"), ("vote", "b"))]
    out += [(f"b w1 {r['valkey']}", r["vote"]) for r in ph.get("durability", [])]
    out += [(f"C {r['key']}", r["vote"]) for r in ph.get("antifraud", {}).get("rows", [])]
    return out


def render_cores(ph: dict[str, Any]) -> str:
    """Who used the two cores in each HTTP load of tables A, B and C."""
    rows = []
    for label, load in _loads(ph):
        cores = load.get("extra", {}).get("cpu_cores", {})
        rows.append([label, *(cores.get(role, 0.0) for role in ROLES),
                     round(sum(cores.values()), 2)])
    return table("\nCPU cores used in each HTTP phase's measured window",
                 ["phase", *ROLES, "total"], rows) if rows else ""


def render_busy(ph: dict[str, Any]) -> str:
    """A warning when other work took the machine's cores during those loads."""
    busy = max((v.get("extra", {}).get("cpu_cores", {}).get("other", 0.0)
                for _, v in _loads(ph)), default=0.0)
    if busy <= 0.2:
        return ""
    return (f"\nnote: other processes on this machine used up to {busy:.2f} cores during "
            "the HTTP phases: absolute numbers are low and noisy, compare ratios")


SECTIONS: tuple[Callable[[dict[str, Any]], str], ...] = (
    http.render, render_cores, ceiling.render, flusher.render, http.render_lag,
    durability.render, antifraud.render, metrics.render, http.render_profile, render_busy,
    votepath.render)
"""The tables in the order they are printed: each takes the results' phases mapping."""


def render(results: dict[str, Any]) -> str:
    cfg = results.get("config", {})
    ph = results["phases"]
    gen = (f"python fallback client x{cfg.get('threads')}" if cfg.get("loadgen") == "python"
           else f"wrk -t{cfg.get('threads')}")
    out = [f"voting-service benchmark — {cfg.get('cpus')} CPUs, Python {cfg.get('python')}, "
           f"{cfg.get('candidates')} candidates, {cfg.get('voters'):,} voters, "
           f"{SHARDS} shards; load: {gen} -c{cfg.get('connections')}, "
           f"{cfg.get('seconds'):g} s after {cfg.get('warmup_s'):g} s warm-up; "
           "Valkey appendfsync always unless noted"]
    out += [text for section in SECTIONS if (text := section(ph))]
    for name, error in results.get("errors", {}).items():
        out.append(f"\nPHASE {name} FAILED:\n  " + error.replace("\n", "\n  "))
    if results.get("interrupted"):
        out.append("\nINTERRUPTED: partial results")
    out.append(f"\ntotal {results.get('total_s', '?')} s")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    opts = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="voting-bench-"))
    (workdir / "logs").mkdir()
    res = Resources(workdir, Children(workdir / "logs"))
    ctx = Context(opts, res)
    interrupted = False
    try:
        with sigterm_as_interrupt(), asyncio.Runner(loop_factory=uvloop.new_event_loop) as r:
            r.run(run(ctx))
    except KeyboardInterrupt:
        interrupted = True
        ctx.results["interrupted"] = True
        print("\ninterrupted: stopping everything", file=sys.stderr)
    finally:
        res.stop()
        if opts.keep:
            print(f"kept {workdir}", file=sys.stderr)
        else:
            for _ in range(10):  # a server may still be writing its last files
                shutil.rmtree(workdir, ignore_errors=True)
                if not workdir.exists():
                    break
                time.sleep(0.5)
    if not ctx.results["phases"]:
        sys.exit(130 if interrupted else 1)
    opts.out_dir.mkdir(parents=True, exist_ok=True)
    path = opts.out_dir / f"bench-{ctx.stamp}{'-quick' if opts.quick else ''}.json"
    path.write_text(json.dumps(ctx.results, indent=2, default=str))
    print(render(ctx.results))
    print(f"results: {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")
    if interrupted:
        sys.exit(130)
    if ctx.results.get("errors"):
        sys.exit(1)


if __name__ == "__main__":
    main()
