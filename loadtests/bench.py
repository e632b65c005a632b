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
    ≥ 75 % of the baseline's votes/s); see ``antifraud.py``.
D.  The vote path by credential (partner JWT, anonymous token, SMS voter) against the bare
    request in alternating rounds, by votes/s, p50/p99 and server CPU per request; and vote
    p95 with and without 2,000 ``/live`` watchers (issue #9); see ``votepath.py``.

The service, the bare app and the flusher run as real processes (``voting-service serve``,
``voting-service flusher``), started in their own sessions and always stopped, also on
Ctrl-C. The table goes to stdout, progress to stderr, everything to bench-results/*.json.
The machine has two cores: the load generator, Valkey, PostgreSQL and the flusher share them
with the server under test, so absolute numbers are low; the ratios are the point.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import math
import os
import platform
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import uvloop

from voting_service import embedded
from voting_service.ledger import campaigns, db, durability, progress
from voting_service.ledger.reconcile import reconcile
from voting_service.settings import Settings
from voting_service.vote import store

from . import antifraud, dataset, flusher_bench, instructions, log_bench, profile, sse, votepath
from .cpu import CpuSampler
from .instructions import Callgrind
from .loadgen import LoadResult, LoadSpec, ensure_wrk
from .procs import REPO, Child, Children, python, sigterm_as_interrupt, wait_ready
from .report import pct, table

SHARDS = 16
GOAL_RATIO = 0.6
GOAL_VALKEY_US = 25.0
"""Valkey CPU µs per vote on a single node with appendfsync always (issue 28; Cluster: 30)."""
CEILING_GRIND_VOTES = 3000
"""Votes of one callgrind row (table A2): enough that connecting and INFO are noise."""
BASELINE = "93ad812"
"""The vote path before issue 28 (key layout, scripts, call): table A's "before" rows."""
GOAL_FLUSH = 100_000
ROLES = ("server", "valkey", "postgres", "flusher", "load generator", "other")
PROOF_MARGIN = 1.2
"""Proofs solved for a proof-of-work row, at least per request the fastest earlier row sent."""


@dataclass(frozen=True)
class Options:
    quick: bool
    voters: int
    candidates: int
    connections: int
    threads: int
    warmup: float
    seconds: float
    workers: tuple[int, ...]
    backlog: int
    db_seconds: float
    ceiling_seconds: float
    ceiling_concurrency: int
    loadgen: str
    install_wrk: bool
    phases: frozenset[str]
    weak_reference: bool
    baseline: str
    """Commit whose package table A also measures, beside this checkout ("" = none)."""
    profile: bool
    instructions: bool
    keep: bool
    out_dir: Path


PHASES = ("ceiling", "flusher", "http", "durability", "antifraud", "votepath", "metrics")


def parse_args(argv: list[str] | None = None) -> Options:
    p = argparse.ArgumentParser(prog="python -m loadtests.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="short phases, about two minutes in all")
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


@dataclass
class Resources:
    """What the sync outer layer stops in its ``finally``, whatever happened inside."""

    workdir: Path
    children: Children
    servers: list[embedded.ValkeyServer | embedded.PostgresServer] = field(default_factory=list)

    def stop(self) -> None:
        self.children.stop_all()
        for server in reversed(self.servers):
            with contextlib.suppress(Exception):
                server.stop()
        self.servers.clear()


def redis_client(url: str) -> store.AnyRedis:
    return store.connect(Settings(redis_url=url, shards=SHARDS))


class Bench:
    def __init__(self, opts: Options, res: Resources) -> None:
        self.o = opts
        self.res = res
        self.started = time.monotonic()
        self.secret_key = secrets.token_urlsafe(32)
        self.pepper = secrets.token_urlsafe(32)
        self.admin_token = secrets.token_urlsafe(24)
        self.results: dict[str, Any] = {"phases": {}}
        self.pg_url = ""
        self.valkey_url = ""
        self.requests_file = res.workdir / "votes.tsv"
        self.request_lines = 0
        self.path = f"/api/v1/campaigns/{dataset.CAMPAIGN_ID}/votes"
        self.load = LoadSpec(None, opts.connections, opts.threads, opts.warmup, opts.seconds)
        self.ips = dataset.client_ips(20_000)
        self.stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        self.profile_dir = opts.out_dir / f"profile-{self.stamp}"

    def log(self, msg: str) -> None:
        print(f"[{time.monotonic() - self.started:6.1f}s] {msg}", file=sys.stderr, flush=True)

    # ---- setup -------------------------------------------------------------------------

    async def setup(self) -> None:
        wrk = None
        if self.o.loadgen != "python":
            wrk = await asyncio.to_thread(ensure_wrk, self.o.install_wrk)
            if wrk is None and self.o.loadgen == "wrk":
                raise SystemExit("wrk not found and could not be installed")
        self.load = LoadSpec(wrk, self.o.connections, self.o.threads, self.o.warmup,
                             self.o.seconds)
        self.log(f"load generator: {'wrk ' + wrk if wrk else 'python fallback (no wrk)'}")
        pg = embedded.PostgresServer(self.res.workdir / "pg")
        self.res.servers.append(pg)
        valkey = embedded.ValkeyServer(self.res.workdir / "valkey", appendfsync="always")
        self.res.servers.append(valkey)
        await asyncio.gather(asyncio.to_thread(pg.start), asyncio.to_thread(valkey.start))
        self.pg_url, self.valkey_url = pg.url, valkey.url
        self.log(f"PostgreSQL {pg.url}, Valkey {valkey.url} (appendfsync always)")
        conn = await asyncpg.connect(self.pg_url)
        redis = redis_client(self.valkey_url)
        try:
            await db.migrate(conn)
            data = json.dumps(dataset.bench_campaign(self.o.candidates)).encode()
            await campaigns.load(conn, redis, data)
        finally:
            await conn.close()
            await redis.aclose()
        self.log(f"campaign {dataset.CAMPAIGN_ID}: {self.o.candidates} candidates; "
                 f"issuing {self.o.voters} voter tokens")
        tokens = await asyncio.to_thread(dataset.issue_tokens, self.o.voters,
                                         dataset.CAMPAIGN_ID, self.secret_key, self.pepper)
        pairs = dataset.Pairs(self.o.voters, self.o.candidates, 10)
        self.request_lines = await asyncio.to_thread(
            dataset.write_requests, self.requests_file, tokens, pairs, self.ips)
        self.log(f"{self.request_lines} distinct (voter, candidate) requests written")
        self.results["config"] = {
            "quick": self.o.quick, "voters": self.o.voters, "candidates": self.o.candidates,
            "connections": self.o.connections, "threads": self.o.threads,
            "warmup_s": self.o.warmup, "seconds": self.o.seconds, "workers": self.o.workers,
            "backlog": self.o.backlog, "shards": SHARDS, "loadgen": wrk or "python",
            "cpus": os.cpu_count(), "python": platform.python_version(),
            "started_at": dt.datetime.now(dt.UTC).isoformat(),
        }

    def groups(self) -> dict[int, str]:
        """Process group → role of the embedded servers running now."""
        out = {}
        for server in self.res.servers:
            if server.process is not None and server.process.poll() is None:
                role = "postgres" if isinstance(server, embedded.PostgresServer) else "valkey"
                out[server.process.pid] = role
        return out

    def service_env(self, redis_url: str, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("VOTING_", "REDIS_", "DATABASE_"))}
        env.update({
            "REDIS_URL": redis_url,
            "DATABASE_URL": self.pg_url,
            "VOTING_SECRET_KEY": self.secret_key,
            "VOTING_PEPPER": self.pepper,
            "VOTING_SHARDS": str(SHARDS),
            "VOTING_ADMIN_TOKENS": f"admin:{self.admin_token}",
            "VOTING_TRUSTED_PROXIES": "127.0.0.1/32",
            "VOTING_DATA_DIR": str(self.res.workdir),
        })
        env.update(extra)
        return env

    # ---- A: HTTP ----------------------------------------------------------------------

    async def _serve(self, name: str, argv: list[str], env: dict[str, str],
                     ready_path: str, workers: int, counting: Callgrind | None = None,
                     ) -> tuple[Child, int]:
        port = embedded.free_port()
        prefix = counting.argv(name) if counting else []
        child = self.res.children.start(name, [*prefix, *argv, "--port", str(port),
                                               "--workers", str(workers)], env)
        try:
            await wait_ready(child, port, ready_path, timeout=600.0 if counting else 60.0)
            await asyncio.sleep(0.5 if workers == 1 else 1.5)  # let every worker boot
            if counting:
                await counting.ready(child.pid)
        except BaseException:
            self.res.children.stop(child)
            raise
        return child, port

    async def _measure(self, port: int, requests: Path, path: str, measuring: asyncio.Event,
                       counting: Callgrind | None, pid: int, **kwargs: Any) -> LoadResult:
        """The load run; with ``counting``, the server's instructions in its window too."""
        if counting is None:
            return await self.load.run(port, requests, path, measuring=measuring, **kwargs)

        async def zero() -> None:
            await measuring.wait()
            await counting.window_starts(pid)

        zeroed = asyncio.create_task(zero())
        try:
            result = await self.load.run(port, requests, path, measuring=measuring, **kwargs)
        except BaseException:
            zeroed.cancel()
            raise
        await zeroed
        result.extra["instructions"] = await counting.window_ends(pid)
        return result

    async def bare_phase(self, workers: int, *, asgi: bool = False,
                         counting: Callgrind | None = None) -> LoadResult:
        """The bare endpoint (``loadtests.bare_app``): Starlette's, or with ``asgi`` the plain
        ASGI one; ``counting``: under callgrind, its instructions counted."""
        kind = "ASGI" if asgi else "Starlette"
        self.log(f"A(a) bare {kind}, {workers} worker(s)" + (" under callgrind" if counting
                                                            else ""))
        child, port = await self._serve(
            f"bare-{kind.lower()}-w{workers}",
            [python(), "-m", "loadtests.bare_app", *(["--asgi"] if asgi else [])],
            self.service_env(self.valkey_url), "/healthz", workers, counting)
        cpu = CpuSampler({**self.groups(), child.pid: "server"})
        stop, measuring = asyncio.Event(), asyncio.Event()
        sampling = asyncio.create_task(cpu.run(stop, measuring))
        try:
            result = await self._measure(port, self.requests_file, self.path, measuring,
                                         counting, child.pid)
        finally:
            stop.set()
            await sampling
            self.res.children.stop(child)
        result.extra["cpu_cores"] = cpu.cores()
        result.extra["cpu_seconds"] = cpu.seconds()
        return result

    async def vote_phase(self, name: str, redis_url: str, env: dict[str, str], workers: int,
                         offset: int, *, requests: Path | None = None, path: str | None = None,
                         limit: int | None = None, watchers: int = 0, watch_path: str = "",
                         idle: float = 0.0, counting: Callgrind | None = None,
                         ) -> tuple[LoadResult, dict[str, Any]]:
        """The vote endpoint under load with the flusher running; lag sampled meanwhile.

        ``requests`` (default: the main request file) is replayed from line ``offset``, at
        most ``limit`` lines (default: the rest of the main file) to ``path``. ``watchers``
        SSE clients of ``watch_path`` stay connected during the load; ``idle`` seconds of
        the server's CPU with no vote (watchers connected) are measured before it.
        ``counting``: the server runs under callgrind and its instructions are counted."""
        requests = requests or self.requests_file
        path = path or self.path
        limit = self.request_lines - offset if limit is None else limit
        self.log(f"{name}: vote endpoint, {workers} worker(s), from line {offset} of "
                 f"{requests.name}")
        redis = redis_client(redis_url)
        cli = [python(), "-m", "voting_service.cli"]
        flusher = self.res.children.start(f"{name}-flusher", [*cli, "flusher"], env)
        extra: dict[str, Any] = {}
        try:
            server, port = await self._serve(f"{name}-serve", [*cli, "serve"], env, "/readyz",
                                             workers, counting)
            watching = sse.Watchers(port, watch_path, watchers)
            if watchers:
                extra["watchers_connected_s"] = round(await watching.open(), 2)
            if idle:
                extra["idle_server_cores"] = await self._idle_cores(server, idle)
            sampler = flusher_bench.LagSampler(redis, self.pg_url, SHARDS)
            cpu = CpuSampler({**self.groups(), server.pid: "server", flusher.pid: "flusher"})
            stop, measuring = asyncio.Event(), asyncio.Event()
            sampling = asyncio.gather(sampler.run(stop), cpu.run(stop, measuring))
            profiling: list[Awaitable[Any]] = []
            if self.o.profile:
                profiling = self._profile(server, workers, name)
            try:
                result, *_ = await asyncio.gather(
                    self._measure(port, requests, path, measuring, counting, server.pid,
                                  offset=offset, limit=limit),
                    *profiling)
            finally:
                stop.set()
                await sampling
                if watchers:
                    extra["watcher_events"] = watching.events
                    extra["watchers_failed"] = watching.failed
                await watching.close()
                self.res.children.stop(server)
            extra["lag"] = sampler.summary()
            result.extra["cpu_cores"] = cpu.cores()
            result.extra["cpu_seconds"] = cpu.seconds()
            extra["drain_s"] = await self._wait_drained(redis, flusher)
            if self.o.profile:
                files = sorted(self.profile_dir.glob(f"{name}-*.txt"))
                extra["profile"] = profile.summarize(files, top=60)
                extra["profile_dir"] = str(self.profile_dir)
        finally:
            self.res.children.stop(flusher)
            await redis.aclose()
        return result, extra

    async def _idle_cores(self, server: Child, seconds: float) -> float:
        """Cores the server used over ``seconds`` with no load (its background work)."""
        cpu = CpuSampler({server.pid: "server"})
        stop, measuring = asyncio.Event(), asyncio.Event()
        measuring.set()
        sampling = asyncio.create_task(cpu.run(stop, measuring))
        await asyncio.sleep(seconds)
        stop.set()
        await sampling
        return cpu.cores().get("server", 0.0)

    def _profile(self, server: Child, workers: int, name: str) -> list[Awaitable[Any]]:
        pids = server.group_pids()
        if workers > 1:  # the gunicorn master only supervises
            pids = [p for p in pids if p != server.pid]
        self.profile_dir.mkdir(parents=True, exist_ok=True)
        return [profile.record(pid, self.o.seconds, self.profile_dir / f"{name}-{pid}.txt",
                               self.o.warmup)
                for pid in pids]

    async def _wait_drained(self, redis: store.AnyRedis, flusher: Child,
                            timeout: float = 60.0) -> float | None:
        """Seconds until the flusher emptied the streams after the load, None on timeout."""
        conn = await asyncpg.connect(self.pg_url)
        started = time.monotonic()
        try:
            while time.monotonic() - started < timeout and flusher.alive():
                if (await progress.all_campaigns(redis, conn, SHARDS)).backlog == 0:
                    return round(time.monotonic() - started, 2)
                await asyncio.sleep(0.2)
        finally:
            await conn.close()
        return None

    async def http_phases(self) -> None:
        offset = 0
        rows: list[dict[str, Any]] = []
        self.results["phases"]["http"] = rows  # filled as it goes: kept if interrupted
        for workers in self.o.workers:
            bare = await self.bare_phase(workers)
            self._check_load(bare, f"bare w{workers}")
            vote, extra = await self.vote_phase(f"vote-w{workers}", self.valkey_url,
                                                self.service_env(self.valkey_url), workers,
                                                offset)
            self._check_load(vote, f"vote w{workers}")
            offset += vote.consumed
            ratio = vote.rps / bare.rps if bare.rps else 0.0
            rows.append({"workers": workers, "bare": bare.as_dict(), "vote": vote.as_dict(),
                         "ratio": round(ratio, 3), **extra})
            self.log(f"w{workers}: bare {bare.rps:,.0f}/s, vote {vote.rps:,.0f}/s "
                     f"({pct(vote.ok_fraction)} 200), b/a {ratio:.2f}")
        self.results["phases"]["invariant"] = await self._invariant()

    def _check_load(self, r: LoadResult, what: str) -> None:
        if r.wrapped:
            self.log(f"warning: {what} ran out of distinct requests and repeated some "
                     "(raise --voters)")
        if r.errors:
            self.log(f"warning: {what}: {r.errors} socket errors/timeouts")

    async def _invariant(self) -> dict[str, Any]:
        """DESIGN §3.6 after the vote phases drained: Redis tallies = PostgreSQL ledger."""
        conn = await asyncpg.connect(self.pg_url)
        redis = redis_client(self.valkey_url)
        try:
            drift = await reconcile(redis, conn, dataset.CAMPAIGN_ID, SHARDS)
            rows = int(await conn.fetchval(
                "SELECT count(*) FROM votes WHERE campaign_id = $1", dataset.CAMPAIGN_ID))
        finally:
            await conn.close()
            await redis.aclose()
        return {"ledger_rows": rows, "drifting_candidates": len(drift)}

    # ---- A: Redis ceiling ---------------------------------------------------------------

    async def ceiling_phase(self) -> None:
        """Table A: the scripts straight into Valkey, metered per vote, the package of this
        checkout against ``--baseline`` (the vote path before issue 28) in the same run, two
        interleaved rounds each: a single node (one call a vote; and ``cast_vote.lua`` alone)
        and a 3-master Cluster (two calls a vote, in two slots), all ``appendfsync always``."""
        cid = "luaceiling"
        data = dataset.bench_campaign(self.o.candidates, cid)
        voters = dataset.synthetic_voter_ids(self.o.voters, self.pepper, cid)
        pairs = list(dataset.Pairs(self.o.voters, self.o.candidates, 10, seed=3))
        plan = [(voters[v], f"c{c + 1:03d}", self.ips[i % len(self.ips)])
                for i, (v, c) in enumerate(pairs)]
        variants = [("after", REPO)]
        if self.o.baseline:
            base = self.res.workdir / "baseline"
            await asyncio.to_thread(_export_checkout, self.o.baseline, base)
            variants.insert(0, ("before", base))
        # every (variant, round, mode, backend) run gets fresh (voter, candidate) pairs
        runs = [(v, r, m, b) for b in ("single", "cluster") for r in range(2)
                for v in variants for m in (("full", "cast_vote") if b == "single" else ("full",))]
        grinding = self.o.instructions and instructions.available()
        reserved = 4 * (CEILING_GRIND_VOTES + 300) if grinding else 0  # table A2's votes
        plan, grind_plan = plan[:len(plan) - reserved], plan[len(plan) - reserved:]
        size = len(plan) // len(runs)
        out: list[dict[str, Any]] = []
        self.results["phases"]["ceiling"] = out
        cluster: embedded.ValkeyCluster | None = None
        try:
            for i, ((variant, path), rnd, mode, backend) in enumerate(runs):
                if backend == "cluster" and cluster is None:
                    cluster = await asyncio.to_thread(_start_cluster, self.res.workdir)
                    self.log(f"A: 3-master cluster on {cluster.url} (appendfsync always)")
                url = cluster.url if cluster else self.valkey_url
                masters = [n.url for n in cluster.masters()] if cluster else [url]
                spec = {"url": url, "cluster": cluster is not None, "masters": masters,
                        "campaign": data, "plan": plan[i * size:(i + 1) * size],
                        "shards": SHARDS, "concurrency": self.o.ceiling_concurrency,
                        "seconds": self.o.ceiling_seconds, "full": mode == "full",
                        "mode": mode}
                self.log(f"A: Redis ceiling, {variant} {backend} {mode} round {rnd + 1}")
                row = await _ceiling_run(self.res.workdir / f"ceiling-{i}.json", path, spec)
                row.update(variant=variant, backend=backend, round=rnd + 1)
                out.append(row)
        finally:
            if cluster is not None:
                await asyncio.to_thread(cluster.stop)
        if grinding:
            await self._ceiling_instructions(data, variants, grind_plan)

    async def _ceiling_instructions(self, data: dict[str, Any], variants: list[tuple[str, Path]],
                                    plan: list[tuple[str, str, str]]) -> None:
        """Table A2: Valkey's own instructions per vote under callgrind, which do not move
        with the machine's speed: a warm-up (scripts loaded), then the counters zeroed, a
        fixed number of votes, the dump. One fresh node (appendfsync always) per row."""
        rows: list[dict[str, Any]] = []
        self.results["phases"]["ceiling_instructions"] = rows
        grind = instructions.Callgrind(self.res.workdir / "callgrind-valkey")
        votes, warm = CEILING_GRIND_VOTES, 300
        chunks = [plan[i:i + votes + warm] for i in range(0, len(plan), votes + warm)]
        for i, ((variant, path), mode) in enumerate(
                (v, m) for m in ("full", "cast_vote") for v in variants):
            server = embedded.ValkeyServer(self.res.workdir / f"valkey-grind-{i}",
                                           wrapper=tuple(grind.argv(f"valkey-{i}")))
            self.res.servers.append(server)
            await asyncio.to_thread(server.start)
            try:
                assert server.process is not None
                pid = server.process.pid
                await grind.ready(pid)
                chunk = chunks[i % len(chunks)]
                spec = {"url": server.url, "cluster": False, "masters": [server.url],
                        "campaign": data, "plan": chunk[:warm], "shards": SHARDS,
                        "concurrency": 64, "seconds": 600.0, "full": mode == "full",
                        "mode": mode}
                await _ceiling_run(self.res.workdir / f"grind-warm-{i}.json", path, spec)
                await grind.window_starts(pid)
                spec["plan"] = chunk[warm:]
                row = await _ceiling_run(self.res.workdir / f"grind-{i}.json", path, spec)
                total = await grind.window_ends(pid)
                rows.append({"variant": variant, "mode": mode, "votes": row["votes"],
                             "instructions": total,
                             "per_vote": round(total / max(row["votes"], 1)),
                             "outcomes": row["outcomes"]})
                self.log(f"A2: {variant} {mode}: {total / max(row['votes'], 1):,.0f} "
                         "Valkey instructions a vote")
            finally:
                server.stop()
                self.res.servers.remove(server)

    # ---- B: flusher throughput ------------------------------------------------------------

    async def flusher_phase(self) -> None:
        cid = "flushbench"
        valkey = embedded.ValkeyServer(self.res.workdir / "valkey-flusher", appendfsync="always")
        self.res.servers.append(valkey)
        await asyncio.to_thread(valkey.start)
        redis = redis_client(valkey.url)
        out = []
        try:
            voters = dataset.synthetic_voter_ids(max(self.o.backlog // 10, 1), self.pepper, cid)
            entries = flusher_bench.ledger_entries(self.o.backlog, voters, self.o.candidates,
                                                   self.ips, SHARDS, flusher_bench.today())
            await redis.hset("cfg:campaigns", cid, "{}")  # the flusher's list of campaigns
            took = await flusher_bench.fill_backlog(redis, cid, entries)
            self.log(f"B: {len(entries)} ledger entries written into {SHARDS} streams "
                     f"in {took:.1f}s; flusher drain")
            await flusher_bench.empty_tables(self.pg_url)
            reader = redis_client(valkey.url)
            try:
                flushed = await flusher_bench.flusher_drain(redis, self.pg_url, cid, SHARDS,
                                                            self.o.db_seconds * 2, reader)
            finally:
                await reader.aclose()
            out.append(flushed.as_dict())
            batch = int(flushed.notes.get("rows_per_batch") or 2000 * SHARDS)
            self.log(f"B: PostgreSQL only, {batch} rows a transaction")
            await flusher_bench.empty_tables(self.pg_url)
            out.append((await flusher_bench.copy_marks(self.pg_url, cid, entries, batch,
                                                       self.o.db_seconds)).as_dict())
            self.log(f"B: executemany, {batch} rows a transaction")
            await flusher_bench.empty_tables(self.pg_url)
            out.append((await flusher_bench.executemany(
                self.pg_url, flusher_bench.records(cid, entries), batch,
                self.o.db_seconds)).as_dict())
            await flusher_bench.empty_tables(self.pg_url)
            self.log("B2: the transparency log, off and on")
            reader = redis_client(valkey.url)
            try:
                self.results["phases"]["log"] = await log_bench.log_phase(
                    redis, reader, self.pg_url, cid, SHARDS, entries, self.pepper,
                    self.o.db_seconds * 2, log=self.log)
            finally:
                await reader.aclose()
        finally:
            await redis.aclose()
            valkey.stop()
            self.res.servers.remove(valkey)
        self.results["phases"]["flusher"] = out

    # ---- B: durability --------------------------------------------------------------------

    async def durability_phase(self) -> None:
        rows: list[dict[str, Any]] = []
        self.results["phases"]["durability"] = rows
        modes = [("everysec", True)] + ([("no", False)] if self.o.weak_reference else [])
        for fsync, aof in modes:
            label = f"appendfsync {fsync}" if aof else "appendonly no"
            valkey = embedded.ValkeyServer(self.res.workdir / f"valkey-{fsync}",
                                           appendfsync="everysec" if not aof else fsync,
                                           appendonly=aof)
            self.res.servers.append(valkey)
            await asyncio.to_thread(valkey.start)
            try:
                redis = redis_client(valkey.url)
                conn = await asyncpg.connect(self.pg_url)
                try:
                    await campaigns.publish_all(conn, redis)
                    found = await durability.check(redis)
                finally:
                    await conn.close()
                    await redis.aclose()
                extra_env = {} if found.safe else {"VOTING_ACCEPT_WEAK_DURABILITY": "1"}
                env = self.service_env(valkey.url, **extra_env)
                result, extra = await self.vote_phase(f"durability-{fsync}", valkey.url, env, 1,
                                                      0)
                rows.append({"valkey": label, "mode": found.reason, "safe": found.safe,
                             "waitaof": found.waitaof, "vote": result.as_dict(),
                             "weak_flag": bool(extra_env), **extra})
                self.log(f"{label}: {result.rps:,.0f} votes/s ({found.reason})")
            finally:
                valkey.stop()
                self.res.servers.remove(valkey)
        for run, acks in enumerate((0, 1, 0, 1)):  # twice each, interleaved: a noisy machine
            await self._replica_acks_row(rows, acks, run)

    async def _replica_acks_row(self, rows: list[dict[str, Any]], acks: int, run: int) -> None:
        """The vote endpoint on a master with one replica (both AOF always), answering after
        the master's fsync only (0) or also a replica's (1, ``VOTING_REDIS_REPLICA_ACKS``)."""
        master = embedded.ValkeyServer(self.res.workdir / f"valkey-acks{run}-m")
        self.res.servers.append(master)
        await asyncio.to_thread(master.start)
        replica = embedded.ValkeyServer(self.res.workdir / f"valkey-acks{run}-r",
                                        replica_of=master.port)
        self.res.servers.append(replica)
        await asyncio.to_thread(replica.start)
        try:
            await asyncio.to_thread(replica.wait_replica_ready)
            redis = redis_client(master.url)
            conn = await asyncpg.connect(self.pg_url)
            try:
                await campaigns.publish_all(conn, redis)
                deadline = time.monotonic() + 30
                while not (found := await durability.check(redis, acks)).safe:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"replica never acknowledged: {found.reason}")
                    await asyncio.sleep(0.2)
            finally:
                await conn.close()
                await redis.aclose()
            env = self.service_env(master.url, VOTING_REDIS_REPLICA_ACKS=str(acks))
            result, extra = await self.vote_phase(f"replica-acks-{acks}-{run}", master.url, env,
                                                  1, 0)
            label = f"always + 1 replica, replica acks {acks}"
            rows.append({"valkey": label, "mode": found.reason, "safe": found.safe,
                         "waitaof": found.waitaof, "vote": result.as_dict(),
                         "weak_flag": False, **extra})
            self.log(f"{label}: {result.rps:,.0f} votes/s ({found.reason})")
        finally:
            for server in (replica, master):
                server.stop()
                self.res.servers.remove(server)

    # ---- C: anti-fraud cost ----------------------------------------------------------------

    async def _set_rules(self, cid: str, rules: dict[str, Any]) -> None:
        """Save and publish the campaign with these rules (read by the next server at boot)."""
        data = dataset.bench_campaign(self.o.candidates, cid)
        data["rules"].update(rules)
        conn = await asyncpg.connect(self.pg_url)
        redis = redis_client(self.valkey_url)
        try:
            await campaigns.load(conn, redis, json.dumps(data).encode())
        finally:
            await conn.close()
            await redis.aclose()

    async def antifraud_phase(self) -> None:
        """C: the vote endpoint with proof of work off/on × IP limits off/on, one campaign
        whose rules change between rows, the same server settings (1 worker) and load."""
        cid = antifraud.CAMPAIGN_ID
        rows: list[dict[str, Any]] = []
        summary: dict[str, Any] = {"campaign": cid, "rows": rows,
                                   "limits_on": antifraud.LIMITS_ON,
                                   "challenge_max_number": antifraud.MAX_NUMBER}
        self.results["phases"]["antifraud"] = summary  # filled as it goes
        await self._set_rules(cid, antifraud.ROWS[0].rules())
        tokens = await asyncio.to_thread(dataset.issue_tokens, self.o.voters, cid,
                                         self.secret_key, self.pepper)
        plain = self.res.workdir / "antifraud.tsv"
        with_proofs = self.res.workdir / "antifraud-pow.tsv"
        lines = await asyncio.to_thread(
            dataset.write_requests, plain, tokens,
            dataset.Pairs(self.o.voters, self.o.candidates, 10, seed=5), self.ips)
        path = f"/api/v1/campaigns/{cid}/votes"
        env = self.service_env(self.valkey_url)
        offset = 0
        try:
            for row in antifraud.ROWS:
                await self._set_rules(cid, row.rules())
                file, start, limit = plain, offset, lines - offset
                proofs: dict[str, Any] = {}
                if row.challenge:
                    # one proof per request, made just before the row (valid challenge.TTL s)
                    limit = min(self._proofs_needed(rows), lines - offset)
                    self.log(f"C: solving {limit} challenges (maxnumber "
                             f"{antifraud.MAX_NUMBER}) for '{row.label}'")
                    proofs = await antifraud.write_proof_file(
                        plain, with_proofs, offset, limit, secret_key=self.secret_key,
                        pepper=self.pepper, campaign_id=cid)
                    self.log(f"C: {proofs['proofs']} proofs in {proofs['seconds']} s")
                    file, start = with_proofs, 0
                result, extra = await self.vote_phase(
                    f"antifraud-{row.key}", self.valkey_url, env, 1, start, requests=file,
                    path=path, limit=limit)
                self._check_load(result, f"C {row.key}")
                offset += result.consumed
                rows.append({"key": row.key, "label": row.label, "challenge": row.challenge,
                             "limits": row.limits, "rules": row.rules(),
                             "vote": result.as_dict(), **extra,
                             **({"proofs": proofs} if proofs else {})})
                self.log(f"C {row.key}: {result.rps:,.0f} votes/s "
                         f"({pct(result.ok_fraction)} 200)")
        finally:
            antifraud.remove(plain, with_proofs)
            summary.update(antifraud.verdict(rows))

    def _proofs_needed(self, done: list[dict[str, Any]]) -> int:
        """Requests a proof-of-work row may send in its warm-up + window, with room to spare:
        running out would replay spent proofs and spoil the row.

        One worker cannot use more than one core, and a proof only adds to the baseline's
        server CPU per vote: so at most 1 s / (baseline CPU per vote) votes a second — taking
        the CPU per vote 10 % lower, for noise — and at least PROOF_MARGIN × what any earlier
        row sent."""
        window = self.o.warmup + self.o.seconds
        base = next((r for r in done if r["key"] == "baseline"), None)
        us = _server_us(base["vote"]) if base else None
        bound = 1e6 / (0.9 * us) * window if us else 3000 * window  # no baseline: generous
        sent = max((r["vote"]["consumed"] for r in done), default=0)
        return math.ceil(max(bound, sent * PROOF_MARGIN)) + 2 * self.o.connections

    # ---- M: metrics cost ---------------------------------------------------------------------

    async def metrics_phase(self) -> None:
        """M: the vote endpoint, 2 workers (so prometheus-client in multiprocess mode), with
        the vote counter off and on, twice each in turn, same load: what counting costs."""
        cid = "metricscost"
        rows: list[dict[str, Any]] = []
        self.results["phases"]["metrics"] = rows  # filled as it goes
        await self._set_rules(cid, {})
        tokens = await asyncio.to_thread(dataset.issue_tokens, self.o.voters, cid,
                                         self.secret_key, self.pepper)
        file = self.res.workdir / "metrics.tsv"
        lines = await asyncio.to_thread(
            dataset.write_requests, file, tokens,
            dataset.Pairs(self.o.voters, self.o.candidates, 10, seed=7), self.ips)
        offset = 0
        try:
            for key, on in (("off", False), ("on", True), ("off_again", False),
                            ("on_again", True)):
                env = self.service_env(self.valkey_url, VOTING_METRICS="1" if on else "0")
                result, extra = await self.vote_phase(
                    f"metrics-{key}", self.valkey_url, env, 2, offset, requests=file,
                    path=f"/api/v1/campaigns/{cid}/votes", limit=lines - offset)
                self._check_load(result, f"M {key}")
                offset += result.consumed
                rows.append({"key": key, "metrics": on, "vote": result.as_dict(), **extra})
                self.log(f"M {key}: {result.rps:,.0f} votes/s ({pct(result.ok_fraction)} 200)")
        finally:
            file.unlink(missing_ok=True)

    # ---- D: the vote path by credential, /live watchers ---------------------------------

    async def votepath_phase(self) -> None:
        self.results["phases"]["votepath"] = await votepath.run(self)

    # ---- run and report ---------------------------------------------------------------------

    async def run(self) -> None:
        await self.setup()
        steps = [("ceiling", self.ceiling_phase), ("flusher", self.flusher_phase),
                 ("http", self.http_phases), ("durability", self.durability_phase),
                 ("antifraud", self.antifraud_phase), ("votepath", self.votepath_phase),
                 ("metrics", self.metrics_phase)]
        for name, step in steps:
            if name not in self.o.phases:
                continue
            try:
                await step()
            except Exception as exc:  # report it, run the other phases all the same
                self.log(f"phase {name} failed: {exc!r}")
                tail = traceback.format_exc().strip().splitlines()[-6:]
                self.results.setdefault("errors", {})[name] = "\n".join(tail)
        self.results["total_s"] = round(time.monotonic() - self.started, 1)


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


def _server_us(load: dict[str, Any], role: str = "server") -> float | None:
    """Server (or another role's) CPU per request in the measured window: steadier than
    req/s when other work shares the machine."""
    seconds = load.get("extra", {}).get("cpu_seconds", {}).get(role)
    return round(seconds * 1e6 / load["requests"]) if seconds and load["requests"] else None


def render_antifraud(af: dict[str, Any]) -> str:
    rows = []
    base_us = af.get("baseline_server_us")
    for r in af["rows"]:
        v = r["vote"]
        ratio = af.get("ratios", {}).get(r["key"])
        cpu_ratio = af.get("cpu_ratios", {}).get(r["key"])
        us = _server_us(v)
        ok = pct(v["ok_fraction"]) + ("" if v["ok_fraction"] >= antifraud.MIN_OK else " < 99%")
        if v.get("wrapped"):
            ok += " (ran out of requests)"
        busy = r["key"] in af.get("disturbed", [])
        rows.append([r["label"] + (" *" if busy else ""), v["rps"], v["p50_ms"], v["p99_ms"],
                     ok, us,
                     f"{us - base_us:+.0f}" if us is not None and base_us is not None else None,
                     _server_us(v, "valkey"), "-" if ratio is None else f"{ratio:.2f}",
                     "-" if cpu_ratio is None else f"{cpu_ratio:.2f}"])
    lim = af.get("limits_on", {})
    note = (f"limits on = ip_per_minute {lim.get('ip_per_minute')}, ip_per_day "
            f"{lim.get('ip_per_day'):,}, net_per_minute {lim.get('net_per_minute')}, "
            f"net_per_day {lim.get('net_per_day'):,} (X-Forwarded-For over 400 /24s); off = 0\n"
            f"challenge on: one proof per request, bound to its voter, solved beforehand "
            f"(maxnumber {af.get('challenge_max_number')}): only verifying is measured")
    proofs = [r["proofs"] for r in af["rows"] if r.get("proofs")]
    if proofs:
        note += " (" + ", ".join(f"{p['proofs']:,} solved in {p['seconds']:g} s"
                                 for p in proofs) + ")"
    note += ("\nbaseline = mean of 1 and 1'; ×1: votes/s / the baseline's; ×1 CPU: the "
             "baseline's server CPU per vote / the row's (the votes/s ratio at a full core, "
             "steadier under noise); Δ µs: server CPU per vote over the baseline's")
    if af.get("disturbed"):
        note += (f"\n* other processes used more than {antifraud.BUSY_OTHER:g} cores during "
                 "this row (see the CPU table): its figures are disturbed")
    drift = af.get("drift")
    if drift is not None:
        note += f"\n1' / 1 = {drift:.3f} (how much the machine drifted during the phase)"
        if abs(drift - 1) > antifraud.DRIFT_WARN:
            note += (f": more than {antifraud.DRIFT_WARN:.0%}, the ratios are noisy — "
                     "run the phase again (--only antifraud)")
    if "full_ratio" in af:
        met = "MET" if af["met"] else "NOT MET"
        cpu = af.get("cpu_ratios", {}).get("full")
        note += (f"\ngoal: the full anti-fraud path (4) keeps ≥ {af['goal']:.0%} of the "
                 f"baseline's votes/s: 4/1 = {af['full_ratio']:.3f} → {met}"
                 + (f" (by server CPU per vote: {cpu:.3f})" if cpu else "")
                 + ("" if af.get("steady", True) else " — unreliable: the machine was busy"))
        if not af.get("meaningful"):
            note += (f"\nWARNING: a row is missing or got fewer than {af['min_ok']:.0%} 200s: "
                     "the comparison is meaningless")
    return table(
        "\nC. Anti-fraud cost: vote endpoint, 1 worker, same server settings and load "
        "(+ flusher), one campaign whose rules change between rows",
        ["row", "votes/s", "p50 ms", "p99 ms", "200s", "server CPU µs/vote", "Δ µs",
         "Valkey CPU µs/vote", "×1", "×1 CPU"], rows, note)


def render_metrics(rows: list[dict[str, Any]]) -> str:
    table_rows = [[r["key"], "on" if r["metrics"] else "off", r["vote"]["rps"],
                   r["vote"]["p50_ms"], r["vote"]["p99_ms"], pct(r["vote"]["ok_fraction"]),
                   _server_us(r["vote"])] for r in rows]
    note = ""
    on = [r["vote"] for r in rows if r["metrics"]]
    off = [r["vote"] for r in rows if not r["metrics"]]
    if on and off:
        rps_on = sum(v["rps"] for v in on) / len(on)
        rps_off = sum(v["rps"] for v in off) / len(off)
        note = f"votes/s with the vote counter / without: {rps_on / rps_off:.3f}"
        us_on = [u for u in map(_server_us, on) if u]
        us_off = [u for u in map(_server_us, off) if u]
        if us_on and us_off:
            mean_on, mean_off = sum(us_on) / len(us_on), sum(us_off) / len(us_off)
            note += (f"; server CPU per vote {mean_on:.0f} vs {mean_off:.0f} µs "
                     f"({mean_on / mean_off - 1:+.1%}); goal: ≤ 3 % of vote throughput")
    return table("\nM. Metrics cost: vote endpoint, 2 workers (multiprocess metrics), "
                 "vote counter off/on alternately, same load (+ flusher)",
                 ["row", "counter", "votes/s", "p50 ms", "p99 ms", "200s",
                  "server CPU µs/vote"], table_rows, note)


def render_ceiling(runs: list[dict[str, Any]]) -> str:
    """Table A: medians over the rounds of each (backend, mode, variant), before beside after."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in runs:
        key = (r.get("backend", "single"), r["mode"], r.get("variant", "after"))
        groups.setdefault(key, []).append(r)
    names = {("single", "full"): "single node, limits + vote (1 call)",
             ("single", "cast_vote"): "single node, cast_vote.lua only (IP caps 0)",
             ("cluster", "full"): "3-master Cluster, limits + vote (2 calls)"}

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
                     round(cpu, 1), med(rs, "script_us"), med(rs, "aof_bytes"),
                     round(1e6 / cpu) if cpu else 0,
                     round(sum(r["rate"] for r in rs) / len(rs)), pv.get("scripts", 0),
                     pv.get("redis_calls", 0),
                     "" if mode != "full" else ("yes" if cpu <= goal else f"> {goal:g}"),
                     calls])
    return table(
        f"\nA. Redis alone: voting.cast through pipeline.Pipeline, no HTTP "
        f"({runs[0]['concurrency']} coroutines, one uvloop process), appendfsync always; "
        "median of the rounds",
        ["backend, scripts", "code", "Valkey CPU µs/vote", "script µs/vote", "AOF B/vote",
         "votes/s per master core", "client votes/s", "calls/vote", "redis.call/vote",
         "goal", "commands per vote"], rows,
        "Valkey CPU = used_cpu_sys+user of the master(s) over the run (Cluster: summed) / "
        "votes; script µs = INFO commandstats usec of EVALSHA/EVAL; AOF B = aof_current_size "
        "growth; per master core = 1 / Valkey CPU; before = --baseline, after = this checkout; "
        "client votes/s is what one Python process reached (it is the bottleneck)")


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
    if "http" in ph:
        rows = []
        for r in ph["http"]:
            b, v = r["bare"], r["vote"]
            rows.append([r["workers"], "a  bare Starlette POST", b["rps"], b["p50_ms"],
                         b["p99_ms"], pct(b["ok_fraction"]), _server_us(b), ""])
            rows.append([r["workers"], "b  POST /votes (+ flusher)", v["rps"], v["p50_ms"],
                         v["p99_ms"], pct(v["ok_fraction"]), _server_us(v),
                         f"{r['ratio']:.2f}{'' if r['ratio'] >= GOAL_RATIO else ' < 0.6'}"])
        inv = ph.get("invariant", {})
        out.append(table(
            "\nA. HTTP: vote endpoint (b) vs bare Starlette (a), same server settings",
            ["workers", "endpoint", "req/s", "p50 ms", "p99 ms", "200s", "server CPU µs/req",
             "b/a"], rows,
            f"goal b/a ≥ {GOAL_RATIO}; every vote request is a new (voter, candidate) pair "
            "with a varied X-Forwarded-For" + (
                f"\nledger after draining: {inv['ledger_rows']:,} rows in PostgreSQL, "
                f"{inv['drifting_candidates']} candidates drifting (reconcile)" if inv else "")))
    cpu_rows = []
    for r in ph.get("http", []):
        for key, label in (("bare", "a"), ("vote", "b")):
            cores = r[key].get("extra", {}).get("cpu_cores", {})
            cpu_rows.append([f"{label} w{r['workers']}", *(cores.get(role, 0.0) for role in ROLES),
                             round(sum(cores.values()), 2)])
    for r in ph.get("durability", []):
        cores = r["vote"].get("extra", {}).get("cpu_cores", {})
        cpu_rows.append([f"b w1 {r['valkey']}", *(cores.get(role, 0.0) for role in ROLES),
                         round(sum(cores.values()), 2)])
    for r in ph.get("antifraud", {}).get("rows", []):
        cores = r["vote"].get("extra", {}).get("cpu_cores", {})
        cpu_rows.append([f"C {r['key']}", *(cores.get(role, 0.0) for role in ROLES),
                         round(sum(cores.values()), 2)])
    if cpu_rows:
        out.append(table("\nCPU cores used in each HTTP phase's measured window",
                         ["phase", *ROLES, "total"], cpu_rows))
    if ph.get("ceiling"):
        out.append(render_ceiling(ph["ceiling"]))
    if ph.get("ceiling_instructions"):
        rows = [[r["mode"], r["variant"], r["votes"], round(r["per_vote"] / 1000, 1),
                 pct(r["outcomes"].get("accepted", 0) / max(r["votes"], 1))]
                for r in ph["ceiling_instructions"]]
        out.append(table(
            "\nA2. Valkey's instructions per vote (valkey-server under callgrind, one node, "
            "appendfsync always)", ["scripts", "code", "votes", "k instructions/vote",
                                    "accepted"], rows,
            "user-space instructions of the server only (not the kernel's write and fsync); "
            "they do not move with the machine's speed: compare before with after here"))
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
    if "http" in ph:
        rows = [[r["workers"], r["vote"]["rps"], r["lag"].get("lag_p95_s"),
                 r["lag"].get("lag_max_s"), r["lag"].get("backlog_max"), r.get("drain_s")]
                for r in ph["http"]]
        out.append(table(
            "\nB. Flusher lag during A's vote phases (age of the oldest unflushed vote, "
            "Flusher.measure every 0.25 s)",
            ["workers", "votes/s", "lag p95 s", "lag max s", "backlog max", "drained in s"],
            rows))
    if "durability" in ph:
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
        out.append(table(
            "\nB. Cost of durability: vote endpoint, 1 worker, fresh Valkey each",
            ["valkey", "mode the service ran in", "votes/s", "p50 ms", "p99 ms", "200s"], rows))
    if ph.get("antifraud", {}).get("rows"):
        out.append(render_antifraud(ph["antifraud"]))
    if ph.get("metrics"):
        out.append(render_metrics(ph["metrics"]))
    for r in ph.get("http", []):
        prof = r.get("profile")
        if prof and prof.get("samples"):
            ours = [(n, v) for n, v in prof["inclusive"] if "voting_service/" in n
                    and not n.startswith(("main ", "cmd_serve ", "<module> "))][:12]
            lines = ["ours, inclusive:"] + [f"  {v * 100:5.1f}%  {n}" for n, v in ours]
            lines += ["all, self:"] + [f"  {v * 100:5.1f}%  {n}" for n, v in prof["self"][:12]]
            out.append(f"\nprofile of the vote workers, {r['workers']} worker(s), "
                       f"{prof['samples']} samples (raw stacks in {r.get('profile_dir', '')}):"
                       "\n  " + "\n  ".join(lines))
    loads = [r[key] for r in ph.get("http", []) for key in ("bare", "vote")]
    loads += [r["vote"] for r in [*ph.get("durability", []),
                                  *ph.get("antifraud", {}).get("rows", [])]]
    busy = max((v.get("extra", {}).get("cpu_cores", {}).get("other", 0.0) for v in loads),
               default=0.0)
    if busy > 0.2:
        out.append(f"\nnote: other processes on this machine used up to {busy:.2f} cores during "
                   "the HTTP phases: absolute numbers are low and noisy, compare ratios")
    if ph.get("votepath", {}).get("rounds"):
        out.append(votepath.render(ph["votepath"]))
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
    bench = Bench(opts, res)
    interrupted = False
    try:
        with sigterm_as_interrupt(), asyncio.Runner(loop_factory=uvloop.new_event_loop) as r:
            r.run(bench.run())
    except KeyboardInterrupt:
        interrupted = True
        bench.results["interrupted"] = True
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
    if not bench.results["phases"]:
        sys.exit(130 if interrupted else 1)
    opts.out_dir.mkdir(parents=True, exist_ok=True)
    path = opts.out_dir / f"bench-{bench.stamp}{'-quick' if opts.quick else ''}.json"
    path.write_text(json.dumps(bench.results, indent=2, default=str))
    print(render(bench.results))
    print(f"results: {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")
    if interrupted:
        sys.exit(130)
    if bench.results.get("errors"):
        sys.exit(1)


if __name__ == "__main__":
    main()
